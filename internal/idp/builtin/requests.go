package builtin

import (
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// authRequest is one sign-in in progress, from the authorize endpoint to
// the code exchange. The storage keeps the live one under its lock and
// hands op copies (see storage.snapshot), so that op reads a request while
// the login page changes it without a data race.
type authRequest struct {
	id      string
	created time.Time
	// expires is unboundTTL after created until a browser opens the login
	// page, then authRequestTTL after it (storage.bindLogin).
	expires  time.Time
	clientID string
	// addr is the client address of the authorize call that made it,
	// whose share of the table it counts against (storage.byAddr).
	addr netip.Addr
	// redirectURI, state, nonce, scopes, responseType, responseMode and
	// challenge are the client's request as op validated it.
	redirectURI  string
	state        string
	nonce        string
	loginHint    string
	scopes       []string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	challenge    *oidc.CodeChallenge

	// The login page's state. browser is the SHA-256 of the login cookie
	// of the browser that opened the page (bound says it is set);
	// failures counts wrong passwords.
	browser  [32]byte
	bound    bool
	failures int

	// Set by a successful login.
	done     bool
	subject  string
	authTime time.Time

	// code is the one authorization code issued, and when it expires;
	// redeemed says tokens were issued for it.
	code        string
	codeExpires time.Time
	redeemed    bool
}

var (
	_ op.AuthRequest    = (*authRequest)(nil)
	_ op.LogAuthRequest = (*authRequest)(nil)
)

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// GetAMR says how the person proved who they are: a password (RFC 8176).
func (a *authRequest) GetAMR() []string {
	if a.done {
		return []string{"pwd"}
	}
	return nil
}

// LogValue is what op logs of a request: never the state, nonce or code.
func (a *authRequest) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", a.id),
		slog.String("client_id", a.clientID),
		slog.String("redirect_uri", a.redirectURI),
		slog.Any("scopes", a.scopes),
	)
}

// refreshRequest is a refresh-token grant as op sees it: a copy of the
// stored refresh token's grant, whose scopes op may narrow.
type refreshRequest struct {
	token    string // the refresh token presented
	grantID  string
	clientID string
	subject  string
	scopes   []string
	amr      []string
	authTime time.Time
}

var _ op.RefreshTokenRequest = (*refreshRequest)(nil)

func (r *refreshRequest) GetAMR() []string                 { return r.amr }
func (r *refreshRequest) GetAudience() []string            { return []string{r.clientID} }
func (r *refreshRequest) GetAuthTime() time.Time           { return r.authTime }
func (r *refreshRequest) GetClientID() string              { return r.clientID }
func (r *refreshRequest) GetScopes() []string              { return r.scopes }
func (r *refreshRequest) GetSubject() string               { return r.subject }
func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.scopes = slices.Clone(scopes) }

// client is a registered Client as op.Client.
type client struct {
	Client
	idTokenTTL time.Duration
	loginURL   func(authRequestID string) string
}

var _ op.Client = (*client)(nil)

func (c *client) GetID() string                    { return c.ID }
func (c *client) RedirectURIs() []string           { return c.Client.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.Client.PostLogoutRedirectURIs }
func (c *client) LoginURL(id string) string        { return c.loginURL(id) }
func (c *client) AccessTokenType() op.AccessTokenType {
	// Opaque: the access token is only for this provider's userinfo
	// endpoint, and an opaque one can be revoked at once.
	return op.AccessTokenTypeBearer
}
func (c *client) IDTokenLifetime() time.Duration { return c.idTokenTTL }
func (c *client) DevMode() bool                  { return false }
func (c *client) ClockSkew() time.Duration       { return 0 }

// ApplicationType: a client with a secret is a confidential web client; one
// without is a native (public) client such as a CLI, which op allows any
// loopback port (RFC 8252 section 7.3) and which must use PKCE.
func (c *client) ApplicationType() op.ApplicationType {
	if c.Secret == "" {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

func (c *client) AuthMethod() oidc.AuthMethod {
	if c.Secret == "" {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}

// ResponseTypes: the authorization code flow only; no implicit flow.
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

// IsScopeAllowed admits the groups scope that some clients ask for (Dex's
// convention); the groups claim is sent either way.
func (c *client) IsScopeAllowed(scope string) bool { return scope == scopeGroups }

// IDTokenUserinfoClaimsAssertion puts the email and profile claims in the ID
// token, not only at the userinfo endpoint: Portcullis reads them there.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
