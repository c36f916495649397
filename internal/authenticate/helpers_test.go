package authenticate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/idp"
	"github.com/portcullis-proxy/portcullis/internal/limit"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// The hosts of the test deployment: one authenticate host and two routes.
const (
	authHost   = "auth.example.com"
	routeHost  = "k8s.example.com"
	otherHost  = "other.example.com"
	authURL    = "https://" + authHost
	routeURL   = "https://" + routeHost
	otherURL   = "https://" + otherHost
	cookieName = "_pomerium"

	// What the fake provider hands out for the one user; none of it may
	// ever reach a browser or a script.
	idpIDToken      = "idp-id-token-SECRET"
	idpRefreshToken = "idp-refresh-token-SECRET"
)

// routes is RouteAudience for the test deployment: a route without a port
// is reachable with and without its default one, as the server's router
// does it.
var routes = map[string]string{
	routeHost:          routeHost,
	routeHost + ":443": routeHost,
	otherHost:          otherHost,
	otherHost + ":443": otherHost,
}

// fakeProvider is an identity provider that signs everyone in as one
// user. Each AuthCodeURL issues a code at once (as if the person had
// already signed in at the provider) and remembers the nonce and PKCE
// verifier it was started with; Exchange refuses a code whose nonce or
// verifier differs, as the real provider's ID token and token endpoint
// checks would.
type fakeProvider struct {
	mu       sync.Mutex
	codes    map[string]fakeCode
	next     int
	exchange int   // how many times Exchange was called
	err      error // if set, Exchange fails with it
	endURL   string
	endHints []string // id_token_hint of each EndSessionURL call
	// refresh, if set, answers Refresh; without it every refresh is
	// refused.
	refresh func(ctx context.Context, refreshToken string) (*idp.Identity, *idp.Tokens, error)
}

type fakeCode struct{ nonce, verifier string }

func newFakeProvider() *fakeProvider {
	return &fakeProvider{codes: map[string]fakeCode{}, endURL: "https://idp.example/logout"}
}

func (p *fakeProvider) AuthCodeURL(_ context.Context, state, nonce, verifier string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if nonce == "" || verifier == "" {
		return "", errors.New("fake provider: sign-in without nonce or PKCE verifier")
	}
	p.next++
	code := fmt.Sprintf("code-%d", p.next)
	p.codes[code] = fakeCode{nonce, verifier}
	return "https://idp.example/authorize?" + url.Values{"state": {state}, "code": {code}}.Encode(), nil
}

func (p *fakeProvider) Exchange(_ context.Context, code, verifier, nonce string) (*idp.Identity, *idp.Tokens, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exchange++
	if p.err != nil {
		return nil, nil, p.err
	}
	want, ok := p.codes[code]
	switch {
	case !ok:
		return nil, nil, errors.New("fake provider: invalid_grant: unknown code")
	case nonce != want.nonce:
		return nil, nil, errors.New("fake provider: ID token nonce does not match this sign-in")
	case verifier != want.verifier:
		return nil, nil, errors.New("fake provider: invalid_grant: PKCE verifier does not match")
	}
	delete(p.codes, code) // single use
	return &idp.Identity{Subject: "user-1", Email: "someuser@example.com", Name: "Some User", Groups: []string{"sre", "dev"},
			Claims: map[string][]string{"department": {"eng"}}},
		&idp.Tokens{RefreshToken: idpRefreshToken, IDToken: idpIDToken, Expiry: time.Now().Add(time.Hour)}, nil
}

func (p *fakeProvider) Refresh(ctx context.Context, refreshToken string) (*idp.Identity, *idp.Tokens, error) {
	p.mu.Lock()
	refresh := p.refresh
	p.mu.Unlock()
	if refresh == nil {
		return nil, nil, errors.New("fake provider: no refresh")
	}
	return refresh(ctx, refreshToken)
}

func (p *fakeProvider) EndSessionURL(_ context.Context, hint, _ string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endHints = append(p.endHints, hint)
	return p.endURL
}

