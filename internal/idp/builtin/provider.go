package builtin

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/limit"
)

const (
	// claimGroups is the claim, and scopeGroups the optional scope, that
	// carry a person's groups.
	claimGroups = "groups"
	scopeGroups = "groups"

	// Token lifetimes when the Config leaves them zero.
	defaultAccessTokenTTL  = time.Hour
	defaultIDTokenTTL      = time.Hour
	defaultRefreshTokenTTL = 24 * time.Hour

	// cryptoKeyID names Config.CryptoKey in what op encrypts with it.
	cryptoKeyID = "portcullis-builtin"
)

// Config configures a Provider.
type Config struct {
	// Issuer is the provider's public URL, http or https, possibly with a
	// path: https://localhost:8443/.portcullis/idp. It is the iss claim and
	// must equal the issuer URL clients are given, byte for byte (a
	// trailing slash counts). Required.
	Issuer string
	// Users are the people who can sign in. At least one is required.
	Users []User
	// UsersFile, if set, is the file Users were read from (LoadUsers). The
	// provider then follows it: it looks at the file at most once a second
	// when it needs its users, and uses its new contents when it changed.
	// A person no longer in the file can neither sign in nor refresh, and
	// every token issued to them is revoked at once; new groups or names
	// reach clients with the next tokens, at the next refresh. A file that
	// no longer loads keeps the users read before (and logs why). A file
	// with no users does not load: to shut everyone out, stop the provider.
	UsersFile string
	// Clients are the applications that may ask for sign-ins. At least one
	// is required.
	Clients []Client
	// Logger receives the provider's own log lines (sign-ins, refusals).
	// nil: discard. The op library logs protocol errors through
	// slog.Default.
	Logger *slog.Logger
	// AccessTokenTTL is the life of an access token; default 1 hour.
	AccessTokenTTL time.Duration
	// IDTokenTTL is the life of an ID token; default 1 hour.
	IDTokenTTL time.Duration
	// RefreshTokenTTL is how long a refresh token stays usable; each
	// refresh issues a new one with a new life. Default 24 hours.
	RefreshTokenTTL time.Duration
	// SigningKey signs ID tokens: RSA (2048 bits or more), ECDSA (P-256,
	// P-384, P-521) or Ed25519. nil: an RSA 2048 key is generated, so
	// tokens do not survive a restart, which is fine since no other state
	// does either.
	SigningKey crypto.Signer
	// CryptoKey encrypts the authorization codes and access tokens op
	// hands out (AES-256-GCM). Derive it from a secret, e.g. with HKDF from
	// SHARED_SECRET. All zero: a random key is used.
	CryptoKey [32]byte
}

// A Client is an application allowed to ask the provider for sign-ins.
type Client struct {
	// ID is the client_id. Required.
	ID string
	// Secret is the client_secret (HTTP Basic or form post). Empty makes a
	// public client, such as a CLI, which authenticates with PKCE only and
	// may use any port of a registered loopback redirect URI.
	Secret string
	// RedirectURIs are the exact redirect_uri values allowed. Required.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the post_logout_redirect_uri values the
	// end_session endpoint may send the browser to. Without one it shows
	// its own signed-out page.
	PostLogoutRedirectURIs []string
}

// Provider is the built-in OpenID provider.
type Provider struct {
	issuer   string // as configured
	base     string // issuer without a trailing slash
	prefix   string // the issuer's path without a trailing slash: "" or "/x/y"
	secure   bool   // https: cookies are Secure
	logger   *slog.Logger
	store    *storage
	op       *op.Provider
	callback func(context.Context, string) string
	csrf     *http.CrossOriginProtection
	handler  http.Handler

	// The limits on password checks (limits.go): wrong passwords per
	// client address and per email, and the CPUs bcrypt may take.
	addrFailures    *backoff[netip.Addr]
	accountFailures *backoff[[32]byte]
	hashing         *hashSlots
	// fullLogged is when (UnixNano, by the storage's clock) a full table
	// of sign-ins was last logged: once a minute is enough to tell the
	// operator, and a flood must not flood the log too.
	fullLogged atomic.Int64
}

