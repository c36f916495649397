package authenticate

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestSignOutRefusesCrossOrigin is the regression test of logout CSRF: a
// page of another origin (another site, or a sibling host of the same
// site, which SameSite cookies do not tell apart) could end a person's
// session with a link. Sign-out is now a same-origin POST; a GET asks.
func TestSignOutRefusesCrossOrigin(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	live := func(what string) {
		t.Helper()
		if _, err := f.store.Get(t.Context(), s.claims.SessionID); err != nil {
			t.Fatalf("%s ended the session: %v", what, err)
		}
	}
	for _, host := range []string{routeURL, authURL} {
		cookie := s.routeCookie
		if host == authURL {
			cookie = s.authCookie
		}
		target := host + "/.pomerium/sign_out"

		res := f.get(t, target, req{header: []string{"Accept", "text/html"}, cookies: []*http.Cookie{cookie}})
		if res.code != http.StatusOK || !strings.Contains(res.body, `<form method="post" action="/.pomerium/sign_out">`) ||
			res.header.Get("X-Frame-Options") != "DENY" || res.cookie(cookieName) != nil {
			t.Errorf("GET %s: got %d %v %q, want 200 with the sign-out form, not framable, no cookie change", target, res.code, res.header, res.body)
		}
		live("GET " + target)

		res = f.get(t, target, req{header: []string{"Accept", "application/json"}, cookies: []*http.Cookie{cookie}})
		if res.code != http.StatusMethodNotAllowed || !strings.Contains(res.body, "POST") {
			t.Errorf("GET %s as a program: got %d %q, want 405 saying to POST", target, res.code, res.body)
		}
		live("GET " + target + " as a program")

		for _, h := range [][]string{
			{"Sec-Fetch-Site", "cross-site"},
			{"Sec-Fetch-Site", "same-site"}, // a sibling host
			{"Origin", "https://evil.example"},
			{"Origin", "https://sibling.example.com"},
		} {
			// do, not post: the header under test is the only one saying
			// where the request comes from (older browsers send Origin
			// but no Sec-Fetch-Site).
			res = f.do(t, "POST", target, req{header: append([]string{"Accept", "text/html"}, h...), cookies: []*http.Cookie{cookie}})
			if res.code != http.StatusForbidden || res.cookie(cookieName) != nil {
				t.Errorf("POST %s with %s: got %d %v, want 403 and no cookie change", target, h, res.code, res.cookies)
			}
			live("POST " + target + " with " + strings.Join(h, ": "))
		}
	}

	// The sign-in service's GET ends nothing with a seal that is not one
	// of a real sign-out of this session.
	for _, forged := range []string{"x", f.sealer.Seal(purposeSignedOut, []byte("another session"), f.clock().Add(handOffTTL)),
		f.sealer.Seal(purposeHandOff, []byte(s.claims.SessionID), f.clock().Add(handOffTTL))} {
		res := f.get(t, authURL+"/.pomerium/sign_out?"+url.Values{"pomerium_signed_out": {forged}}.Encode(),
			req{header: []string{"Accept", "text/html"}, cookies: []*http.Cookie{s.authCookie}})
		if res.code != http.StatusOK || res.location != "" || !strings.Contains(res.body, "Sign out of Portcullis?") {
			t.Errorf("GET with pomerium_signed_out %q: got %d to %q, want the confirmation page", forged[:min(10, len(forged))], res.code, res.location)
		}
		live("a forged pomerium_signed_out")
	}

	// A program signs out with its token, and no browser headers.
	res := f.do(t, "POST", routeURL+"/.pomerium/sign_out", req{header: []string{"Authorization", "Bearer Pomerium-" + s.token}})
	if res.code != http.StatusSeeOther {
		t.Errorf("POST with the token: got %d, want 303", res.code)
	}
	if _, err := f.store.Get(t.Context(), s.claims.SessionID); err == nil {
		t.Error("POST with the token did not end the session")
	}
}
