package authenticate

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/session"
)

// noSession checks that a route treats cookie as no session: Identify
// says the session ended, the who-am-I page sends a browser to sign in
// (back to itself) and answers kubectl 401.
func noSession(t *testing.T, f *fixture, cookie *http.Cookie) {
	t.Helper()
	r := httptest.NewRequest("GET", routeURL+"/api", nil)
	r.AddCookie(cookie)
	if id, err := f.identify(r, routeHost); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("Identify: got %+v, %v, want ErrSessionEnded", id, err)
	}
	res := f.whoAmI(t, "text/html,application/xhtml+xml", req{cookies: []*http.Cookie{cookie}})
	if res.code != http.StatusFound || !browserSignInLocation(res.location, routeURL+"/.pomerium/") {
		t.Errorf("browser: got %d to %q, want 302 to sign in and back", res.code, res.location)
	}
	res = f.whoAmI(t, "application/json, */*", req{cookies: []*http.Cookie{cookie}})
	if res.code != http.StatusUnauthorized || res.location != "" || !strings.Contains(res.body, `"Unauthorized"`) {
		t.Errorf("kubectl: got %d to %q %q, want 401 Status", res.code, res.location, res.body)
	}
}

// signedInAs checks that cookie opens the route as the test user.
func signedInAs(t *testing.T, f *fixture, cookie *http.Cookie) {
	t.Helper()
	r := httptest.NewRequest("GET", routeURL+"/api", nil)
	r.AddCookie(cookie)
	id, err := f.identify(r, routeHost)
	if err != nil || id.Email != "someuser@example.com" {
		t.Fatalf("Identify: got %+v, %v, want someuser@example.com", id, err)
	}
}

func TestSessionCookieTampered(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	signedInAs(t, f, s.routeCookie)
	v := []byte(s.routeCookie.Value)
	for _, pos := range []int{0, len(v) / 2, len(v) - 2} {
		b := slices.Clone(v)
		b[pos] ^= 'A' ^ 'B'
		if b[pos] == v[pos] {
			t.Fatal("tampering changed nothing")
		}
		noSession(t, f, &http.Cookie{Name: cookieName, Value: string(b)})
	}
	for _, v := range []string{"", "x", s.token, s.routeCookie.Value + "A", strings.Repeat("A", 5000)} {
		noSession(t, f, &http.Cookie{Name: cookieName, Value: v})
	}
}

func TestSessionCookieForAnotherHost(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	// The authenticate host's cookie names the same session, but is sealed
	// for that host.
	noSession(t, f, s.authCookie)
	// A cookie for another route: replay it here.
	target, bind := f.boundCallback(t, otherURL, otherHost, mustIssue(t, f, withAudience(*s.claims, otherHost)), "")
	res := f.get(t, target, req{cookies: []*http.Cookie{bind}})
	other := res.cookie(cookieName)
	if res.code != http.StatusFound || other == nil {
		t.Fatalf("other route's callback: got %d %v, want 302 with a cookie", res.code, res.cookies)
	}
	noSession(t, f, &http.Cookie{Name: cookieName, Value: other.Value})
	// And the route's own cookie on the other route.
	r := httptest.NewRequest("GET", otherURL+"/", nil)
	r.AddCookie(s.routeCookie)
	if _, err := f.identify(r, otherHost); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("this route's cookie on another route: got %v, want ErrSessionEnded", err)
	}
}

func TestSessionCookieAfterSignOut(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	res := f.post(t, routeURL+"/.pomerium/sign_out", req{header: []string{"Accept", "text/html"}, cookies: []*http.Cookie{s.routeCookie}})
	if res.code != http.StatusSeeOther || !strings.HasPrefix(res.location, authURL+"/.pomerium/sign_out?pomerium_signed_out=") {
		t.Errorf("route sign-out: got %d to %q, want 303 to the authenticate host's sign-out", res.code, res.location)
	}
	if c := res.cookie(cookieName); c == nil || c.MaxAge >= 0 {
		t.Errorf("route sign-out did not clear the cookie: %v", res.cookies)
	}
	noSession(t, f, s.routeCookie)
	// The authenticate host's cookie names the same session: it no longer
	// skips the provider.
	res = f.get(t, authURL+"/.pomerium/sign_in?pomerium_redirect_uri="+url.QueryEscape(routeURL+"/"), req{cookies: []*http.Cookie{s.authCookie}})
	if !strings.HasPrefix(res.location, "https://idp.example/") {
		t.Errorf("sign-in with the signed-out authenticate cookie: got %d to %q, want the provider", res.code, res.location)
	}
	// And the tokens of the session.
	r := httptest.NewRequest("GET", routeURL+"/api", nil)
	r.Header.Set("Authorization", "Bearer Pomerium-"+s.token)
	if _, err := f.identify(r, routeHost); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("token after sign-out: got %v, want ErrSessionEnded", err)
	}
}