// New returns a provider for cfg. It reports every problem of cfg at once.
func New(cfg Config) (*Provider, error) {
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }

	u, err := checkIssuer(cfg.Issuer)
	if err != nil {
		problems = append(problems, err)
	}
	accounts, err := makeAccounts(cfg.Users)
	if err != nil {
		problems = append(problems, err)
	}
	if err := checkClients(cfg.Clients); err != nil {
		problems = append(problems, err)
	}
	ttl := func(name string, d, def time.Duration) time.Duration {
		switch {
		case d == 0:
			return def
		case d < time.Second:
			// JWT times are whole seconds (RFC 7519 section 2).
			bad("%s is %v: want at least 1s, or 0 for the default of %v", name, d, def)
		}
		return d
	}
	accessTTL := ttl("the access token TTL", cfg.AccessTokenTTL, defaultAccessTokenTTL)
	idTTL := ttl("the ID token TTL", cfg.IDTokenTTL, defaultIDTokenTTL)
	refreshTTL := ttl("the refresh token TTL", cfg.RefreshTokenTTL, defaultRefreshTokenTTL)
	var key *signingKey
	if cfg.SigningKey != nil || len(problems) == 0 { // no key generated in vain
		if key, err = newSigningKey(cfg.SigningKey); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("starting the built-in identity provider: %w", errors.Join(problems...))
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{
		issuer: cfg.Issuer,
		base:   strings.TrimSuffix(cfg.Issuer, "/"),
		prefix: strings.TrimSuffix(u.EscapedPath(), "/"),
		secure: u.Scheme == "https",
		logger: logger.With("component", "idp-builtin"),
		csrf:   http.NewCrossOriginProtection(),

		addrFailures:    newBackoff[netip.Addr](maxFailureKeys),
		accountFailures: newBackoff[[32]byte](maxFailureKeys),
		hashing:         newHashSlots(hashSlotCount(runtime.GOMAXPROCS(0)), hashWait),
	}
	clients := make([]*client, len(cfg.Clients))
	for i, c := range cfg.Clients {
		clients[i] = &client{Client: c, idTokenTTL: idTTL, loginURL: p.loginURL}
	}
	p.store = newStorage(accounts, clients, key, accessTTL, refreshTTL)
	if cfg.UsersFile != "" {
		// The file's state when Users were read is not known here, so the
		// first look reads it again: that costs one read, and misses no
		// change made since.
		uf := &usersFile{path: cfg.UsersFile, logger: p.logger, now: time.Now, apply: p.store.setAccounts}
		uf.checked.Store(time.Now().UnixNano())
		p.store.reload = uf.check
	}

	cryptoKey := cfg.CryptoKey
	if cryptoKey == ([32]byte{}) {
		rand.Read(cryptoKey[:])
	}
	opts := []op.Option{
		// AES-256-GCM only: op's default also accepts its legacy,
		// unauthenticated AES-CFB format, which nothing here ever wrote.
		op.WithCrypto(op.NewAES256GCMCrypto(cryptoKey, cryptoKeyID)),
	}
	if u.Scheme == "http" {
		opts = append(opts, op.WithAllowInsecure())
	}
	p.op, err = op.NewProvider(&op.Config{
		CryptoKey:                cryptoKey,
		CryptoKeyId:              cryptoKeyID,
		DefaultLogoutRedirectURI: p.prefix + "/signed-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedScopes:          []string{oidc.ScopeOpenID, oidc.ScopeEmail, oidc.ScopeProfile, oidc.ScopeOfflineAccess, scopeGroups},
		SupportedClaims:          append(slices.Clone(op.DefaultSupportedClaims), claimGroups),
	}, p.store, op.StaticIssuer(cfg.Issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("starting the built-in identity provider: %w", err)
	}
	p.callback = op.AuthCallbackURL(p.op)
	p.handler = p.routes()

	p.logger.Warn("the built-in identity provider is for development and demos only: its users come from a file and its sessions and tokens live in memory, lost on restart; use a real identity provider in production",
		"issuer", cfg.Issuer, "users", len(accounts), "clients", len(clients))
	return p, nil
}

// Handler serves the provider. It expects the full request path: mount it
// at the issuer's path (with a trailing slash) without stripping it. Under
// that path, it serves discovery (/.well-known/openid-configuration),
// /keys (JWKS), /authorize, /oauth/token, /userinfo, /revoke,
// /oauth/introspect, /end_session, and the login page (/login).
func (p *Provider) Handler() http.Handler { return p.handler }

func (p *Provider) routes() http.Handler {
	var opHandler http.Handler = p.op
	if p.prefix != "" {
		opHandler = http.StripPrefix(p.prefix, p.op)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch path := r.URL.Path; {
		case path == p.prefix+"/authorize":
			p.serveAuthorize(w, r, opHandler)
		case path == p.prefix+"/login":
			p.serveLogin(w, r)
		case path == p.prefix+"/signed-out":
			p.serveSignedOut(w, r)
		case strings.HasPrefix(path, p.prefix+"/"):
			opHandler.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// serveAuthorize hands an authorization request to op with room held in
// the table for the sign-in request op will make (storage.admit). A client
// address with maxSignInsPerAddr sign-ins in progress, or a full table, is
// refused here with a page the person can read; were CreateAuthRequest to
// refuse, op would send the browser back to the application with
// error=server_error instead.
func (p *Provider) serveAuthorize(w http.ResponseWriter, r *http.Request, next http.Handler) {
	addr := limit.Client(r)
	adm, err := p.store.admit(addr)
	if err != nil {
		switch {
		case errors.Is(err, errSignInsFull) && p.logFull():
			p.logger.Warn("sign-in refused: the table of sign-ins in progress is full; logged at most once a minute",
				"client", addr, "limit", maxAuthRequests)
		case errors.Is(err, errTooManySignIns):
			// Debug only: one address can ask ten thousand times a second.
			p.logger.Debug("sign-in refused: too many in progress from the client address", "client", addr, "limit", maxSignInsPerAddr)
		}
		p.loginError(w, err)
		return
	}
	defer p.store.release(adm)
	next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), admissionKey{}, adm)))
}

