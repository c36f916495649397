package authenticate

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/session"
)

// TestSignInRedirectTargets: a browser sign-in only ever returns to a
// configured route host; anything else is a 400 page with no redirect and
// no provider round trip.
func TestSignInRedirectTargets(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ name, uri string }{
		{"missing", ""},
		{"host that is not a route", "https://evil.example/"},
		{"scheme-relative", "//evil.example/"},
		{"scheme-relative to a route", "//" + routeHost + "/"},
		{"route name as a prefix", "http://127.0.0.1.evil.example/"},
		{"route name as a prefix of another host", "https://" + routeHost + ".evil.example/"},
		{"route name as a suffix", "https://evil" + routeHost + "/"},
		{"the authenticate host", authURL + "/"},
		{"javascript", "javascript:alert(document.cookie)"},
		{"javascript with slashes", "javascript://" + routeHost + "/%0aalert(1)"},
		{"data", "data:text/html,<script>alert(1)</script>"},
		{"userinfo naming the route", "https://" + routeHost + "@evil.example/"},
		{"userinfo on the route", "https://user:pass@" + routeHost + "/"},
		{"backslash", "https://evil.example\\@" + routeHost + "/"},
		{"relative path", "/api"},
		{"route host with another port", "https://" + routeHost + ":8443/"},
		{"ftp", "ftp://" + routeHost + "/"},
		{"plain http to an https route", "http://" + routeHost + "/api"},
		{"plain http with the https port", "http://" + routeHost + ":443/api"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.get(t, authURL+"/.pomerium/sign_in?"+url.Values{"pomerium_redirect_uri": {tc.uri}}.Encode(), req{header: []string{"Accept", "text/html"}})
			if res.code != http.StatusBadRequest || res.location != "" {
				t.Errorf("got %d to %q, want 400 with no Location (body %q)", res.code, res.location, res.body)
			}
			if res.cookie(cookieName+"_csrf") != nil {
				t.Error("a refused sign-in set a CSRF cookie")
			}
		})
	}
	// The ones that are fine.
	for _, uri := range []string{routeURL + "/api?x=1", routeURL + ":443/", otherURL + "/"} {
		f.startSignIn(t, authURL+"/.pomerium/sign_in?"+url.Values{"pomerium_redirect_uri": {uri}}.Encode())
	}
}

// TestSignInRefusesPlainHTTPReturn is the regression test for the
// downgrade: a sign-in link with pomerium_redirect_uri=http://<route> made
// the hand-off send the route's token in the clear, to a host the router
// matches whatever the scheme. Only a plain-http development setup (its
// authenticate URL is http) returns to http.
func TestSignInRefusesPlainHTTPReturn(t *testing.T) {
	f := newFixture(t)
	res := f.get(t, authURL+"/.pomerium/sign_in?pomerium_redirect_uri="+url.QueryEscape("http://"+routeHost+"/"), req{})
	if res.code != http.StatusBadRequest || res.location != "" {
		t.Errorf("https setup, http return: got %d to %q, want 400", res.code, res.location)
	}

	dev := newFixtureWith(t, "http://"+authHost, cookieSecret)
	res = dev.get(t, "http://"+authHost+"/.pomerium/sign_in?pomerium_redirect_uri="+url.QueryEscape("http://"+routeHost+"/"), req{})
	if res.code != http.StatusFound {
		t.Errorf("plain-http setup, http return: got %d %q, want 302 to the provider", res.code, res.body)
	}
}