// TestSignOutFromRouteEndsProviderSession is the regression test for
// sign-out from a route host never reaching the provider: the route
// revoked the session first, so the authenticate host no longer found it
// and skipped the provider's end-session endpoint.
func TestSignOutFromRouteEndsProviderSession(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	res := f.post(t, routeURL+"/.pomerium/sign_out", req{header: []string{"Accept", "text/html"}, cookies: []*http.Cookie{s.routeCookie}})
	if !strings.HasPrefix(res.location, authURL+"/.pomerium/sign_out?") {
		t.Fatalf("route sign-out: got %d to %q", res.code, res.location)
	}
	res = f.get(t, res.location, req{cookies: []*http.Cookie{s.authCookie}})
	if res.code != http.StatusSeeOther || res.location != f.idp.endURL {
		t.Errorf("authenticate sign-out: got %d to %q, want 303 to the provider's end-session URL", res.code, res.location)
	}
	if c := res.cookie(cookieName); c == nil || c.MaxAge >= 0 {
		t.Errorf("authenticate sign-out did not clear the cookie: %v", res.cookies)
	}

	// Signing out at the authenticate host first still passes the ID token
	// as a hint.
	s = f.signIn(t)
	res = f.post(t, authURL+"/.pomerium/sign_out", req{cookies: []*http.Cookie{s.authCookie}})
	if res.code != http.StatusSeeOther || res.location != f.idp.endURL {
		t.Errorf("authenticate sign-out: got %d to %q, want the provider", res.code, res.location)
	}
	if diff := cmp.Diff([]string{"", idpIDToken}, f.idp.endHints); diff != "" {
		t.Errorf("id_token_hint of each end-session URL (-want +got):\n%s", diff)
	}
	noSession(t, f, s.routeCookie)

	// No cookie, or a forged one: nothing to end at the provider.
	for _, c := range []*http.Cookie{nil, {Name: cookieName, Value: "forged"}} {
		res = f.post(t, authURL+"/.pomerium/sign_out", req{cookies: []*http.Cookie{c}})
		if res.code != http.StatusOK || res.location != "" || !strings.Contains(res.body, "Signed out") {
			t.Errorf("sign-out with cookie %v: got %d to %q, want 200 Signed out", c, res.code, res.location)
		}
	}
}

func TestSessionCookieAfterSecretRotation(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	// The same deployment restarted with a new COOKIE_SECRET: same store,
	// same signing keys, new Sealer.
	rotated := newFixtureWith(t, authURL, cookieSecret2)
	rotated.store, rotated.a.opts.Store = f.store, f.store
	noSession(t, rotated, s.routeCookie)
	res := rotated.get(t, authURL+"/.pomerium/sign_in?pomerium_redirect_uri="+url.QueryEscape(routeURL+"/"), req{cookies: []*http.Cookie{s.authCookie}})
	if !strings.HasPrefix(res.location, "https://idp.example/") {
		t.Errorf("sign-in with the old authenticate cookie: got %d to %q, want the provider", res.code, res.location)
	}
	// A sign-in started before the rotation cannot finish after it.
	started := f.browserSignIn(t)
	res = rotated.callback(t, started)
	if res.code != http.StatusBadRequest || res.cookie(cookieName) != nil {
		t.Errorf("callback across the rotation: got %d %v, want 400 and no cookie", res.code, res.cookies)
	}
	// The old secret still opens it (the test is not vacuous).
	signedInAs(t, f, s.routeCookie)
}

