package authenticate

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/idp"
)

// refused checks that a callback was refused with code and created no
// session: no session cookie, no redirect, and (if exchanged is false)
// the provider was never asked to redeem the code.
func refused(t *testing.T, f *fixture, res *response, code int, wantTitle string, exchangesBefore int, exchanged bool) {
	t.Helper()
	if res.code != code {
		t.Errorf("got status %d, want %d (body %q)", res.code, code, res.body)
	}
	if res.location != "" {
		t.Errorf("got Location %q, want none", res.location)
	}
	if c := res.cookie(cookieName); c != nil && c.Value != "" {
		t.Errorf("got a session cookie %q, want none", c.Value)
	}
	if !strings.Contains(res.body, wantTitle) {
		t.Errorf("got page %q, want one titled %q", res.body, wantTitle)
	}
	if n := f.idp.exchanges() - exchangesBefore; !exchanged && n != 0 {
		t.Errorf("the provider was asked to exchange %d codes, want 0", n)
	}
}

func TestCallbackSignsIn(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	if s.claims.Email != "someuser@example.com" || s.claims.Audience != routeHost || s.claims.SessionID == "" {
		t.Errorf("hand-off token claims %+v, want someuser@example.com for %s with a session", s.claims, routeHost)
	}
	if _, err := f.store.Get(t.Context(), s.claims.SessionID); err != nil {
		t.Errorf("session %s not stored: %v", s.claims.SessionID, err)
	}
}

func TestCallbackTamperedState(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	for _, pos := range []int{0, len(s.state) / 2, len(s.state) - 2} {
		b := []byte(s.state)
		// Swap one base64url character for another: still decodes, but
		// the AEAD tag no longer matches.
		if b[pos] == 'A' {
			b[pos] = 'B'
		} else {
			b[pos] = 'A'
		}
		tampered := s
		tampered.state = string(b)
		before := f.idp.exchanges()
		res := f.callback(t, tampered)
		refused(t, f, res, http.StatusBadRequest, "Sign-in expired", before, false)
	}
	// The untampered state still works: the refusals did not use it up.
	if res := f.callback(t, s); res.code != http.StatusFound {
		t.Errorf("the genuine callback after tampered ones: got %d %q, want 302", res.code, res.body)
	}
}

func TestCallbackStateSealedForAnotherPurpose(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	signed := f.signIn(t)
	login := f.get(t, routeURL+"/.pomerium/api/v1/login?pomerium_redirect_uri="+url.QueryEscape("http://127.0.0.1:8000/cb"), req{})
	u, err := url.Parse(login.body)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, state string }{
		{"CSRF cookie value", s.csrf.Value},
		{"authenticate host session cookie", signed.authCookie.Value},
		{"route session cookie", signed.routeCookie.Value},
		{"programmatic login blob", u.Query().Get("pomerium_login")},
		{"Portcullis token", signed.token},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.state == "" && tc.name != "empty" {
				t.Fatal("no value to test with")
			}
			forged := s
			forged.state = tc.state
			before := f.idp.exchanges()
			refused(t, f, f.callback(t, forged), http.StatusBadRequest, "Sign-in expired", before, false)
		})
	}
}

func TestCallbackExpiredState(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	f.advance(stateTTL + 2*time.Second)
	before := f.idp.exchanges()
	refused(t, f, f.callback(t, s), http.StatusBadRequest, "Sign-in expired", before, false)
}

func TestCallbackJustInTime(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	f.advance(stateTTL - 2*time.Second)
	if res := f.callback(t, s); res.code != http.StatusFound {
		t.Errorf("callback just before the state expires: got %d %q, want 302", res.code, res.body)
	}
}

func TestCallbackReplayed(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	if res := f.callback(t, s); res.code != http.StatusFound {
		t.Fatalf("first callback: got %d %q, want 302", res.code, res.body)
	}
	// The same state, code and CSRF cookie again (an attacker who copied
	// the whole callback, cookie included).
	before := f.idp.exchanges()
	refused(t, f, f.callback(t, s), http.StatusBadRequest, "Sign-in already used", before, false)

	// Still refused later in the state's life, after a sweep of the used
	// states has run.
	f.advance(stateTTL / 2)
	f.callback(t, f.browserSignIn(t)) // runs a sweep
	before = f.idp.exchanges()
	refused(t, f, f.callback(t, s), http.StatusBadRequest, "Sign-in already used", before, false)
}

func TestCallbackMissingCSRFCookie(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	before := f.idp.exchanges()
	res := f.get(t, callbackURL(s.state, s.code), req{header: []string{"Accept", browserAccept}})
	refused(t, f, res, http.StatusBadRequest, "Sign-in not started here", before, false)

	// A CSRF cookie with the right name and an empty or garbage value is
	// no better.
	for _, v := range []string{"", "x", s.state} {
		res := f.get(t, callbackURL(s.state, s.code), req{header: []string{"Accept", browserAccept}, cookies: []*http.Cookie{{Name: cookieName + "_csrf", Value: v}}})
		refused(t, f, res, http.StatusBadRequest, "Sign-in not started here", before, false)
	}
	// The refusals did not use the sign-in up.
	if res := f.callback(t, s); res.code != http.StatusFound {
		t.Errorf("the genuine callback after refused ones: got %d %q, want 302", res.code, res.body)
	}
}