// TestRedirectToSignInReturnsOverHTTPS: behind a load balancer that
// terminates TLS (INSECURE_SERVER) the request has no TLS but the browser
// is on https; the return address is https unless the whole setup is
// plain http.
func TestRedirectToSignInReturnsOverHTTPS(t *testing.T) {
	for _, tc := range []struct {
		name, authURL, target, wantBack string
	}{
		{"TLS", authURL, routeURL + "/api/v1/pods?watch=1", routeURL + "/api/v1/pods?watch=1"},
		{"TLS terminated in front", authURL, "http://" + routeHost + "/api", routeURL + "/api"},
		{"plain-http development setup", "http://" + authHost, "http://" + routeHost + "/api", "http://" + routeHost + "/api"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureWith(t, tc.authURL, cookieSecret)
			r := httptest.NewRequest("GET", tc.target, nil) // with TLS for https
			w := httptest.NewRecorder()
			f.a.RedirectToSignIn(w, r)
			loc, _ := url.Parse(w.Header().Get("Location"))
			if got := loc.Query().Get("pomerium_redirect_uri"); w.Code != http.StatusFound || got != tc.wantBack {
				t.Errorf("got %d with pomerium_redirect_uri %q, want 302 with %q", w.Code, got, tc.wantBack)
			}
			// And that address is one sign-in accepts.
			if _, _, err := f.a.routeRedirect(tc.wantBack); err != nil {
				t.Errorf("sign-in refuses the address RedirectToSignIn made: %v", err)
			}
		})
	}
}

// loopbackCases are pomerium_redirect_uri values for the login API:
// loopback http URLs where portcullis-cli listens are accepted, nothing
// else is.
var loopbackCases = []struct {
	uri  string
	want bool
}{
	{"http://127.0.0.1:8000/callback", true},
	{"http://127.0.0.1/", true},
	{"http://127.0.0.1:49152/portcullis-cli?x=1", true},
	{"http://[::1]:8000/callback", true},
	{"http://[0:0:0:0:0:0:0:1]:8000/", true},
	{"http://localhost:8000/callback", true},
	{"http://localhost/", true},

	{"", false},
	{"http://127.0.0.2:8000/", false},
	{"http://127.1:8000/", false},
	{"http://0x7f.1:8000/", false},
	{"http://0x7f000001:8000/", false},
	{"http://2130706433:8000/", false},
	{"http://0177.0.0.1:8000/", false},
	{"http://127.000.000.001:8000/", false},
	{"http://0.0.0.0:8000/", false},
	{"http://[::]:8000/", false},
	{"http://[::ffff:127.0.0.1]:8000/", false},
	{"http://[::1%25lo]:8000/", false},
	{"http://localhost.evil.example:8000/", false},
	{"http://localhost.:8000/", false},
	{"http://LOCALHOST.evil:8000/", false},
	{"http://127.0.0.1.evil.example/", false},
	{"http://127.0.0.1.nip.io:8000/", false},
	{"https://127.0.0.1:8000/", false},
	{"https://localhost:8000/", false},
	{"https://evil.example/cb", false},
	{"//evil.example/cb", false},
	{"//127.0.0.1:8000/cb", false},
	{"http://10.0.0.1:8000/cb", false},
	{"http://user@127.0.0.1:8000/", false},
	{"http://127.0.0.1:8000@evil.example/", false},
	{"http://127.0.0.1:8000\\@evil.example/", false},
	{"http://evil.example\\@127.0.0.1:8000/", false},
	{"http://127.0.0.1:8000#@evil.example/", false},
	{"http://127.0.0.1:8000/cb#fragment", false},
	{"http://127.0.0.1:8000\\evil.example/", false},
	{"http:127.0.0.1:8000/", false},
	{"http:/127.0.0.1:8000/", false},
	{"http:///127.0.0.1:8000/", false},
	{"javascript:alert(1)", false},
	{"data:text/html,hi", false},
	{"file:///etc/passwd", false},
	{"ws://127.0.0.1:8000/", false},
	{"http://127.0.0.1:8000/\r\nLocation: https://evil.example", false},
	{"http://127.0.0.1%2f@evil.example/", false},
}

