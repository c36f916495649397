package idp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Identity is who the provider says signed in.
type Identity struct {
	Subject string
	Email   string
	Name    string
	Groups  []string
}

// Tokens are the provider's tokens for one sign-in, kept server-side.
type Tokens struct {
	RefreshToken string
	IDToken      string
	Expiry       time.Time // of the provider's access/ID token
}

// A Provider is one identity provider.
type Provider interface {
	// AuthCodeURL is where the browser signs in.
	AuthCodeURL(ctx context.Context, state, nonce, pkceVerifier string) (string, error)
	// Exchange turns the callback's code into a verified identity. The ID
	// token's nonce must equal nonce.
	Exchange(ctx context.Context, code, pkceVerifier, nonce string) (*Identity, *Tokens, error)
	// Refresh renews the identity with the refresh token.
	Refresh(ctx context.Context, refreshToken string) (*Identity, *Tokens, error)
	// EndSessionURL is the provider's sign-out URL, or "" if it has none.
	EndSessionURL(ctx context.Context, idTokenHint, postLogoutRedirect string) string
}

// Options configure a provider (IDP_* settings).
type Options struct {
	Provider      string // oidc, google, builtin, …
	ProviderURL   string // the issuer
	ClientID      string
	ClientSecret  string
	Scopes        []string
	RedirectURL   string // https://<authenticate host>/oauth2/callback
	GroupsClaim   string // default "groups"
	RequestParams map[string]string
	// HTTPClient reaches the provider (nil: a default with timeouts).
	HTTPClient *http.Client
}

// ErrProviderUnavailable wraps failures to reach the provider, so the
// caller can tell the person to try again rather than that they failed.
var ErrProviderUnavailable = errors.New("the identity provider could not be reached")

// presets are providers that are plain OpenID Connect with a known issuer.
var presets = map[string]string{
	"google": "https://accounts.google.com",
}

// New returns the provider opts name. Discovery happens on first use, so a
// provider that is down at start-up does not stop Portcullis from serving
// existing sessions.
func New(opts Options) (Provider, error) {
	switch opts.Provider {
	case "oidc", "builtin", "google", "azure", "okta", "auth0", "gitlab", "onelogin", "ping", "cognito", "keycloak":
	default:
		return nil, fmt.Errorf("identity provider %q is not supported (IDP_PROVIDER): use oidc with IDP_PROVIDER_URL, or builtin", opts.Provider)
	}
	if opts.ProviderURL == "" {
		opts.ProviderURL = presets[opts.Provider]
	}
	if opts.ProviderURL == "" {
		return nil, fmt.Errorf("identity provider %q needs its issuer URL (IDP_PROVIDER_URL)", opts.Provider)
	}
	if opts.ClientID == "" {
		return nil, errors.New("identity provider: IDP_CLIENT_ID is not set")
	}
	if len(opts.Scopes) == 0 {
		opts.Scopes = []string{oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess}
	}
	if opts.GroupsClaim == "" {
		opts.GroupsClaim = "groups"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &OIDC{opts: opts}, nil
}

// OIDC is any OpenID Connect provider, found by discovery.
type OIDC struct {
	opts Options

	mu         sync.Mutex
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      *oauth2.Config
	endSession string
}

func (p *OIDC) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, p.opts.HTTPClient)
}

// discover fetches the provider's metadata once; a failure is retried on
// the next call.
func (p *OIDC) discover(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.provider != nil {
		return nil
	}
	prov, err := oidc.NewProvider(p.ctx(ctx), p.opts.ProviderURL)
	if err != nil {
		return fmt.Errorf("%w: discovery at %s: %v", ErrProviderUnavailable, p.opts.ProviderURL, err)
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	prov.Claims(&meta)
	p.provider, p.endSession = prov, meta.EndSession
	p.verifier = prov.Verifier(&oidc.Config{ClientID: p.opts.ClientID})
	p.oauth = &oauth2.Config{
		ClientID:     p.opts.ClientID,
		ClientSecret: p.opts.ClientSecret,
		Endpoint:     prov.Endpoint(),
		RedirectURL:  p.opts.RedirectURL,
		Scopes:       p.opts.Scopes,
	}
	return nil
}

func (p *OIDC) AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	if err := p.discover(ctx); err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	for k, v := range p.opts.RequestParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	return p.oauth.AuthCodeURL(state, opts...), nil
}

