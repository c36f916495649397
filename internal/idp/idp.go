package idp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
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
	// Claims are the provider's claims about the person (ID token and
	// userinfo together), for policies on claim/<name>: the text ones
	// only, bounded (see textClaims).
	Claims map[string][]string
}

// Tokens are the provider's tokens for one sign-in. They are secrets, kept
// server-side only: never sent to a browser or an upstream, never logged.
type Tokens struct {
	// RefreshToken is what Refresh takes to renew the identity: the
	// provider's refresh token, or, for a GitHub token that does not
	// expire, a marked copy of the access token itself (see GitHub).
	RefreshToken string
	// IDToken is the provider's ID token (none from GitHub), the hint for
	// signing out at the provider.
	IDToken string
	// Expiry is when the identity should be renewed: the provider's
	// ID or access token expiry.
	Expiry time.Time
}

// A Provider is one identity provider.
type Provider interface {
	// AuthCodeURL is where the browser signs in.
	AuthCodeURL(ctx context.Context, state, nonce, pkceVerifier string) (string, error)
	// Exchange turns the callback's code into a verified identity. The ID
	// token's nonce must equal nonce.
	Exchange(ctx context.Context, code, pkceVerifier, nonce string) (*Identity, *Tokens, error)
	// Refresh renews the identity with Tokens.RefreshToken.
	Refresh(ctx context.Context, refreshToken string) (*Identity, *Tokens, error)
	// EndSessionURL is the provider's sign-out URL, or "" if it has none.
	EndSessionURL(ctx context.Context, idTokenHint, postLogoutRedirect string) string
}

// Options configure a provider (IDP_* settings). Empty fields take the
// defaults of the provider's preset (presets.go).
type Options struct {
	Provider      string // IDP_PROVIDER: oidc, google, github, builtin, …
	ProviderURL   string // IDP_PROVIDER_URL: the issuer (GitHub: its web URL)
	ClientID      string
	ClientSecret  string
	Scopes        []string
	RedirectURL   string // https://<authenticate host>/oauth2/callback
	GroupsClaim   string // IDP_GROUPS_CLAIM; "groups" for most providers
	RequestParams map[string]string
	// HTTPClient reaches the provider (nil: a default with timeouts).
	HTTPClient *http.Client
}

// ErrProviderUnavailable wraps failures to reach the provider, so the
// caller can tell the person to try again rather than that they failed.
var ErrProviderUnavailable = errors.New("the identity provider could not be reached")

// New returns the provider opts name, its defaults filled in from its
// preset. Nothing is fetched yet: discovery happens on first use, so a
// provider that is down at start-up does not stop Portcullis from serving
// existing sessions.
func New(opts Options) (Provider, error) {
	opts, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	if opts.Provider == "github" {
		return newGitHub(opts)
	}
	pr := presets[opts.Provider]
	o := &OIDC{opts: opts, refreshHint: pr.refreshHint, verifiedClaim: pr.verifiedClaim, verifiedHint: pr.verifiedHint}
	if o.verifiedClaim == "" {
		o.verifiedClaim = "email_verified"
		o.verifiedHint = "configure the identity provider to send the email_verified claim (with the email scope)"
	}
	return o, nil
}

// OIDC is any OpenID Connect provider, found by discovery.
type OIDC struct {
	opts        Options
	refreshHint string
	// verifiedClaim says the email is verified (email_verified, or a
	// preset's own); verifiedHint says how to get the provider to send it.
	verifiedClaim, verifiedHint string

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
	var mismatch *oidc.IssuerMismatchError
	switch {
	case errors.As(err, &mismatch):
		// A configuration error, not an outage: trying again won't help.
		return fmt.Errorf("discovery at %s: the provider calls itself %q: set IDP_PROVIDER_URL to exactly that", p.opts.ProviderURL, mismatch.Discovered)
	case err != nil:
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
	return p.oauth.AuthCodeURL(state, authOptions(p.opts.RequestParams, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))...), nil
}

// authOptions are the sign-in URL's extra parameters: the request
// parameters (resolve has refused the reserved ones), then the sign-in's
// own bindings, which come last so that nothing can replace them.
func authOptions(params map[string]string, bindings ...oauth2.AuthCodeOption) []oauth2.AuthCodeOption {
	opts := make([]oauth2.AuthCodeOption, 0, len(params)+len(bindings))
	for _, k := range slices.Sorted(maps.Keys(params)) {
		opts = append(opts, oauth2.SetAuthURLParam(k, params[k]))
	}
	return append(opts, bindings...)
}

