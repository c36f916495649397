// Package authenticate signs people in: the OpenID Connect
// authorization-code flow with PKCE on the authenticate host, the hand-off
// of a signed-in session to route hosts, programmatic login for
// portcullis-cli (a token delivered to a loopback listener), sign-out, and
// the who-am-I page.
//
// Every redirect target is checked: a browser flow may only return to a
// configured route host, a programmatic login only to a loopback http URL.
// The state parameter, the CSRF cookie and the session cookie are sealed
// with COOKIE_SECRET.
//
// It must not proxy or decide access: it says who a request is from.
package authenticate
