package builtin_test

import (
	"context"
	"crypto"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

const (
	clientID     = "portcullis"
	clientSecret = "test-client-secret"
	// publicClientID has no secret and a loopback redirect URI.
	publicClientID = "portcullis-cli"
	// redirectURI is never requested: the browser stops when it is sent
	// there, and the test reads the code from the URL.
	redirectURI       = "http://127.0.0.1:9/oauth2/callback"
	postLogoutURI     = "http://127.0.0.1:9/signed-out"
	alicePassword     = "correct horse battery staple"
	bobPassword       = "hunter2-but-longer"
	aliceEmail        = "alice@example.com"
	bobEmail          = "Bob@Example.com"
	wrongCredentials  = "Wrong email or password."
	defaultTestScopes = "openid email profile offline_access"
)

var (
	hashOnce   sync.Once
	aliceHash  string
	bobHash    string
	testScopes = strings.Fields(defaultTestScopes)
)

// hashes makes the test users' hashes once, at the lowest cost: the
// provider's behaviour does not depend on the cost, the test's time does.
func hashes(t *testing.T) (alice, bob string) {
	t.Helper()
	hashOnce.Do(func() {
		a, err1 := bcrypt.GenerateFromPassword([]byte(alicePassword), bcrypt.MinCost)
		b, err2 := bcrypt.GenerateFromPassword([]byte(bobPassword), bcrypt.MinCost)
		if err := errors.Join(err1, err2); err != nil {
			panic(err)
		}
		aliceHash, bobHash = string(a), string(b)
	})
	return aliceHash, bobHash
}

// idp is a running provider and a client set up against it the way
// Portcullis's authenticate package is: x/oauth2 plus go-oidc.
type idp struct {
	*builtin.Provider
	issuer   string
	srv      *httptest.Server
	oauth    *oauth2.Config
	oidc     *oidc.Provider
	verifier *oidc.IDTokenVerifier
	logs     *logbuf.Buffer
}

type options struct {
	path       string // issuer path, "" or "/x/y"
	signingKey crypto.Signer
	accessTTL  time.Duration
	idTTL      time.Duration
	// usersFile, if set, is a users file to read the users from and
	// follow, instead of alice and Bob in code.
	usersFile string
	// clock, if set, is the provider's clock (builtin.SetClock).
	clock *testClock
}

// testClock is a clock the test moves on. The provider reads it from its
// handlers' goroutines.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startIdP serves a provider on 127.0.0.1 with users alice (groups dev and
// ops) and Bob (no groups, mixed-case email), and one confidential client.
func startIdP(t *testing.T, o options) *idp {
	t.Helper()
	aHash, bHash := hashes(t)
	srv := httptest.NewUnstartedServer(nil) // listens on 127.0.0.1:0
	issuer := "http://" + srv.Listener.Addr().String() + o.path
	logs := &logbuf.Buffer{}
	users := []builtin.User{
		{Email: aliceEmail, Name: "Alice Liddell", Groups: []string{"dev", "ops"}, PasswordHash: aHash},
		{Email: bobEmail, PasswordHash: bHash},
	}
	if o.usersFile != "" {
		var err error
		if users, err = builtin.LoadUsers(o.usersFile); err != nil {
			srv.Close()
			t.Fatal(err)
		}
	}
	p, err := builtin.New(builtin.Config{
		Issuer:    issuer,
		Users:     users,
		UsersFile: o.usersFile,
		Clients: []builtin.Client{{
			ID:                     clientID,
			Secret:                 clientSecret,
			RedirectURIs:           []string{redirectURI},
			PostLogoutRedirectURIs: []string{postLogoutURI},
		}, {
			// A public client, as a CLI is: no secret, any loopback port.
			ID:           publicClientID,
			RedirectURIs: []string{"http://127.0.0.1/callback"},
		}},
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		SigningKey:     o.signingKey,
		AccessTokenTTL: o.accessTTL,
		IDTokenTTL:     o.idTTL,
		CryptoKey:      [32]byte{1, 2, 3},
	})
	if err != nil {
		srv.Close()
		t.Fatalf("builtin.New: %v", err)
	}
	if o.clock != nil {
		builtin.SetClock(p, o.clock.Now)
	}
	srv.Config.Handler = p.Handler()
	srv.Start()
	t.Cleanup(srv.Close)

	ctx := t.Context()
	prov, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("go-oidc discovery of %s: %v", issuer, err)
	}
	return &idp{
		Provider: p,
		issuer:   issuer,
		srv:      srv,
		oauth: &oauth2.Config{
			ClientID:     clientID,
			ClientSecret: clientSecret,
			Endpoint:     prov.Endpoint(),
			RedirectURL:  redirectURI,
			Scopes:       testScopes,
		},
		oidc:     prov,
		verifier: prov.Verifier(&oidc.Config{ClientID: clientID}),
		logs:     logs,
	}
}

// flow is one sign-in's client-side secrets.
type flow struct {
	state, nonce, verifier string
	authURL                string
}

func (d *idp) newFlow(extra ...oauth2.AuthCodeOption) flow {
	f := flow{state: "state-" + oauth2.GenerateVerifier()[:12], nonce: "nonce-" + oauth2.GenerateVerifier()[:12], verifier: oauth2.GenerateVerifier()}
	opts := append([]oauth2.AuthCodeOption{oidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier)}, extra...)
	f.authURL = d.oauth.AuthCodeURL(f.state, opts...)
	return f
}

// signIn runs the browser part of a sign-in with testenv's browser and
// returns the code the provider sent to the redirect URI.
func (d *idp) signIn(t *testing.T, email, password string) (flow, string) {
	t.Helper()
	return d.signInFrom(t, "", email, password)
}