// logFull says whether to log that the table is full: once a minute.
func (p *Provider) logFull() bool {
	now := p.store.now().UnixNano()
	last := p.fullLogged.Load()
	return now-last >= int64(time.Minute) && p.fullLogged.CompareAndSwap(last, now)
}

// loginURL is where op sends the browser to sign in (Client.LoginURL).
func (p *Provider) loginURL(authRequestID string) string {
	return p.base + "/login?" + url.Values{"authRequestID": {authRequestID}}.Encode()
}

// checkIssuer checks the issuer URL (OpenID Connect Discovery section 3,
// less the https requirement for laptops).
func checkIssuer(issuer string) (*url.URL, error) {
	if issuer == "" {
		return nil, errors.New("the issuer is missing: want the provider's public URL, such as https://localhost:8443/.portcullis/idp")
	}
	u, err := url.Parse(issuer)
	switch {
	case err != nil:
		return nil, fmt.Errorf("the issuer %q is not a URL: %w", issuer, err)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("the issuer %q: want an https (or, for a laptop, http) URL", issuer)
	case u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("the issuer %q has no host", issuer)
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("the issuer %q: want no user, query or fragment", issuer)
	}
	// The path becomes a routing prefix: keep it to plain segments.
	p := strings.TrimSuffix(u.Path, "/")
	if u.RawPath != "" || strings.Contains(p, "//") || strings.IndexFunc(p, func(r rune) bool {
		return !(r == '/' || r == '-' || r == '.' || r == '_' || r == '~' ||
			'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}) >= 0 {
		return nil, fmt.Errorf("the issuer %q: its path may hold only letters, digits, '-', '.', '_', '~' and single '/'", issuer)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("the issuer %q: its path may not contain . or .. segments", issuer)
		}
	}
	return u, nil
}

// makeAccounts checks users and gives each a subject.
func makeAccounts(users []User) ([]*account, error) {
	if len(users) == 0 {
		return nil, errors.New("no users: give at least one (see LoadUsers)")
	}
	var problems []error
	seen := map[string]int{}
	accounts := make([]*account, 0, len(users))
	for i, u := range users {
		who := fmt.Sprintf("user %d", i+1)
		if checkEmail(u.Email) == "" {
			who = "user " + u.Email
		}
		for _, pr := range checkUser(u) {
			problems = append(problems, &usersProblem{source: who, msg: pr.msg})
		}
		key := identity.EmailKey(u.Email)
		if first, dup := seen[key]; dup {
			problems = append(problems, &usersProblem{source: who, msg: fmt.Sprintf("the email is already used by user %d", first)})
		}
		seen[key] = i + 1
		u.Groups = slices.Clone(u.Groups)
		if u.Name == "" {
			u.Name = u.Email
		}
		accounts = append(accounts, &account{User: u, subject: subjectOf(u.Email)})
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return accounts, nil
}

// subjectOf is the sub claim of the person with this email: stable across
// restarts and case changes, opaque, and without ':' (op joins a token id
// and the subject with one).
func subjectOf(email string) string {
	sum := sha256.Sum256([]byte("portcullis builtin idp subject\x00" + identity.EmailKey(email)))
	return hex.EncodeToString(sum[:16])
}

func checkClients(clients []Client) error {
	if len(clients) == 0 {
		return errors.New("no clients: register at least one (Portcullis itself)")
	}
	var problems []error
	seen := map[string]bool{}
	for i, c := range clients {
		who := fmt.Sprintf("client %d", i+1)
		switch {
		case c.ID == "":
			problems = append(problems, fmt.Errorf("%s: the ID is missing", who))
		case seen[c.ID]:
			problems = append(problems, fmt.Errorf("%s: ID %q is registered twice", who, c.ID))
		default:
			who = fmt.Sprintf("client %q", c.ID)
		}
		seen[c.ID] = true
		if len(c.RedirectURIs) == 0 {
			problems = append(problems, fmt.Errorf("%s: no redirect URIs: want the application's callback URL", who))
		}
		for _, list := range [][]string{c.RedirectURIs, c.PostLogoutRedirectURIs} {
			for _, r := range list {
				if u, err := url.Parse(r); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
					problems = append(problems, fmt.Errorf("%s: redirect URI %q: want an absolute http or https URL without a fragment", who, r))
				}
			}
		}
	}
	return errors.Join(problems...)
}