func TestLoopbackRedirect(t *testing.T) {
	for _, tc := range loopbackCases {
		u, err := loopbackRedirect(tc.uri)
		if got := err == nil; got != tc.want {
			t.Errorf("loopbackRedirect(%q): got ok %v (%v), want %v", tc.uri, got, err, tc.want)
			continue
		}
		if err == nil {
			checkLoopback(t, tc.uri, u)
		} else if !strings.Contains(err.Error(), "pomerium_redirect_uri") {
			t.Errorf("loopbackRedirect(%q): error %q does not say what is wrong", tc.uri, err)
		}
	}
}

// TestLoginAPILoopback drives the same table through the login API: 200
// with the sign-in URL, or 400 with a message and no sign-in URL.
func TestLoginAPILoopback(t *testing.T) {
	f := newFixture(t)
	for _, tc := range loopbackCases {
		res := f.get(t, routeURL+"/.pomerium/api/v1/login?"+url.Values{"pomerium_redirect_uri": {tc.uri}}.Encode(), req{})
		switch {
		case tc.want && (res.code != http.StatusOK || !strings.HasPrefix(res.body, authURL+"/.pomerium/sign_in?pomerium_login=")):
			t.Errorf("login API with %q: got %d %q, want 200 and the sign-in URL", tc.uri, res.code, res.body)
		case !tc.want && (res.code != http.StatusBadRequest || strings.Contains(res.body, "sign_in") || res.location != ""):
			t.Errorf("login API with %q: got %d %q, want 400", tc.uri, res.code, res.body)
		case !tc.want && (res.header.Get("Content-Type") != "application/json" || !strings.Contains(res.body, `"message":"portcullis: `) || !strings.Contains(res.body, "pomerium_redirect_uri")):
			// portcullis-cli prints the message of the Status.
			t.Errorf("login API with %q: got %s %q, want a Status saying what is wrong", tc.uri, res.header.Get("Content-Type"), res.body)
		}
	}
}

// checkLoopback asserts that an accepted URL, as Portcullis will write it
// into a Location header, reaches a loopback host for Go and for a
// browser's reading of the authority (which ends at a backslash too).
func checkLoopback(t testing.TB, raw string, u *url.URL) {
	t.Helper()
	if u.Scheme != "http" || u.User != nil || u.Fragment != "" {
		t.Fatalf("loopbackRedirect(%q) accepted %#v", raw, u)
	}
	s := u.String()
	again, err := url.Parse(s)
	if err != nil || again.Host != u.Host {
		t.Fatalf("loopbackRedirect(%q): %q does not parse back to host %q: %v", raw, s, u.Host, err)
	}
	authority := strings.TrimPrefix(s, "http://")
	if i := strings.IndexAny(authority, "/\\?#"); i >= 0 {
		authority = authority[:i]
	}
	if strings.ContainsAny(authority, "@%") || authority != u.Host {
		t.Fatalf("loopbackRedirect(%q): a browser reads the authority of %q as %q", raw, s, authority)
	}
	if !isLoopbackName(u.Hostname()) {
		t.Fatalf("loopbackRedirect(%q) accepted host %q", raw, u.Hostname())
	}
}

func isLoopbackName(host string) bool {
	if host == "localhost" || host == "127.0.0.1" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.To4() == nil && ip.Equal(net.IPv6loopback)
}

// TestProgrammaticLogin runs the CLI's sign-in: the login API's URL, the
// provider, and the token delivered to the loopback listener, for this
// route only.
func TestProgrammaticLogin(t *testing.T) {
	f := newFixture(t)
	const cb = "http://127.0.0.1:8000/portcullis-cli?x=1"
	res := f.get(t, routeURL+"/.pomerium/api/v1/login?pomerium_redirect_uri="+url.QueryEscape(cb), req{})
	if res.code != http.StatusOK || res.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("login API: got %d %q (%s), want 200 text/plain", res.code, res.body, res.header.Get("Content-Type"))
	}
	s := f.startSignIn(t, res.body)
	res = f.callback(t, s)
	u, err := url.Parse(res.location)
	if res.code != http.StatusFound || err != nil || u.Host != "127.0.0.1:8000" || u.Path != "/portcullis-cli" || u.Query().Get("x") != "1" {
		t.Fatalf("callback: got %d to %q, want 302 to the loopback listener", res.code, res.location)
	}
	c, err := f.keys.Verify(u.Query().Get("pomerium_jwt"), routeHost, f.clock())
	if err != nil || c.Email != "someuser@example.com" {
		t.Fatalf("delivered token: %v %+v", err, c)
	}
	if _, err := f.keys.Verify(u.Query().Get("pomerium_jwt"), otherHost, f.clock()); err == nil {
		t.Error("the token for one route opens another")
	}
}