// signInFrom is signIn from the client address addr (see clientFrom).
func (d *idp) signInFrom(t *testing.T, addr, email, password string) (flow, string) {
	t.Helper()
	f := d.newFlow()
	b := testenv.NewBrowser(nil)
	if tr := transportFrom(t, addr); tr != nil {
		b.Client.Transport = tr
	}
	final, page, err := b.SignIn(t.Context(), f.authURL, email, password, redirectURI)
	if err != nil {
		t.Fatalf("signing in as %s: %v\npage: %s", email, err, page)
	}
	q := final.Query()
	if got := q.Get("state"); got != f.state {
		t.Fatalf("state at the redirect URI: got %q, want %q (URL %s)", got, f.state, final.Redacted())
	}
	code := q.Get("code")
	if code == "" {
		t.Fatalf("no code at the redirect URI: %s", final.Redacted())
	}
	return f, code
}

// exchange swaps a code for tokens as the client.
func (d *idp) exchange(t *testing.T, code, verifier string) (*oauth2.Token, error) {
	t.Helper()
	var opts []oauth2.AuthCodeOption
	if verifier != "" {
		opts = append(opts, oauth2.VerifierOption(verifier))
	}
	return d.oauth.Exchange(t.Context(), code, opts...)
}

// refresh uses a refresh token once.
func (d *idp) refresh(t *testing.T, refreshToken string) (*oauth2.Token, error) {
	t.Helper()
	return d.oauth.TokenSource(t.Context(), &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)}).Token()
}

// claims are what the tests read from an ID token or userinfo.
type claims struct {
	Issuer        string   `json:"iss"`
	Subject       string   `json:"sub"`
	Email         string   `json:"email"`
	EmailVerified *bool    `json:"email_verified"`
	Name          string   `json:"name"`
	Groups        []string `json:"groups"`
	Nonce         string   `json:"nonce"`
	AMR           []string `json:"amr"`
}

// verify checks the token response's ID token with go-oidc and returns its
// claims.
func (d *idp) verify(t *testing.T, tok *oauth2.Token) claims {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("the token response has no id_token")
	}
	idt, err := d.verifier.Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("verifying the ID token: %v", err)
	}
	var c claims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// oauthErrorCode returns the OAuth error code of a token endpoint refusal,
// or fails the test if err is not one.
func oauthErrorCode(t *testing.T, err error) string {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("got error %v, want a refusal from the token endpoint", err)
	}
	return re.ErrorCode
}

// loginPage opens authURL in a fresh cookie jar and follows the redirects
// to the login page; it returns the client (with its jar), the page URL and
// the sign-in request id.
func loginPage(t *testing.T, authURL string) (*http.Client, *url.URL, string) {
	t.Helper()
	return loginPageFrom(t, "", authURL)
}

// loginPageFrom is loginPage from the client address addr (see
// clientFrom).
func loginPageFrom(t *testing.T, addr, authURL string) (*http.Client, *url.URL, string) {
	t.Helper()
	c := clientFrom(t, addr)
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET login page: %s: %s", resp.Status, body)
	}
	id := resp.Request.URL.Query().Get("authRequestID")
	if id == "" || !strings.Contains(string(body), `type="password"`) {
		t.Fatalf("not at the login page: %s\n%s", resp.Request.URL, body)
	}
	return c, resp.Request.URL, id
}

// postLogin submits the login form without following the answer's redirect.
func postLogin(t *testing.T, c *http.Client, loginURL *url.URL, form url.Values, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, loginURL.Scheme+"://"+loginURL.Host+loginURL.Path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := noRedirects(c).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// clientFrom returns a client with a cookie jar, as a browser has, whose
// connections come from the loopback address addr, such as 127.0.0.2, so
// that the provider sees another client address: a test's stand-in for
// many people, or for an attacker and a victim. "" is the usual
// 127.0.0.1. Tests that use it call needLoopback first.
func clientFrom(t *testing.T, addr string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	if tr := transportFrom(t, addr); tr != nil {
		c.Transport = tr
	}
	return c
}

// transportFrom returns a transport that connects from the loopback
// address addr, or nil for "".
func transportFrom(t *testing.T, addr string) *http.Transport {
	t.Helper()
	if addr == "" {
		return nil
	}
	ip := net.ParseIP(addr)
	if ip == nil || !ip.IsLoopback() {
		t.Fatalf("client address %q: want a loopback address such as 127.0.0.2", addr)
	}
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// needLoopback skips the test unless every address in addrs can be a
// connection's source. All of 127.0.0.0/8 can on Linux; macOS has only
// 127.0.0.1 until others are added.
func needLoopback(t *testing.T, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		l, err := net.Listen("tcp", net.JoinHostPort(a, "0"))
		if err != nil {
			t.Skipf("skipped: this test connects from several client addresses, and %s is not a local address here (%v); on macOS add it with: sudo ifconfig lo0 alias %s up", a, err, a)
		}
		l.Close()
	}
}

// noRedirects returns c that does not follow redirects, so that a test
// sees where the provider sends the browser.
func noRedirects(c *http.Client) *http.Client {
	nc := *c
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &nc
}

func loginForm(id, email, password string) url.Values {
	return url.Values{"authRequestID": {id}, "email": {email}, "password": {password}}
}

// get fetches u without following redirects.
func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// userinfo asks the provider's userinfo endpoint about an access token.
func (d *idp) userinfo(ctx context.Context, tok *oauth2.Token) (claims, error) {
	var c claims
	ui, err := d.oidc.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return c, err
	}
	return c, ui.Claims(&c)
}
