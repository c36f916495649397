// Package idp talks to identity providers: it builds the sign-in URL,
// exchanges the authorization code (with PKCE) for verified identity
// claims, refreshes them with the provider's refresh token, and knows the
// provider's sign-out URL. Any OpenID Connect issuer works through
// discovery (OIDC); the named providers (google, azure, okta, auth0,
// gitlab, onelogin, ping, cognito, keycloak, builtin) are presets over it
// that only change defaults and quirks (presets.go); github is OAuth 2.0
// with GitHub's REST API (GitHub). docs/identity-providers.md is the
// user's side of the same table.
//
// It must not set cookies, issue Portcullis tokens or decide access: the
// authenticate package drives the flow and the policy package decides.
// Provider tokens it returns are secrets that the caller keeps
// server-side.
package idp