func TestCallbackCSRFCookieFromAnotherSignIn(t *testing.T) {
	f := newFixture(t)
	victim := f.browserSignIn(t)
	attacker := f.browserSignIn(t)
	before := f.idp.exchanges()
	// The victim's state with the attacker's own CSRF cookie (login CSRF
	// the other way round: the attacker completes someone else's sign-in).
	mixed := victim
	mixed.csrf = attacker.csrf
	refused(t, f, f.callback(t, mixed), http.StatusBadRequest, "Sign-in not started here", before, false)
	mixed = attacker
	mixed.csrf = victim.csrf
	refused(t, f, f.callback(t, mixed), http.StatusBadRequest, "Sign-in not started here", before, false)
}

func TestCallbackProviderRefused(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	before := f.idp.exchanges()
	res := f.get(t, authURL+"/oauth2/callback?"+url.Values{
		"state": {s.state}, "error": {"access_denied"}, "error_description": {"<b>the user said no</b>"},
	}.Encode(), req{header: []string{"Accept", browserAccept}, cookies: []*http.Cookie{s.csrf}})
	refused(t, f, res, http.StatusForbidden, "Sign-in refused", before, false)
	if !strings.Contains(res.body, "access_denied") || strings.Contains(res.body, "<b>") {
		t.Errorf("got page %q, want it to name access_denied with the description escaped", res.body)
	}
	// The refusal redeemed the state: the code cannot be sent after it.
	refused(t, f, f.callback(t, s), http.StatusBadRequest, "Sign-in already used", before, false)
}

func TestCallbackProviderUnavailable(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	f.idp.err = fmt.Errorf("%w: exchanging the authorization code: dial tcp 10.1.2.3:443: connect: connection refused", idp.ErrProviderUnavailable)
	before := f.idp.exchanges()
	res := f.callback(t, s)
	refused(t, f, res, http.StatusBadGateway, "Identity provider unavailable", before, true)
	for _, internal := range []string{"10.1.2.3", "dial tcp", "connection refused", "exchanging", s.code, s.state} {
		if strings.Contains(res.body, internal) {
			t.Errorf("the error page names %q: %q", internal, res.body)
		}
	}
}

func TestCallbackExchangeFailed(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	f.idp.err = errors.New("verifying the ID token: oidc: id token issued by a different provider, expected \"https://idp.example\"")
	before := f.idp.exchanges()
	res := f.callback(t, s)
	refused(t, f, res, http.StatusUnauthorized, "Sign-in failed", before, true)
	if strings.Contains(res.body, "oidc:") || strings.Contains(res.body, "idp.example") {
		t.Errorf("the error page names the provider's error: %q", res.body)
	}
}

// TestCallbackUnverifiedEmail: a provider that says the address is not
// verified gets the person a page saying so, and no session.
func TestCallbackUnverifiedEmail(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	f.idp.err = fmt.Errorf("%w: \"boss@example.com\" (email_verified is false)", idp.ErrUnverifiedEmail)
	before := f.idp.exchanges()
	res := f.callback(t, s)
	refused(t, f, res, http.StatusForbidden, "Email address not verified", before, true)
}

// TestCallbackPassesNonceAndVerifier: the Authenticator hands Exchange the
// nonce and PKCE verifier it sealed in this sign-in's state (the fake
// provider refuses any other), so a code from another sign-in (code
// injection) is refused by the provider's nonce and PKCE checks.
func TestCallbackPassesNonceAndVerifier(t *testing.T) {
	f := newFixture(t)
	victim := f.browserSignIn(t)
	attacker := f.browserSignIn(t)
	before := f.idp.exchanges()
	injected := victim
	injected.code = attacker.code // the attacker's code in the victim's callback
	refused(t, f, f.callback(t, injected), http.StatusUnauthorized, "Sign-in failed", before, true)

	// The attacker's own sign-in still completes with its own state.
	if res := f.callback(t, attacker); res.code != http.StatusFound {
		t.Errorf("callback with matching state and code: got %d %q, want 302", res.code, res.body)
	}
}

func TestCallbackWithoutCode(t *testing.T) {
	f := newFixture(t)
	s := f.browserSignIn(t)
	s.code = ""
	before := f.idp.exchanges()
	refused(t, f, f.callback(t, s), http.StatusUnauthorized, "Sign-in failed", before, true)
}

// TestCallbackRouteRemoved: the hand-off checks the return address against
// the routes of now; a route removed (by a reload) while the person was at
// the provider gets no token.
func TestCallbackRouteRemoved(t *testing.T) {
	f := newFixture(t)
	s := f.startSignIn(t, authURL+"/.pomerium/sign_in?"+url.Values{"pomerium_redirect_uri": {otherURL + "/"}}.Encode())
	f.removeRoute(otherHost)
	res := f.callback(t, s)
	if res.code != http.StatusBadRequest || res.location != "" || strings.Contains(res.body, "pomerium_jwt") {
		t.Errorf("got %d to %q (%q), want 400 and no token", res.code, res.location, res.body)
	}
}