// TestSignInProgrammaticLoginBlob: the pomerium_login blob of the sign-in
// URL is sealed; tampered, expired or any other sealed value is a 400
// with no provider round trip.
func TestSignInProgrammaticLoginBlob(t *testing.T) {
	f := newFixture(t)
	res := f.get(t, routeURL+"/.pomerium/api/v1/login?pomerium_redirect_uri="+url.QueryEscape("http://127.0.0.1:8000/cb"), req{})
	u, err := url.Parse(res.body)
	if err != nil {
		t.Fatal(err)
	}
	blob := u.Query().Get("pomerium_login")
	tampered := []byte(blob)
	tampered[len(tampered)/2] ^= 'A' ^ 'B'
	if tampered[len(tampered)/2] == blob[len(blob)/2] {
		t.Fatal("tampering changed nothing")
	}
	fresh := f.browserSignIn(t)
	// A blob sealed by the server for a non-loopback address cannot exist;
	// one sealed with the cookie secret for it (a bug elsewhere, a leaked
	// secret) is still refused at sign-in.
	evil := f.sealer.Seal(purposeLogin, []byte(`{"r":"https://evil.example/cb","a":"`+routeHost+`"}`), f.clock().Add(time.Minute))

	for _, tc := range []struct{ name, blob, want string }{
		{"tampered", string(tampered), "Sign-in link expired"},
		{"truncated", blob[:len(blob)-4], "Sign-in link expired"},
		{"state instead of blob", fresh.state, "Sign-in link expired"},
		{"CSRF cookie instead of blob", fresh.csrf.Value, "Sign-in link expired"},
		{"not base64", "%%%", "Sign-in link expired"},
		{"non-loopback target", evil, "Bad sign-in link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.get(t, authURL+"/.pomerium/sign_in?"+url.Values{"pomerium_login": {tc.blob}}.Encode(), req{header: []string{"Accept", browserAccept}})
			if res.code != http.StatusBadRequest || res.location != "" || !strings.Contains(res.body, tc.want) {
				t.Errorf("got %d to %q %q, want 400 %q", res.code, res.location, res.body, tc.want)
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		f.advance(stateTTL + 2*time.Second)
		res := f.get(t, authURL+"/.pomerium/sign_in?"+url.Values{"pomerium_login": {blob}}.Encode(), req{})
		if res.code != http.StatusBadRequest || res.location != "" {
			t.Errorf("got %d to %q, want 400", res.code, res.location)
		}
	})
}

// TestRouteCallbackRedirectStaysOnHost: after the hand-off the browser
// goes back where it was going on this host, and to "/" for anything that
// would leave it.
func TestRouteCallbackRedirectStaysOnHost(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	for _, tc := range []struct{ back, want string }{
		{routeURL + "/api/v1/namespaces?limit=5", "/api/v1/namespaces?limit=5"},
		{routeURL + "/", "/"},
		{"https://evil.example/steal", "/"},
		{otherURL + "/api", "/"},
		{"//evil.example/steal", "/"},
		{"//" + routeHost + "//evil.example/", "/"},
		{routeURL + "//evil.example/", "/"},
		{routeURL + "/%2Fevil.example/", "/"},
		{routeURL + "/%2F%2Fevil.example/", "/"},
		{"/\\evil.example/", "/"},
		{"javascript:alert(1)", "/"},
		{"https://" + routeHost + "@evil.example/", "/"},
		{"https://evil.example@" + routeHost + "/x", "/x"},
		{"", "/"},
		{"%%%", "/"},
	} {
		target, bind := f.boundCallback(t, routeURL, routeHost, s.token, tc.back)
		res := f.get(t, target, req{cookies: []*http.Cookie{bind}})
		if res.code != http.StatusFound || res.location != tc.want {
			t.Errorf("pomerium_redirect_uri %q: got %d to %q, want 302 to %q", tc.back, res.code, res.location, tc.want)
		}
		if loc, err := url.Parse(res.location); err != nil || loc.Host != "" || loc.Scheme != "" || strings.HasPrefix(res.location, "//") || strings.HasPrefix(res.location, "/\\") {
			t.Errorf("pomerium_redirect_uri %q: Location %q can leave the host", tc.back, res.location)
		}
	}
}

// TestRouteCallbackRefusesOtherTokens: the hand-off only takes a token for
// this route whose session is live.
func TestRouteCallbackRefusesOtherTokens(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	other, err := f.keys.Issue(withAudience(*s.claims, otherHost))
	if err != nil {
		t.Fatal(err)
	}
	noSession := *s.claims
	noSession.SessionID, noSession.ID = "", ""
	noSID, err := f.keys.Issue(noSession)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"token for another route", other, http.StatusBadRequest},
		{"token without a session", noSID, http.StatusBadRequest},
		{"no token", "", http.StatusBadRequest},
		{"tampered token", s.token[:len(s.token)-3] + "AAA", http.StatusBadRequest},
	} {
		target, bind := f.boundCallback(t, routeURL, routeHost, tc.token, routeURL+"/")
		res := f.get(t, target, req{cookies: []*http.Cookie{bind}})
		if res.code != tc.want || res.cookie(cookieName) != nil {
			t.Errorf("%s: got %d with cookies %v, want %d and no cookie", tc.name, res.code, res.cookies, tc.want)
		}
	}
	f.store.Delete(t.Context(), s.claims.SessionID)
	target, bind := f.boundCallback(t, routeURL, routeHost, s.token, "")
	res := f.get(t, target, req{cookies: []*http.Cookie{bind}})
	if res.code != http.StatusUnauthorized || res.cookie(cookieName) != nil {
		t.Errorf("token of a signed-out session: got %d with cookies %v, want 401 and no cookie", res.code, res.cookies)
	}
}

