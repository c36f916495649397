package authenticate

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzLoopbackRedirect: whatever a client sends as pomerium_redirect_uri,
// an accepted one is an http URL whose host, for Go and for a browser,
// is 127.0.0.1, [::1] or localhost.
func FuzzLoopbackRedirect(f *testing.F) {
	for _, tc := range loopbackCases {
		f.Add(tc.uri)
	}
	for _, s := range []string{
		"http://127.0.0.1:8000\\.evil.example/", "http://localhost%2e.evil/", "http://[::1]evil/",
		"http://127.0.0.1:8000/%2F%2Fevil.example", "http://127.0.0.1:8000?@evil.example/",
		"http://127.0.0.1:8000;@evil.example/", "HTTP://LOCALHOST:1/", "http://127.0.0.1:08000/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := loopbackRedirect(raw)
		if err != nil {
			return
		}
		checkLoopback(t, raw, u)
		// What the hand-off does with it: add the token, and it is still
		// the same loopback address.
		q := u.Query()
		q.Set("pomerium_jwt", "x.y.z")
		u.RawQuery = q.Encode()
		checkLoopback(t, raw, u)
	})
}

// FuzzCallbackState: no state string a client makes up completes a
// sign-in, even with a genuine CSRF cookie and a code the provider would
// accept: the provider is never asked, and no session cookie is set.
func FuzzCallbackState(f *testing.F) {
	fx := newFixture(f)
	genuine := fx.browserSignIn(f)
	other := newFixtureWith(f, authURL, cookieSecret2).browserSignIn(f)
	f.Add(genuine.state[:len(genuine.state)-1] + "A")
	f.Add(genuine.csrf.Value)
	f.Add(other.state) // sealed with another COOKIE_SECRET
	f.Add("")
	f.Add(strings.Repeat("A", 60))
	f.Add(strings.Repeat("A", 5000))
	f.Add("%00")
	f.Fuzz(func(t *testing.T, state string) {
		if state == genuine.state {
			return
		}
		before := fx.idp.exchanges()
		res := fx.get(t, authURL+"/oauth2/callback?"+url.Values{"state": {state}, "code": {genuine.code}}.Encode(), req{cookies: []*http.Cookie{genuine.csrf}})
		if res.code != http.StatusBadRequest || res.location != "" || res.cookie(cookieName) != nil {
			t.Fatalf("state %q: got %d to %q with cookies %v, want 400 and no session", state, res.code, res.location, res.cookies)
		}
		if fx.idp.exchanges() != before {
			t.Fatalf("state %q reached the provider", state)
		}
	})
}

// FuzzRouteCallbackBinding: with a genuine token for the route and a
// genuine sign-in cookie in the browser, no pomerium_bind a client makes
// up signs the browser in: only the one the sign-in service sealed for
// that cookie and that token does. The browser is sent to sign in again.
func FuzzRouteCallbackBinding(f *testing.F) {
	fx := newFixture(f)
	s := fx.signIn(f)
	target, bindCookie := fx.boundCallback(f, routeURL, routeHost, s.token, routeURL+"/")
	u, _ := url.Parse(target)
	genuine := u.Query().Get("pomerium_bind")
	f.Add(genuine[:len(genuine)-1] + "A")
	f.Add(bindCookie.Value)
	f.Add(fx.sealer.Seal(purposeHandOff+" "+otherHost, handOffBinding("nonce-"+routeHost, s.token), fx.clock().Add(handOffTTL)))
	f.Add(fx.sealer.Seal(purposeHandOff+" "+routeHost, handOffBinding("another nonce", s.token), fx.clock().Add(handOffTTL)))
	f.Add(strings.Repeat("A", 5000))
	f.Add("%00")
	f.Fuzz(func(t *testing.T, bind string) {
		if bind == genuine || bind == "" {
			return
		}
		q := u.Query()
		q.Set("pomerium_bind", bind)
		res := fx.get(t, routeURL+"/.pomerium/callback/?"+q.Encode(), req{cookies: []*http.Cookie{bindCookie}})
		if res.code != http.StatusFound || !browserSignInLocation(res.location, routeURL+"/") || res.cookie(cookieName) != nil {
			t.Fatalf("pomerium_bind %q: got %d to %q with cookies %v, want 302 to sign in and no session", bind, res.code, res.location, res.cookies)
		}
	})
}