// TestSessionCookieExpires: a cookie is good until the session's end and
// no further, whatever the browser keeps.
func TestSessionCookieExpires(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	f.advance(14*time.Hour + time.Minute)
	noSession(t, f, s.routeCookie)
}

// TestCookieAttributes: every Set-Cookie of every flow is Secure, HttpOnly,
// SameSite=Lax, Path=/, on the host that set it (no Domain).
func TestCookieAttributes(t *testing.T) {
	f := newFixture(t)
	var all []*http.Cookie
	collect := func(res *response) { all = append(all, res.cookies...) }

	s := f.browserSignIn(t)
	collect(f.get(t, routeURL+"/api", req{header: []string{"Accept", "text/html"}})) // sets the sign-in cookie
	collect(f.get(t, authURL+"/.pomerium/sign_in?pomerium_redirect_uri="+url.QueryEscape(routeURL+"/"), req{}))
	res := f.callback(t, s)
	collect(res)
	collect(f.get(t, res.location, req{}))
	collect(f.callback(t, s)) // replay
	p := f.browserSignIn(t)
	p.csrf = nil
	collect(f.callback(t, p)) // no CSRF cookie
	signed := f.signIn(t)
	collect(f.get(t, authURL+"/.pomerium/sign_in?pomerium_redirect_uri="+url.QueryEscape(routeURL+"/"), req{cookies: []*http.Cookie{signed.authCookie}}))
	out := f.post(t, routeURL+"/.pomerium/sign_out", req{cookies: []*http.Cookie{signed.routeCookie}})
	collect(out)
	collect(f.get(t, out.location, req{cookies: []*http.Cookie{signed.authCookie}}))
	collect(f.post(t, authURL+"/.pomerium/sign_out", req{}))
	login := f.get(t, routeURL+"/.pomerium/api/v1/login?pomerium_redirect_uri="+url.QueryEscape("http://127.0.0.1:8000/"), req{})
	collect(f.callback(t, f.startSignIn(t, login.body)))

	names := map[string]bool{}
	for _, c := range all {
		names[c.Name] = true
		wantPath := "/"
		if c.Name == cookieName+"_signin" {
			wantPath = "/.pomerium/callback" // only the callback reads it
		}
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != wantPath || c.Domain != "" {
			t.Errorf("Set-Cookie %q, want Secure; HttpOnly; SameSite=Lax; Path=%s and no Domain", c.String(), wantPath)
		}
		if c.MaxAge >= 0 && c.Expires.IsZero() {
			t.Errorf("Set-Cookie %q sets a value with no expiry", c.String())
		}
	}
	if !names[cookieName] || !names[cookieName+"_csrf"] || !names[cookieName+"_signin"] {
		t.Errorf("the flows set cookies %v, want %s, %s_csrf and %s_signin", names, cookieName, cookieName, cookieName)
	}

	// A plain-http development setup (an http authenticate URL) is the one
	// case without Secure; the rest stays.
	dev := newFixtureWith(t, "http://"+authHost, cookieSecret)
	res = dev.get(t, "http://"+authHost+"/.pomerium/sign_in?pomerium_redirect_uri="+url.QueryEscape("http://"+routeHost+"/"), req{})
	c := res.cookie(cookieName + "_csrf")
	if c == nil || c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Errorf("plain-http setup: Set-Cookie %v, want HttpOnly; SameSite=Lax; Path=/ without Secure", c)
	}
}

