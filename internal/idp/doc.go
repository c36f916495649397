// Package idp talks to identity providers: it builds the sign-in URL,
// exchanges the authorization code (with PKCE) for verified identity
// claims, refreshes them with the provider's refresh token, and knows the
// provider's sign-out URL. Any OpenID Connect issuer works through
// discovery; named providers are presets over it.
//
// It must not set cookies, issue Portcullis tokens or decide access: the
// authenticate package drives the flow and the policy package decides.
package idp
