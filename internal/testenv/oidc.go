package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// An OIDCUser is a person the test OpenID provider knows. The username on
// its login form is the email address.
type OIDCUser struct {
	Email     string
	Password  string
	FirstName string
	LastName  string
	// EmailUnverified makes the provider say email_verified: false, as
	// providers do for an address the person typed and never confirmed.
	EmailUnverified bool
}

// OIDCProvider is a real OpenID Connect provider over HTTP on loopback:
// zitadel's example OP (github.com/zitadel/oidc/v3, an OpenID-certified
// library) with its login form, discovery, JWKS, PKCE and refresh tokens.
// Its ID token carries no email claim; the userinfo endpoint does. It has
// no groups claim.
type OIDCProvider struct {
	// Issuer is http://127.0.0.1:PORT/ (the trailing slash is part of it).
	Issuer string
	// ClientID and ClientSecret are a confidential web client registered
	// with the redirect URIs given to StartOIDCProvider.
	ClientID     string
	ClientSecret string

	srv *http.Server
	wg  sync.WaitGroup

	// tokenLifetime, if set, is the ID tokens' lifetime (nanoseconds);
	// refreshes counts refresh_token grants.
	tokenLifetime atomic.Int64
	refreshes     atomic.Int64
}

// SetTokenLifetime makes the ID tokens the provider issues from now on
// expire d after they are issued (the example provider's own lifetime is an
// hour), as a provider configured for short tokens does: the relying party
// then renews its session that soon. Zero restores the hour.
func (p *OIDCProvider) SetTokenLifetime(d time.Duration) { p.tokenLifetime.Store(int64(d)) }

// Refreshes counts the refresh_token grants the provider has answered.
func (p *OIDCProvider) Refreshes() int { return int(p.refreshes.Load()) }

// countRefreshes wraps the provider's handler to count refresh grants at
// its token endpoint.
func (p *OIDCProvider) countRefreshes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") {
			if err := r.ParseForm(); err == nil && r.PostForm.Get("grant_type") == "refresh_token" {
				p.refreshes.Add(1)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// lifetimeStorage is the example provider's storage with the client's ID
// token lifetime from SetTokenLifetime.
type lifetimeStorage struct {
	*storage.Storage
	p *OIDCProvider
}

func (s lifetimeStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if life := time.Duration(s.p.tokenLifetime.Load()); err == nil && life != 0 {
		return lifetimeClient{c, life}, nil
	}
	return c, err
}

type lifetimeClient struct {
	op.Client
	life time.Duration
}

func (c lifetimeClient) IDTokenLifetime() time.Duration { return c.life }

// StartOIDCProvider serves a provider on 127.0.0.1 with the given users and
// one confidential client allowed to redirect to redirectURIs.
func StartOIDCProvider(logger *slog.Logger, redirectURIs []string, users []OIDCUser) (*OIDCProvider, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting OIDC provider: %w", err)
	}
	p := &OIDCProvider{
		Issuer:       "http://" + ln.Addr().String() + "/",
		ClientID:     "portcullis",
		ClientSecret: "portcullis-test-secret",
	}
	store := userStore{byID: map[string]*storage.User{}, byName: map[string]*storage.User{}}
	for i, u := range users {
		su := &storage.User{
			ID:                fmt.Sprintf("user-%d", i+1),
			Username:          u.Email,
			Password:          u.Password,
			FirstName:         u.FirstName,
			LastName:          u.LastName,
			Email:             u.Email,
			EmailVerified:     !u.EmailUnverified,
			PreferredLanguage: language.English,
		}
		store.byID[su.ID], store.byName[su.Username] = su, su
	}
	clients := map[string]*storage.Client{
		p.ClientID: storage.WebClient(p.ClientID, p.ClientSecret, redirectURIs...),
	}
	router := exampleop.SetupServer(p.Issuer, lifetimeStorage{storage.NewStorageWithClients(store, clients), p}, logger, false)
	p.srv = &http.Server{Handler: p.countRefreshes(router), ReadHeaderTimeout: 10 * time.Second}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("test OIDC provider stopped", "error", err)
		}
	}()
	return p, nil
}

// Close stops the provider.
func (p *OIDCProvider) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.srv.Shutdown(ctx)
	p.wg.Wait()
}

// userStore implements storage.UserStore over a fixed list.
type userStore struct {
	byID, byName map[string]*storage.User
}

func (s userStore) GetUserByID(id string) *storage.User         { return s.byID[id] }
func (s userStore) GetUserByUsername(name string) *storage.User { return s.byName[name] }

// ExampleClientID names the example's JWT-profile service client, which
// tests do not use.
func (s userStore) ExampleClientID() string { return "service" }