func TestIdentifyToken(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	identify := func(header ...string) error {
		r := httptest.NewRequest("GET", routeURL+"/api", nil)
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Add(header[i], header[i+1])
		}
		id, err := f.identify(r, routeHost)
		if err == nil && id.Email != "someuser@example.com" {
			t.Errorf("Identify: got %+v", id)
		}
		return err
	}
	for _, h := range [][]string{
		{"Authorization", "Bearer Pomerium-" + s.token},
		{"Authorization", "Pomerium " + s.token},
		{"X-Pomerium-Authorization", s.token},
	} {
		if err := identify(h...); err != nil {
			t.Errorf("%s: %v", h[0], err)
		}
	}

	t.Run("another audience", func(t *testing.T) {
		other := mustIssue(t, f, withAudience(*s.claims, otherHost))
		if err := identify("Authorization", "Bearer Pomerium-"+other); !errors.Is(err, session.ErrWrongAudience) {
			t.Errorf("got %v, want ErrWrongAudience", err)
		}
		res := f.whoAmI(t, "application/json", req{header: []string{"Authorization", "Bearer Pomerium-" + other}})
		if res.code != http.StatusUnauthorized {
			t.Errorf("who am I: got %d %q, want 401", res.code, res.body)
		}
	})
	t.Run("two Authorization headers", func(t *testing.T) {
		err := identify("Authorization", "Bearer Pomerium-"+s.token, "Authorization", "Bearer Pomerium-"+s.token)
		if !errors.Is(err, session.ErrAmbiguousToken) {
			t.Errorf("got %v, want ErrAmbiguousToken", err)
		}
		// Nor does a session cookie rescue the request.
		r := httptest.NewRequest("GET", routeURL+"/api", nil)
		r.Header.Add("Authorization", "Bearer Pomerium-"+s.token)
		r.Header.Add("Authorization", "Bearer Pomerium-garbage")
		r.AddCookie(s.routeCookie)
		if _, err := f.identify(r, routeHost); !errors.Is(err, session.ErrAmbiguousToken) {
			t.Errorf("with a cookie: got %v, want ErrAmbiguousToken", err)
		}
	})
	t.Run("a bad token is not rescued by the cookie", func(t *testing.T) {
		r := httptest.NewRequest("GET", routeURL+"/api", nil)
		r.Header.Set("Authorization", "Bearer Pomerium-"+s.token[:len(s.token)-3]+"AAA")
		r.AddCookie(s.routeCookie)
		if _, err := f.identify(r, routeHost); err == nil {
			t.Error("a tampered token with a good cookie was accepted")
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		if err := identify(); !errors.Is(err, ErrNoCredentials) {
			t.Errorf("got %v, want ErrNoCredentials", err)
		}
		if err := identify("Authorization", "Bearer some-other-token"); !errors.Is(err, ErrNoCredentials) {
			t.Errorf("another scheme's token: got %v, want ErrNoCredentials", err)
		}
	})
	t.Run("session deleted", func(t *testing.T) {
		f.store.Delete(t.Context(), s.claims.SessionID)
		if err := identify("Authorization", "Bearer Pomerium-"+s.token); !errors.Is(err, ErrSessionEnded) {
			t.Errorf("got %v, want ErrSessionEnded", err)
		}
	})
}