// withAudience returns c for another audience, as a new token.
func withAudience(c session.Claims, audience string) session.Claims {
	c.Audience, c.ID, c.IssuedAt, c.Issuer = audience, "", time.Time{}, ""
	return c
}

// TestRouteCallbackBindsToBrowser is the regression test of login CSRF:
// a link to the route's callback with someone else's token must not sign
// the browser that follows it in as them. Only the browser that started
// the sign-in at the route (its sign-in cookie) takes the hand-off; any
// other gets a sign-in of its own, or, with no sign-in cookie at all, a
// page saying the sign-in was not started there.
func TestRouteCallbackBindsToBrowser(t *testing.T) {
	f := newFixture(t)
	// The attacker signs in in their own browser and keeps the hand-off
	// link instead of following it.
	attacker := f.browserSignIn(t)
	res := f.callback(t, attacker)
	if res.code != http.StatusFound || !strings.HasPrefix(res.location, routeURL+"/.pomerium/callback/?") {
		t.Fatalf("attacker's callback: got %d to %q", res.code, res.location)
	}
	link := res.location
	linkURL, _ := url.Parse(link)
	attackersToken := linkURL.Query().Get("pomerium_jwt")
	// The victim, who started a sign-in of their own at the route.
	victim := f.browserSignIn(t)

	refused := func(name string, res *response) {
		t.Helper()
		if res.code != http.StatusBadRequest || res.cookie(cookieName) != nil || !strings.Contains(res.body, "not started in this browser") {
			t.Errorf("%s: got %d with cookies %v, want 400 \"not started in this browser\" and no session", name, res.code, res.cookies)
		}
	}
	// startedOver checks that the route began a sign-in of this browser's
	// own instead of taking the token.
	startedOver := func(name string, res *response) {
		t.Helper()
		if res.code != http.StatusFound || !browserSignInLocation(res.location, routeURL+"/api") || res.cookie(cookieName) != nil || res.cookie(cookieName+"_signin") == nil {
			t.Errorf("%s: got %d to %q with cookies %v, want 302 to sign in again, a new sign-in cookie and no session", name, res.code, res.location, res.cookies)
		}
	}
	refused("the link, in a browser with no sign-in cookie", f.get(t, link, req{}))
	startedOver("the link, in a browser that started its own sign-in", f.get(t, link, req{cookies: []*http.Cookie{victim.bind}}))

	// The binding covers the token: the attacker's binding with another
	// token of theirs (or the victim's binding with the attacker's token).
	victimsRes := f.callback(t, victim)
	victimsLink, _ := url.Parse(victimsRes.location)
	swapped := *victimsLink
	q := swapped.Query()
	q.Set("pomerium_jwt", attackersToken)
	swapped.RawQuery = q.Encode()
	startedOver("the victim's binding with the attacker's token", f.get(t, swapped.String(), req{cookies: []*http.Cookie{victim.bind}}))
	refused("the victim's binding with the attacker's token, no sign-in cookie", f.get(t, swapped.String(), req{}))

	// Without any binding the route starts a bound sign-in instead of
	// taking the token.
	unbound := *linkURL
	q = unbound.Query()
	q.Del("pomerium_bind")
	unbound.RawQuery = q.Encode()
	startedOver("unbound hand-off", f.get(t, unbound.String(), req{}))

	// The victim's own hand-off, in the victim's browser, signs them in.
	res = f.get(t, victimsRes.location, req{cookies: []*http.Cookie{victim.bind}})
	if res.code != http.StatusFound || res.cookie(cookieName) == nil {
		t.Errorf("the victim's own hand-off: got %d with cookies %v, want 302 and a session", res.code, res.cookies)
	}
}