func (p *fakeProvider) exchanges() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exchange
}

// fixture is an Authenticator built from the real session pieces (keys,
// sealer, memory store) with a fake provider and a clock the test moves.
type fixture struct {
	a      *Authenticator
	keys   *session.Keys
	sealer *session.Sealer
	store  *session.MemoryStore
	idp    *fakeProvider
	auth   http.Handler

	mu      sync.Mutex
	now     time.Time
	routes  map[string]string // RouteAudience's table; starts as routes
	limited []string          // what Options.Limited was told, in order
	records []Activity        // what Options.Record was told, in order
	refresh []string          // what Options.Refreshed was told, in order
}

var (
	cookieSecret  = []byte("0123456789abcdef0123456789abcdef")
	cookieSecret2 = []byte("fedcba9876543210fedcba9876543210")
	sharedSecret  = []byte("shared secret of thirty-two bytes!!")
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, authURL, cookieSecret)
}

func newFixtureWith(t testing.TB, authenticateURL string, secret []byte) *fixture {
	t.Helper()
	keys, err := session.NewKeys(nil, sharedSecret, authenticateURL)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := session.NewSealer(secret)
	if err != nil {
		t.Fatal(err)
	}
	au, err := url.Parse(authenticateURL)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{keys: keys, sealer: sealer, store: session.NewMemoryStore(), idp: newFakeProvider(), now: time.Now(), routes: maps.Clone(routes)}
	f.a, err = New(Options{
		AuthenticateURL: au,
		CookieName:      cookieName,
		CookieExpire:    14 * time.Hour,
		Sealer:          sealer,
		Keys:            keys,
		Verify:          keys.Verify,
		Store:           f.store,
		Provider:        f.idp,
		RouteAudience: func(host string) (string, bool) {
			f.mu.Lock()
			defer f.mu.Unlock()
			aud, ok := f.routes[host]
			return aud, ok
		},
		// Far above what a test does, but for the tests of the limits.
		SignInRate:     limit.NewRate(1000, 0),
		LoginRate:      limit.NewRate(1000, 0),
		PendingSignIns: 1 << 20,
		Limited: func(name string, _ netip.Addr) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.limited = append(f.limited, name)
		},
		Record: func(_ *http.Request, a Activity) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.records = append(f.records, a)
		},
		Refreshed: func(result string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.refresh = append(f.refresh, result)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.a.now = f.clock
	f.store.Now = f.clock
	f.auth = f.a.AuthenticateHandler()
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// removeRoute takes audience's hosts out of the configuration, as a
// reload does.
func (f *fixture) removeRoute(audience string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	maps.DeleteFunc(f.routes, func(_, aud string) bool { return aud == audience })
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// route returns the handler of a route host, as the server mounts it: the
// /.pomerium/ endpoints, and for anything else what the server does with
// a browser that has no session: send it to sign in.
func (f *fixture) route(audience string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.a.RouteEndpoints(w, r, audience) {
			f.a.RedirectToSignIn(w, r)
		}
	})
}

// handler picks the handler for target's host.
func (f *fixture) handler(t testing.TB, target string) http.Handler {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host == authHost {
		return f.auth
	}
	if aud, ok := routes[u.Host]; ok {
		return f.route(aud)
	}
	t.Fatalf("no handler for %s", target)
	return nil
}

// response is what a handler answered.
type response struct {
	code     int
	header   http.Header
	body     string
	location string
	cookies  []*http.Cookie
}

// cookie returns the cookie name set by the response, or nil.
func (r *response) cookie(name string) *http.Cookie {
	for _, c := range r.cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// req is a request to a handler: headers as name/value pairs, then cookies.
type req struct {
	header  []string
	cookies []*http.Cookie
	remote  string     // the client's address, if not httptest's 192.0.2.1:1234
	form    url.Values // a form body (application/x-www-form-urlencoded)
}

// get serves GET target with the handler of its host.
func (f *fixture) get(t testing.TB, target string, rq req) *response {
	t.Helper()
	return f.do(t, "GET", target, rq)
}

// post serves POST target, as a browser sends a form from the target's
// own origin (Sec-Fetch-Site: same-origin) unless rq says otherwise.
func (f *fixture) post(t testing.TB, target string, rq req) *response {
	t.Helper()
	if !slices.Contains(rq.header, "Sec-Fetch-Site") {
		rq.header = append(rq.header, "Sec-Fetch-Site", "same-origin")
	}
	return f.do(t, "POST", target, rq)
}

// do serves a request for target with the handler of its host.
func (f *fixture) do(t testing.TB, method, target string, rq req) *response {
	t.Helper()
	var form io.Reader
	if rq.form != nil {
		form = strings.NewReader(rq.form.Encode())
	}
	r := httptest.NewRequest(method, target, form)
	if rq.form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if rq.remote != "" {
		r.RemoteAddr = rq.remote
	}
	for i := 0; i+1 < len(rq.header); i += 2 {
		r.Header.Add(rq.header[i], rq.header[i+1])
	}
	for _, c := range rq.cookies {
		if c != nil {
			r.AddCookie(c)
		}
	}
	w := httptest.NewRecorder()
	f.handler(t, target).ServeHTTP(w, r)
	res := w.Result()
	body, _ := io.ReadAll(res.Body)
	return &response{code: res.StatusCode, header: res.Header, body: string(body), location: res.Header.Get("Location"), cookies: res.Cookies()}
}

// started is a sign-in sent to the provider: what the provider got, the
// CSRF cookie the browser holds on the sign-in service, and, for a sign-in
// started at the route, the cookie that binds it to the browser there.
type started struct {
	state, code string
	csrf        *http.Cookie
	bind        *http.Cookie
}

// startSignIn opens the sign-in URL and follows it to the provider.
func (f *fixture) startSignIn(t testing.TB, signInURL string) started {
	t.Helper()
	res := f.get(t, signInURL, req{header: []string{"Accept", "text/html"}})
	if res.code != http.StatusFound || !strings.HasPrefix(res.location, "https://idp.example/authorize?") {
		t.Fatalf("sign-in %s: got %d to %q (%s), want 302 to the provider", signInURL, res.code, res.location, res.body)
	}
	u, _ := url.Parse(res.location)
	s := started{state: u.Query().Get("state"), code: u.Query().Get("code"), csrf: res.cookie(cookieName + "_csrf")}
	if s.state == "" || s.csrf == nil || s.csrf.Value == "" {
		t.Fatalf("sign-in %s: no state or no CSRF cookie: %q %v", signInURL, res.location, res.cookies)
	}
	return s
}

// browserSignIn starts a sign-in for a browser that wants to go to
// routeURL+"/api": the route sends it to the sign-in service.
func (f *fixture) browserSignIn(t testing.TB) started {
	t.Helper()
	res := f.get(t, routeURL+"/api", req{header: []string{"Accept", "text/html"}})
	bind := res.cookie(cookieName + "_signin")
	if res.code != http.StatusFound || !browserSignInLocation(res.location, routeURL+"/api") || bind == nil {
		t.Fatalf("route: got %d to %q with cookies %v, want 302 to sign in and a sign-in cookie", res.code, res.location, res.cookies)
	}
	s := f.startSignIn(t, res.location)
	s.bind = bind
	return s
}

// callbackURL is the provider's redirect back with state and code.
func callbackURL(state, code string) string {
	return authURL + "/oauth2/callback?" + url.Values{"state": {state}, "code": {code}}.Encode()
}

// callback completes s as the provider redirects back.
func (f *fixture) callback(t testing.TB, s started) *response {
	t.Helper()
	return f.get(t, callbackURL(s.state, s.code), req{header: []string{"Accept", browserAccept}, cookies: []*http.Cookie{s.csrf}})
}

// browserAccept is the Accept header of a browser's navigation: answers to
// it are pages (respond.FromBrowser).
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// signedIn is a browser signed in on the authenticate host and on the
// route, and the token the hand-off carried.
type signedIn struct {
	authCookie, routeCookie *http.Cookie
	token                   string
	claims                  *session.Claims
}

// signIn runs the whole browser sign-in to routeURL.
func (f *fixture) signIn(t testing.TB) signedIn {
	t.Helper()
	st := f.browserSignIn(t)
	res := f.callback(t, st)
	if res.code != http.StatusFound || !strings.HasPrefix(res.location, routeURL+"/.pomerium/callback/?") {
		t.Fatalf("callback: got %d to %q (%s), want 302 to the route's callback", res.code, res.location, res.body)
	}
	var s signedIn
	if s.authCookie = res.cookie(cookieName); s.authCookie == nil {
		t.Fatalf("callback set no session cookie: %v", res.cookies)
	}
	u, _ := url.Parse(res.location)
	s.token = u.Query().Get("pomerium_jwt")
	c, err := f.keys.Verify(s.token, routeHost, f.clock())
	if err != nil {
		t.Fatalf("hand-off token: %v", err)
	}
	s.claims = c
	res = f.get(t, res.location, req{cookies: []*http.Cookie{st.bind}})
	if res.code != http.StatusFound || res.location != "/api" {
		t.Fatalf("route callback: got %d to %q (%s), want 302 to /api", res.code, res.location, res.body)
	}
	if s.routeCookie = res.cookie(cookieName); s.routeCookie == nil {
		t.Fatalf("route callback set no session cookie: %v", res.cookies)
	}
	return s
}

// boundCallback returns the route callback of host (a route URL) that
// hands token off, bound the way a sign-in started at that route binds it,
// and the sign-in cookie the route gave the browser that started it.
func (f *fixture) boundCallback(t testing.TB, host, audience, token, back string) (string, *http.Cookie) {
	t.Helper()
	nonce := "nonce-" + audience
	exp := f.clock().Add(stateTTL)
	q := url.Values{
		"pomerium_jwt":          {token},
		"pomerium_redirect_uri": {back},
		"pomerium_bind":         {f.sealer.Seal(purposeHandOff+" "+audience, handOffBinding(nonce, token), exp)},
	}
	c := &http.Cookie{Name: cookieName + "_signin", Value: f.sealer.Seal(purposeBindCookie+" "+audience, []byte(nonce), exp)}
	return host + "/.pomerium/callback/?" + q.Encode(), c
}

// whoAmI asks the route who a browser (HTML) or a script (JSON) is.
func (f *fixture) whoAmI(t testing.TB, accept string, rq req) *response {
	t.Helper()
	rq.header = append([]string{"Accept", accept}, rq.header...)
	return f.get(t, routeURL+"/.pomerium/", rq)
}

// browserSignInLocation reports whether location sends a browser to sign
// in on the authenticate host, returning to back.
func browserSignInLocation(location, back string) bool {
	u, err := url.Parse(location)
	return err == nil && u.Scheme == "https" && u.Host == authHost && u.Path == "/.pomerium/sign_in" &&
		u.Query().Get("pomerium_redirect_uri") == back
}

// identify is Identify as a route that takes both tokens and cookies calls
// it (the who-am-I page, a route that is not a Kubernetes route), checking
// that the credential it names is the one the request carried.
func (f *fixture) identify(r *http.Request, audience string) (*identity.Identity, error) {
	return identifyWith(f.a, r, audience)
}

func identifyWith(a *Authenticator, r *http.Request, audience string) (*identity.Identity, error) {
	id, cred, err := a.Identify(r, audience, Token|Cookie)
	if err == nil {
		_, hasToken, _ := session.TokenFromRequest(r.Header)
		if want := map[bool]Credential{true: Token, false: Cookie}[hasToken]; cred != want {
			return nil, fmt.Errorf("identified by credential %d, want %d", cred, want)
		}
	}
	return id, err
}