func mustIssue(t testing.TB, f *fixture, c session.Claims) string {
	t.Helper()
	tok, err := f.keys.Issue(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestWhoAmI: JSON for scripts, HTML for browsers, by Accept; neither
// shows the session id, the session cookie or the provider's tokens.
func TestWhoAmI(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	secrets := []string{s.claims.SessionID, s.routeCookie.Value, s.authCookie.Value, s.token, idpIDToken, idpRefreshToken}
	noSecrets := func(t *testing.T, body string) {
		t.Helper()
		for _, secret := range secrets {
			if strings.Contains(body, secret) {
				t.Errorf("the page shows %q: %s", secret, body)
			}
		}
		if strings.Contains(body, "SECRET") || strings.Contains(strings.ToLower(body), "session_id") || strings.Contains(body, `"sid"`) {
			t.Errorf("the page shows a secret: %s", body)
		}
	}

	type info struct {
		Email     string    `json:"email"`
		Name      string    `json:"name"`
		User      string    `json:"user"`
		Groups    []string  `json:"groups"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	want := info{Email: "someuser@example.com", Name: "Some User", User: "user-1", Groups: []string{"sre", "dev"}}
	for _, tc := range []struct {
		name string
		rq   req
	}{
		{"JSON with the cookie", req{header: []string{"Accept", "application/json"}, cookies: []*http.Cookie{s.routeCookie}}},
		{"no Accept", req{cookies: []*http.Cookie{s.routeCookie}}},
		{"HTML refused", req{header: []string{"Accept", "text/html;q=0, application/json"}, cookies: []*http.Cookie{s.routeCookie}}},
		{"a browser with a token", req{header: []string{"Accept", "text/html", "Authorization", "Bearer Pomerium-" + s.token}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.get(t, routeURL+"/.pomerium/", tc.rq)
			if res.code != http.StatusOK || res.header.Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %s %q, want 200 JSON", res.code, res.header.Get("Content-Type"), res.body)
			}
			var got info
			if err := json.Unmarshal([]byte(res.body), &got); err != nil {
				t.Fatal(err)
			}
			if got.ExpiresAt.IsZero() {
				t.Error("no expires_at")
			}
			got.ExpiresAt = time.Time{}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("who am I (-want +got):\n%s", diff)
			}
			var fields map[string]any
			json.Unmarshal([]byte(res.body), &fields)
			for k := range fields {
				if !slices.Contains([]string{"email", "name", "user", "groups", "expires_at"}, k) {
					t.Errorf("unexpected field %q in %s", k, res.body)
				}
			}
			noSecrets(t, res.body)
			checkNoStore(t, res)
		})
	}

	t.Run("HTML", func(t *testing.T) {
		res := f.whoAmI(t, "text/html,application/xhtml+xml,*/*;q=0.8", req{cookies: []*http.Cookie{s.routeCookie}})
		if res.code != http.StatusOK || res.header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("got %d %s, want 200 HTML", res.code, res.header.Get("Content-Type"))
		}
		for _, w := range []string{`<dd id="email">someuser@example.com</dd>`, `<dd id="groups">sre, dev</dd>`, "Some User", `<form method="post" action="/.pomerium/sign_out">`} {
			if !strings.Contains(res.body, w) {
				t.Errorf("the page lacks %q: %s", w, res.body)
			}
		}
		noSecrets(t, res.body)
		checkNoStore(t, res)
	})
}

// TestWhoAmIEscapes: what the provider says about a person is text, not
// markup.
func TestWhoAmIEscapes(t *testing.T) {
	f := newFixture(t)
	sess := &session.Session{ID: session.NewSessionID(), Subject: "x", Email: `<script>alert(1)</script>@example.com`, Name: `"><img src=x onerror=alert(1)>`,
		Groups: []string{"<b>g</b>"}, ExpiresAt: f.clock().Add(time.Hour)}
	if err := f.store.Put(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	cookie := &http.Cookie{Name: cookieName, Value: f.sealer.Seal(f.a.sessionPurpose(routeHost), []byte(sess.ID), sess.ExpiresAt)}
	res := f.whoAmI(t, "text/html", req{cookies: []*http.Cookie{cookie}})
	if res.code != http.StatusOK {
		t.Fatalf("got %d %q", res.code, res.body)
	}
	for _, bad := range []string{"<script>", "<img", "<b>g"} {
		if strings.Contains(res.body, bad) {
			t.Errorf("the page contains %q unescaped: %s", bad, res.body)
		}
	}
}

func checkNoStore(t *testing.T, res *response) {
	t.Helper()
	if res.header.Get("Cache-Control") != "no-store" || res.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("got Cache-Control %q, X-Content-Type-Options %q, want no-store and nosniff", res.header.Get("Cache-Control"), res.header.Get("X-Content-Type-Options"))
	}
}

// TestIdentifyTokenOnly: where only tokens are accepted (the API of a
// Kubernetes route), a browser's cookie identifies nobody, and says so;
// a token beside the cookie still does.
func TestIdentifyTokenOnly(t *testing.T) {
	f := newFixture(t)
	s := f.signIn(t)
	r := httptest.NewRequest("GET", routeURL+"/api/v1/namespaces/kube-system/secrets", nil)
	r.AddCookie(s.routeCookie)
	if id, _, err := f.a.Identify(r, routeHost, Token); !errors.Is(err, ErrCookieNotAccepted) {
		t.Errorf("cookie only: got %+v, %v, want ErrCookieNotAccepted", id, err)
	}
	r.Header.Set("Authorization", "Bearer Pomerium-"+s.token)
	id, cred, err := f.a.Identify(r, routeHost, Token)
	if err != nil || cred != Token || id.Email != "someuser@example.com" {
		t.Errorf("token and cookie: got %+v, %d, %v, want someuser@example.com by Token", id, cred, err)
	}
	r = httptest.NewRequest("GET", routeURL+"/api", nil)
	if _, _, err := f.a.Identify(r, routeHost, Token); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("nothing: got %v, want ErrNoCredentials", err)
	}
}