// TestSignInStartedOnTheSignInServiceIsBoundAtTheRoute: a sign-in opened
// on the sign-in service directly (a bookmark) carries no binding; the
// route binds it by starting over from there, and a browser already signed
// in on the sign-in service comes straight back, bound.
func TestSignInStartedOnTheSignInServiceIsBoundAtTheRoute(t *testing.T) {
	f := newFixture(t)
	s := f.startSignIn(t, authURL+"/.pomerium/sign_in?"+url.Values{"pomerium_redirect_uri": {routeURL + "/api"}}.Encode())
	res := f.callback(t, s)
	authCookie := res.cookie(cookieName)
	if res.code != http.StatusFound || authCookie == nil {
		t.Fatalf("callback: got %d %v", res.code, res.cookies)
	}
	res = f.get(t, res.location, req{})
	bind := res.cookie(cookieName + "_signin")
	if res.code != http.StatusFound || !browserSignInLocation(res.location, routeURL+"/api") || bind == nil {
		t.Fatalf("unbound hand-off: got %d to %q with %v, want a bound sign-in", res.code, res.location, res.cookies)
	}
	res = f.get(t, res.location, req{cookies: []*http.Cookie{authCookie}})
	if res.code != http.StatusFound || !strings.Contains(res.location, "pomerium_bind=") {
		t.Fatalf("signed-in browser: got %d to %q, want the bound hand-off", res.code, res.location)
	}
	res = f.get(t, res.location, req{cookies: []*http.Cookie{bind}})
	if res.code != http.StatusFound || res.location != "/api" || res.cookie(cookieName) == nil {
		t.Errorf("bound hand-off: got %d to %q with %v, want 302 to /api and a session", res.code, res.location, res.cookies)
	}
}