func (p *OIDC) Exchange(ctx context.Context, code, verifier, nonce string) (*Identity, *Tokens, error) {
	if err := p.discover(ctx); err != nil {
		return nil, nil, err
	}
	tok, err := p.oauth.Exchange(p.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, nil, classify("exchanging the authorization code", err)
	}
	id, toks, err := p.identity(ctx, tok, nonce)
	if err != nil {
		return nil, nil, err
	}
	return id, toks, nil
}

func (p *OIDC) Refresh(ctx context.Context, refreshToken string) (*Identity, *Tokens, error) {
	if err := p.discover(ctx); err != nil {
		return nil, nil, err
	}
	if refreshToken == "" {
		return nil, nil, errors.New("refreshing the session: the provider gave no refresh token (is offline_access among IDP_SCOPES?)")
	}
	tok, err := p.oauth.TokenSource(p.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return nil, nil, classify("refreshing the session", err)
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken // the provider keeps the old one valid
	}
	return p.identity(ctx, tok, "")
}

// identity verifies the ID token in tok and builds the identity from its
// claims, filling in from the userinfo endpoint what the ID token lacks
// (many providers put email only there).
func (p *OIDC) identity(ctx context.Context, tok *oauth2.Token, nonce string) (*Identity, *Tokens, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, nil, errors.New("the identity provider returned no ID token (is openid among IDP_SCOPES?)")
	}
	idt, err := p.verifier.Verify(p.ctx(ctx), raw)
	if err != nil {
		return nil, nil, fmt.Errorf("verifying the ID token: %w", err)
	}
	if nonce != "" && idt.Nonce != nonce {
		return nil, nil, errors.New("verifying the ID token: its nonce does not match this sign-in")
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, nil, fmt.Errorf("reading ID token claims: %w", err)
	}
	if _, ok := claims["email"]; !ok && p.provider.UserInfoEndpoint() != "" {
		if ui, err := p.provider.UserInfo(p.ctx(ctx), oauth2.StaticTokenSource(tok)); err == nil {
			extra := map[string]any{}
			if ui.Claims(&extra) == nil {
				for k, v := range extra {
					if _, ok := claims[k]; !ok {
						claims[k] = v
					}
				}
			}
		}
	}
	id := &Identity{Subject: idt.Subject, Email: str(claims["email"]), Name: str(claims["name"]), Groups: strs(claims[p.opts.GroupsClaim])}
	if id.Email == "" {
		return nil, nil, errors.New("the identity provider gave no email for this user (add the email scope, or check the provider's claims)")
	}
	return id, &Tokens{RefreshToken: tok.RefreshToken, IDToken: raw, Expiry: idt.Expiry}, nil
}

func (p *OIDC) EndSessionURL(ctx context.Context, idTokenHint, postLogout string) string {
	if p.discover(ctx) != nil || p.endSession == "" {
		return ""
	}
	u := p.endSession
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	q := make([]string, 0, 3)
	q = append(q, "client_id="+urlEscape(p.opts.ClientID))
	if idTokenHint != "" {
		q = append(q, "id_token_hint="+urlEscape(idTokenHint))
	}
	if postLogout != "" {
		q = append(q, "post_logout_redirect_uri="+urlEscape(postLogout))
	}
	return u + sep + strings.Join(q, "&")
}

// classify marks network failures as ErrProviderUnavailable; an error the
// provider answered with (invalid_grant, …) stays a refusal.
func classify(doing string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return fmt.Errorf("%s: the identity provider refused: %s %s", doing, re.ErrorCode, re.ErrorDescription)
	}
	return fmt.Errorf("%w: %s: %v", ErrProviderUnavailable, doing, err)
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func strs(v any) []string {
	switch v := v.(type) {
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	case string:
		if v != "" {
			return []string{v}
		}
	}
	return nil
}

func urlEscape(s string) string { return url.QueryEscape(s) }