func (p *OIDC) Exchange(ctx context.Context, code, verifier, nonce string) (*Identity, *Tokens, error) {
	if nonce == "" {
		// Without a nonce an ID token replayed from another sign-in would
		// pass (OpenID Connect Core 1.0 section 15.5.2).
		return nil, nil, errors.New("exchanging the authorization code: this sign-in has no nonce")
	}
	if err := p.discover(ctx); err != nil {
		return nil, nil, err
	}
	tok, err := p.oauth.Exchange(p.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, nil, classify("exchanging the authorization code", err)
	}
	return p.identity(ctx, tok, nonce)
}

func (p *OIDC) Refresh(ctx context.Context, refreshToken string) (*Identity, *Tokens, error) {
	if refreshToken == "" {
		return nil, nil, errors.New("refreshing the session: the identity provider gave no refresh token at sign-in: " + p.refreshHint)
	}
	if err := p.discover(ctx); err != nil {
		return nil, nil, err
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
// claims, filling in from the userinfo endpoint what the ID token lacks:
// many providers put email (zitadel, Azure without the optional claim) or
// groups (GitLab's inherited groups) only there. nonce is "" on refresh,
// whose ID token need not carry one (OpenID Connect Core 1.0 section 12.2);
// a refresh response may also carry no ID token at all, and then userinfo,
// reached with the fresh access token, says who it is.
func (p *OIDC) identity(ctx context.Context, tok *oauth2.Token, nonce string) (*Identity, *Tokens, error) {
	claims := map[string]any{}
	var subject string
	expiry := tok.Expiry
	raw, _ := tok.Extra("id_token").(string)
	switch {
	case raw != "":
		idt, err := p.verifier.Verify(p.ctx(ctx), raw)
		if err != nil {
			return nil, nil, fmt.Errorf("verifying the ID token: %w", err)
		}
		if nonce != "" && idt.Nonce != nonce {
			return nil, nil, errors.New("verifying the ID token: its nonce does not match this sign-in")
		}
		if err := idt.Claims(&claims); err != nil {
			return nil, nil, fmt.Errorf("reading ID token claims: %w", err)
		}
		subject, expiry = idt.Subject, idt.Expiry
	case nonce != "":
		return nil, nil, errors.New("the identity provider returned no ID token (is openid among IDP_SCOPES?)")
	}
	_, hasEmail := claims["email"]
	_, hasGroups := claims[p.opts.GroupsClaim]
	if !hasEmail || !hasGroups {
		if err := p.userinfo(ctx, tok, &subject, claims); err != nil && (raw == "" || !hasEmail) {
			return nil, nil, err
		}
		// Otherwise the ID token said enough: a user in no groups has no
		// groups claim, and some providers' userinfo cannot be reached
		// with every access token.
	}
	if names, ok := claims["_claim_names"].(map[string]any); ok && names[p.opts.GroupsClaim] != nil {
		// The groups are elsewhere (OpenID Connect Core 1.0 section 5.6.2;
		// Entra ID does this beyond 200 groups). Going on without them
		// would skip every rule that denies by group.
		return nil, nil, fmt.Errorf("the identity provider sent the %q claim by reference, not in the token (too many groups?): "+
			"configure the provider to send fewer groups, such as only those assigned to the application", p.opts.GroupsClaim)
	}
	id := &Identity{Subject: subject, Email: str(claims["email"]), Name: str(claims["name"]), Groups: strs(claims[p.opts.GroupsClaim]),
		Claims: textClaims(claims)}
	if id.Subject == "" {
		return nil, nil, errors.New("the identity provider gave no subject for this user")
	}
	if id.Email == "" {
		return nil, nil, errors.New("the identity provider gave no email for this user (add the email scope, or check the provider's claims)")
	}
	if err := p.checkEmailVerified(claims); err != nil {
		return nil, nil, err
	}
	return id, &Tokens{RefreshToken: tok.RefreshToken, IDToken: raw, Expiry: expiry}, nil
}

// ErrUnverifiedEmail refuses a sign-in whose provider does not say that the
// email address is verified.
var ErrUnverifiedEmail = errors.New("the email address is not verified")

// checkEmailVerified refuses claims that do not say the email address is
// verified: p.verifiedClaim must be true. The email becomes the Kubernetes
// user name (Impersonate-User), and providers that let people set an
// address they do not own say so only here: believing the address anyway
// would let anyone become anyone. A missing claim is refused too: some
// providers leave email_verified out rather than send false (zitadel
// does). Some send the string "true" (Amazon Cognito).
func (p *OIDC) checkEmailVerified(claims map[string]any) error {
	v, ok := claims[p.verifiedClaim]
	switch {
	case !ok:
		return fmt.Errorf("%w: the identity provider sent no %s claim for %q: %s",
			ErrUnverifiedEmail, p.verifiedClaim, str(claims["email"]), p.verifiedHint)
	case v == true || v == "true":
		return nil
	}
	return fmt.Errorf("%w: %q (%s is %v): verify it with the identity provider, then sign in again",
		ErrUnverifiedEmail, str(claims["email"]), p.verifiedClaim, v)
}

// userinfo adds the userinfo endpoint's claims that claims lacks. The
// answer must be about *subject (OpenID Connect Core 1.0 section 5.3.2:
// otherwise it must not be used); with no ID token, *subject is "" and
// takes the answer's.
func (p *OIDC) userinfo(ctx context.Context, tok *oauth2.Token, subject *string, claims map[string]any) error {
	if p.provider.UserInfoEndpoint() == "" {
		return errors.New("reading the user's claims: the identity provider has no userinfo endpoint")
	}
	ui, err := p.provider.UserInfo(p.ctx(ctx), oauth2.StaticTokenSource(tok))
	if err != nil {
		return fmt.Errorf("%w: reading the userinfo endpoint: %v", ErrProviderUnavailable, err)
	}
	if *subject != "" && ui.Subject != *subject {
		return errors.New("reading the userinfo endpoint: its answer is about another user than the ID token")
	}
	extra := map[string]any{}
	if err := ui.Claims(&extra); err != nil {
		return fmt.Errorf("reading the userinfo endpoint: %w", err)
	}
	for k, v := range extra {
		if _, ok := claims[k]; !ok {
			claims[k] = v
		}
	}
	*subject = ui.Subject
	return nil
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

// classify marks network failures and server errors as
// ErrProviderUnavailable; an error the provider answered with
// (invalid_grant, …) stays a refusal.
func classify(doing string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode == "" && re.Response != nil && re.Response.StatusCode >= 500 {
			return fmt.Errorf("%w: %s: %s", ErrProviderUnavailable, doing, re.Response.Status)
		}
		code := re.ErrorCode
		if code == "" && re.Response != nil {
			code = re.Response.Status
		}
		return errors.New(strings.TrimSpace(fmt.Sprintf("%s: the identity provider refused: %s %s", doing, code, re.ErrorDescription)))
	}
	return fmt.Errorf("%w: %s: %v", ErrProviderUnavailable, doing, err)
}

// Bounds on the claims kept for policies (Identity.Claims): they live in
// every session, and a provider (or a person who can set their own
// attributes there) could send anything.
const (
	maxClaims      = 64       // claims kept per person
	maxClaimName   = 128      // bytes of a claim's name
	maxClaimValues = 256      // values of one list claim
	maxClaimBytes  = 1024     // bytes of one value
	maxClaimsTotal = 16 << 10 // bytes of names and values together
)

// textClaims keeps the claims a policy can compare: a string, or a list of
// strings (an empty one included), in order of name, within the bounds
// above; what does not fit is left out, whole. Numbers, booleans and
// objects are left out on purpose: Pomerium compares them as what they
// are, so a policy's text "1234" does not match the number 1234 there,
// and must not here either.
func textClaims(claims map[string]any) map[string][]string {
	out := map[string][]string{}
	total := 0
	for _, name := range slices.Sorted(maps.Keys(claims)) {
		if len(out) == maxClaims {
			break
		}
		if len(name) > maxClaimName {
			continue
		}
		var vals []string
		switch v := claims[name].(type) {
		case string:
			vals = []string{v}
		case []any:
			if len(v) > maxClaimValues {
				continue
			}
			vals = make([]string, 0, len(v))
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					vals = nil
					break
				}
				vals = append(vals, s)
			}
			if vals == nil {
				continue
			}
		default:
			continue
		}
		size := len(name)
		fits := true
		for _, s := range vals {
			size += len(s)
			fits = fits && len(s) <= maxClaimBytes
		}
		if !fits || total+size > maxClaimsTotal {
			continue
		}
		total += size
		out[name] = vals
	}
	return out
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
