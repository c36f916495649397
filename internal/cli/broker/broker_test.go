package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/cli/cache"
	"github.com/portcullis-proxy/portcullis/internal/cli/route"
)

const testURL = "https://k8s.example.com"

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func jwt(exp time.Time, n int) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"ES256"}`)) + "." +
		enc(fmt.Appendf(nil, `{"iss":"https://auth.example.com","exp":%d,"email":"someuser@example.com","n":%d}`, exp.Unix(), n)) + "." + enc([]byte("sig"))
}

// fakeServer stands in for the route: it issues tokens on sign-in and
// accepts those it has issued and not revoked.
type fakeServer struct {
	mu       sync.Mutex
	accepted map[string]bool
	logins   atomic.Int32
	checks   atomic.Int32
	expiry   time.Duration
	down     error

	renewable bool            // sign-ins give renewal credentials
	renewals  map[string]bool // the credentials not yet spent
	renews    atomic.Int32
	now       func() time.Time
}

func newFakeServer() *fakeServer {
	return &fakeServer{accepted: map[string]bool{}, renewals: map[string]bool{}, expiry: time.Hour, now: func() time.Time { return testNow }}
}

func (s *fakeServer) login(ctx context.Context) (route.Grant, error) {
	n := s.logins.Add(1)
	time.Sleep(50 * time.Millisecond) // a person takes a moment
	tok := jwt(s.now().Add(s.expiry), int(n))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted[tok] = true
	g := route.Grant{Token: tok}
	if s.renewable {
		g.Renewal = fmt.Sprintf("renewal-%d", n)
		s.renewals[g.Renewal] = true
	}
	return g, nil
}

// renew spends a renewal credential for the next grant, as the server's
// token endpoint does: each once; one spent twice ends everything.
func (s *fakeServer) renew(ctx context.Context, renewal string) (route.Grant, error) {
	n := s.renews.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != nil {
		return route.Grant{}, s.down
	}
	if !s.renewals[renewal] {
		clear(s.accepted)
		clear(s.renewals)
		return route.Grant{}, fmt.Errorf("%w: used already", route.ErrRejected)
	}
	delete(s.renewals, renewal)
	g := route.Grant{Token: jwt(s.now().Add(s.expiry), 1000+int(n)), Renewal: fmt.Sprintf("renewal-r%d", n)}
	s.accepted[g.Token] = true
	s.renewals[g.Renewal] = true
	return g, nil
}

func (s *fakeServer) check(ctx context.Context, tok string) error {
	s.checks.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down != nil {
		return s.down
	}
	if !s.accepted[tok] {
		return fmt.Errorf("%w: session ended", route.ErrRejected)
	}
	return nil
}

func (s *fakeServer) revokeAll() {
	s.mu.Lock()
	clear(s.accepted)
	clear(s.renewals)
	s.mu.Unlock()
}

func newBroker(t *testing.T, s *fakeServer, dir string, stderr *bytes.Buffer) *Broker {
	t.Helper()
	b := &Broker{
		URL:    testURL,
		Cache:  cache.New(dir),
		Check:  s.check,
		Login:  s.login,
		Renew:  s.renew,
		Now:    func() time.Time { return testNow },
		Stderr: nil,
	}
	if stderr != nil {
		b.Stderr = stderr
	}
	return b
}

func TestTokenUsesCacheWhileGood(t *testing.T) {
	s := newFakeServer()
	dir := t.TempDir()
	var stderr bytes.Buffer
	b := newBroker(t, s, dir, &stderr)
	first, err := b.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.logins.Load() != 1 {
		t.Fatalf("empty cache: got %d sign-ins, want 1", s.logins.Load())
	}
	if !strings.Contains(stderr.String(), "Signed in to https://k8s.example.com as someuser@example.com.") {
		t.Errorf("stderr: got %q, want who is signed in", stderr.String())
	}
	for range 3 {
		got, err := newBroker(t, s, dir, nil).Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got.Raw != first.Raw {
			t.Errorf("got another token, want the cached one")
		}
	}
	if got := s.logins.Load(); got != 1 {
		t.Errorf("got %d sign-ins, want 1: the cached token is good", got)
	}
	if got := s.checks.Load(); got != 3 {
		t.Errorf("got %d server checks, want one per use of the cache (3)", got)
	}
}

func TestTokenRenewsBeforeExpiry(t *testing.T) {
	for _, tt := range []struct {
		name       string
		expiry     time.Duration
		wantLogins int32
		wantSaid   string
	}{
		{"an hour left", time.Hour, 1, ""},
		{"61 seconds left", 61 * time.Second, 1, ""},
		{"a minute left", time.Minute, 2, "expires in less than 1m0s; signing in again"},
		{"expired", -time.Second, 2, "has expired; signing in again"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer()
			dir := t.TempDir()
			c := cache.New(dir)
			old := jwt(testNow.Add(tt.expiry), 0)
			s.accepted[old] = true
			if err := c.Store(cache.Entry{URL: testURL, Token: old, Expiry: testNow.Add(tt.expiry)}); err != nil {
				t.Fatal(err)
			}
			s.logins.Store(1)
			var stderr bytes.Buffer
			tok, err := newBroker(t, s, dir, &stderr).Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := s.logins.Load(); got != tt.wantLogins {
				t.Errorf("got %d sign-ins, want %d", got-1, tt.wantLogins-1)
			}
			if !tok.ValidFor(testNow, RenewBefore) {
				t.Errorf("got a token valid until %v, want one good for more than a minute", tok.Expiry)
			}
			if tt.wantSaid != "" && !strings.Contains(stderr.String(), tt.wantSaid) {
				t.Errorf("stderr: got %q, want %q", stderr.String(), tt.wantSaid)
			}
		})
	}
}

// A token the server refuses (signed out) is replaced by one sign-in.
func TestTokenRejectedByServer(t *testing.T) {
	s := newFakeServer()
	dir := t.TempDir()
	if _, err := newBroker(t, s, dir, nil).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.revokeAll()
	var stderr bytes.Buffer
	tok, err := newBroker(t, s, dir, &stderr).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := s.logins.Load(); got != 2 {
		t.Errorf("got %d sign-ins, want 2", got)
	}
	if !s.accepted[tok.Raw] {
		t.Errorf("got a token the server does not accept")
	}
	if !strings.Contains(stderr.String(), "is no longer accepted by the server") {
		t.Errorf("stderr: got %q, want the reason for the new sign-in", stderr.String())
	}
	// The refused token was sent once, not again after taking the lock.
	if got := s.checks.Load(); got != 1 {
		t.Errorf("got %d checks, want 1", got)
	}
}

// A server that cannot say fails the command, with its reason, and no
// browser opens.
func TestTokenServerUnreachable(t *testing.T) {
	s := newFakeServer()
	dir := t.TempDir()
	if _, err := newBroker(t, s, dir, nil).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.down = errors.New("checking the cached credential with https://k8s.example.com: cannot reach the server (connection refused)")
	_, err := newBroker(t, s, dir, nil).Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("got %v, want the server's error", err)
	}
	if got := s.logins.Load(); got != 1 {
		t.Errorf("got %d sign-ins, want 1 (no new sign-in when the server cannot be asked)", got)
	}
}

// A corrupt cache file is replaced, not fatal.
func TestTokenCorruptCache(t *testing.T) {
	s := newFakeServer()
	dir := t.TempDir()
	c := cache.New(dir)
	if err := c.Store(cache.Entry{URL: testURL, Token: "not-a-jwt"}); err != nil {
		t.Fatal(err)
	}
	if _, err := newBroker(t, s, dir, nil).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Path(testURL), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newBroker(t, s, dir, nil).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.logins.Load(); got != 2 {
		t.Errorf("got %d sign-ins, want 2", got)
	}
}

// Many processes at once on an empty cache: one sign-in, one token.
func TestTokenConcurrentSignInOnce(t *testing.T) {
	s := newFakeServer()
	dir := t.TempDir()
	var wg sync.WaitGroup
	tokens := make([]string, 10)
	var waitMsgs atomic.Int32
	for i := range tokens {
		wg.Go(func() {
			var stderr bytes.Buffer
			tok, err := newBroker(t, s, dir, &stderr).Token(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			tokens[i] = tok.Raw
			if strings.Contains(stderr.String(), "Another portcullis-cli is signing in") {
				waitMsgs.Add(1)
			}
		})
	}
	wg.Wait()
	if got := s.logins.Load(); got != 1 {
		t.Errorf("got %d sign-ins, want 1", got)
	}
	for _, tok := range tokens {
		if tok != tokens[0] {
			t.Errorf("got different tokens, want the one sign-in's token for all")
			break
		}
	}
	if waitMsgs.Load() == 0 {
		t.Errorf("no waiting process said why it waited")
	}
}

func TestSignInAlwaysSignsIn(t *testing.T) {
	s := newFakeServer()
	dir := t.TempDir()
	b := newBroker(t, s, dir, nil)
	first, err := b.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.SignIn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if first.Raw == second.Raw || s.logins.Load() != 2 {
		t.Errorf("SignIn reused the cached token, want a new sign-in")
	}
	if got, _ := b.Token(context.Background()); got.Raw != second.Raw {
		t.Errorf("the new token was not cached")
	}
}

func TestSignInRefusesBadTokens(t *testing.T) {
	for _, tt := range []struct{ name, token, want string }{
		{"not a JWT", "garbage", "cannot read"},
		{"already expired", jwt(testNow.Add(-time.Hour), 1), "is this computer's clock right?"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t, newFakeServer(), t.TempDir(), nil)
			b.Login = func(context.Context) (route.Grant, error) { return route.Grant{Token: tt.token}, nil }
			if _, err := b.Token(context.Background()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
			if e, _ := b.Cache.Load(testURL); e != nil {
				t.Errorf("a bad token was cached")
			}
		})
	}
}

// TestRenewableTokens: a token that comes with a renewal credential is
// handed out without asking the server, renewed without a browser before
// it expires, for as long as the server renews it; a caller that asks
// again for the token it got (kubectl after a 401) makes the broker ask
// the server, and a session that ended means a sign-in.
func TestRenewableTokens(t *testing.T) {
	s := newFakeServer()
	s.renewable, s.expiry = true, time.Minute
	now := testNow
	s.now = func() time.Time { return now }
	dir := t.TempDir()
	var stderr bytes.Buffer
	broker := func(caller int) *Broker {
		b := newBroker(t, s, dir, &stderr)
		b.Now, b.Caller = func() time.Time { return now }, caller
		return b
	}
	first, err := broker(100).Token(context.Background())
	if err != nil || s.logins.Load() != 1 {
		t.Fatalf("first: %v, %d sign-ins", err, s.logins.Load())
	}
	// Five minutes of kubectl commands, one every 10 seconds, each its
	// own process: no browser, no check, a renewal at each half-life.
	tok := first
	for i := range 30 {
		now = now.Add(10 * time.Second)
		got, err := broker(101 + i).Token(context.Background())
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		if !got.ValidFor(now, 29*time.Second) {
			t.Fatalf("command %d: got a token that expires at %s, at %s", i, got.Expiry, now)
		}
		tok = got
	}
	if s.logins.Load() != 1 || s.checks.Load() != 0 {
		t.Errorf("five minutes of commands: %d sign-ins and %d checks, want 1 and 0", s.logins.Load(), s.checks.Load())
	}
	if r := s.renews.Load(); r < 9 || r > 11 {
		t.Errorf("five minutes of one-minute tokens renewed %d times, want about 10 (at each half-life)", r)
	}
	// The server ends the session. A new command is handed the cached
	// token (it cannot know); kubectl gets 401 and runs the plugin again:
	// now the broker asks, and the session being over, signs in.
	s.revokeAll()
	if got, err := broker(500).Token(context.Background()); err != nil || got.Raw != tok.Raw {
		t.Fatalf("after revocation, a new caller: got %v, %v; want the cached token", got.Raw == tok.Raw, err)
	}
	got, err := broker(500).Token(context.Background())
	if err != nil || got.Raw == tok.Raw || s.logins.Load() != 2 {
		t.Errorf("the same caller again: got the same token %v, %v, %d sign-ins; want a new sign-in", got.Raw == tok.Raw, err, s.logins.Load())
	}
	if !strings.Contains(stderr.String(), "signing in again") {
		t.Errorf("stderr: %q, want it to say why it signs in again", stderr.String())
	}
	// A renewal refused because the credential was spent elsewhere (a
	// copy used first) also ends in a sign-in, never a loop.
	e, _ := cache.New(dir).Load(testURL)
	delete(s.renewals, e.Renewal)
	now = now.Add(45 * time.Second)
	if _, err := broker(600).Token(context.Background()); err != nil || s.logins.Load() != 3 {
		t.Errorf("renewal refused: %v, %d sign-ins; want a third sign-in", err, s.logins.Load())
	}
	// A server that cannot be reached fails the command; it is not a
	// reason to sign in.
	now = now.Add(45 * time.Second)
	s.down = errors.New("connection refused")
	if _, err := broker(700).Token(context.Background()); err == nil || s.logins.Load() != 3 {
		t.Errorf("server down at renewal: %v, %d sign-ins; want the error and no sign-in", err, s.logins.Load())
	}
}

// exchange is the sign-in service's exchange: the credential of one
// route's chain, spent, for another route's grant and the chain's next.
func (s *fakeServer) exchange(ctx context.Context, issuer, renewal string) (route.Grant, string, error) {
	if issuer != "https://auth.example.com" {
		return route.Grant{}, "", fmt.Errorf("exchange sent to %q, want the sign-in service", issuer)
	}
	g, err := s.renew(ctx, renewal)
	if err != nil {
		return route.Grant{}, "", err
	}
	other, err := s.renew(ctx, g.Renewal)
	return other, g.Renewal + "-next", err
}

// TestSecondRouteWithoutBrowser: a route with nothing cached whose sign-in
// service is that of a cached route gets its first token from that
// session, and both routes renew on from there; a route of another
// service signs in on its own.
func TestSecondRouteWithoutBrowser(t *testing.T) {
	s := newFakeServer()
	s.renewable = true
	dir := t.TempDir()
	var stderr bytes.Buffer
	first := newBroker(t, s, dir, &stderr)
	if _, err := first.Token(context.Background()); err != nil || s.logins.Load() != 1 {
		t.Fatalf("first route: %v, %d sign-ins", err, s.logins.Load())
	}
	second := newBroker(t, s, dir, &stderr)
	second.URL = "https://k8s-2.example.com"
	second.Issuer = func(context.Context) (string, error) { return "https://auth.example.com", nil }
	second.Exchange = func(ctx context.Context, issuer, renewal string) (route.Grant, string, error) {
		g, next, err := s.exchange(ctx, issuer, renewal)
		if err == nil {
			// The fake's chains are its credentials: the next one is what
			// renew handed out, under another name here.
			s.mu.Lock()
			s.renewals[next] = true
			s.mu.Unlock()
		}
		return g, next, err
	}
	tok, err := second.Token(context.Background())
	if err != nil || s.logins.Load() != 1 {
		t.Fatalf("second route: %v, %d sign-ins; want its token from the first route's session", err, s.logins.Load())
	}
	if !strings.Contains(stderr.String(), "with your session at "+testURL) {
		t.Errorf("stderr: %q, want it to say which session signed it in", stderr.String())
	}
	e1, _ := cache.New(dir).Load(testURL)
	e2, _ := cache.New(dir).Load(second.URL)
	if e1 == nil || e2 == nil || e2.Token != tok.Raw || e1.Renewal == e2.Renewal || !s.renewals[e1.Renewal] || !s.renewals[e2.Renewal] {
		t.Fatalf("cache after the exchange: %+v %+v, want each route its own live credential", e1, e2)
	}
	// A third route of another sign-in service signs in on its own.
	third := newBroker(t, s, dir, &stderr)
	third.URL = "https://elsewhere.example.com"
	third.Issuer = func(context.Context) (string, error) { return "https://auth.elsewhere.example", nil }
	third.Exchange = func(context.Context, string, string) (route.Grant, string, error) {
		t.Error("exchanged with a session of another sign-in service")
		return route.Grant{}, "", errors.New("no")
	}
	if _, err := third.Token(context.Background()); err != nil || s.logins.Load() != 2 {
		t.Errorf("route of another service: %v, %d sign-ins; want its own sign-in", err, s.logins.Load())
	}
}
