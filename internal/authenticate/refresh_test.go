package authenticate

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/idp"
	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// refreshFixture is a signed-in fixture whose log the test reads.
func refreshFixture(t *testing.T) (*fixture, signedIn, *logbuf.Buffer) {
	t.Helper()
	f := newFixture(t)
	logs := &logbuf.Buffer{}
	f.a.log = slog.New(slog.NewTextHandler(logs, nil))
	return f, f.signIn(t), logs
}

// setRefresh makes the fake provider answer refreshes with fn.
func (f *fixture) setRefresh(fn func(ctx context.Context, refreshToken string) (*idp.Identity, *idp.Tokens, error)) {
	f.idp.mu.Lock()
	defer f.idp.mu.Unlock()
	f.idp.refresh = fn
}

// identifyBy asks who a route request with the cookie (token == "") or
// the token is from.
func (f *fixture) identifyBy(s signedIn, token bool) (*identity.Identity, error) {
	return f.identifyAt(f.a, s, token)
}

// identifyAt is identifyBy on another replica's Authenticator.
func (f *fixture) identifyAt(a *Authenticator, s signedIn, token bool) (*identity.Identity, error) {
	r := httptest.NewRequest("GET", routeURL+"/api", nil)
	if token {
		r.Header.Set("Authorization", "Bearer Pomerium-"+s.token)
	} else {
		r.AddCookie(s.routeCookie)
	}
	return identifyWith(a, r, routeHost)
}

// wantGroups checks that the cookie and the token of s both identify the
// test user with groups.
func wantGroups(t *testing.T, f *fixture, s signedIn, groups ...string) {
	t.Helper()
	for _, token := range []bool{false, true} {
		id, err := f.identifyBy(s, token)
		if err != nil || id.Email != "someuser@example.com" || !slices.Equal(id.Groups, groups) {
			t.Errorf("Identify (token %v): got %+v, %v, want someuser@example.com in %v", token, id, err, groups)
		}
	}
}

// wantEnded checks that the session of s is gone and that neither its
// cookie nor its token opens the route any more.
func wantEnded(t *testing.T, f *fixture, s signedIn) {
	t.Helper()
	if _, err := f.store.Get(t.Context(), s.claims.SessionID); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("the session is still stored (%v)", err)
	}
	for _, token := range []bool{false, true} {
		if id, err := f.identifyBy(s, token); !errors.Is(err, ErrSessionEnded) {
			t.Errorf("Identify (token %v): got %+v, %v, want ErrSessionEnded", token, id, err)
		}
	}
	res := f.whoAmI(t, "application/json", req{header: []string{"Authorization", "Bearer Pomerium-" + s.token}})
	if res.code != http.StatusUnauthorized {
		t.Errorf("who am I with the token: got %d %q, want 401", res.code, res.body)
	}
}

// storedSession returns the session of s as stored.
func (f *fixture) storedSession(t *testing.T, s signedIn) *session.Session {
	t.Helper()
	sess, err := f.store.Get(t.Context(), s.claims.SessionID)
	if err != nil {
		t.Fatalf("the session is gone: %v", err)
	}
	return sess
}

// provider answers are about the test user (subject user-1).
func newIdentity(groups ...string) *idp.Identity {
	return &idp.Identity{Subject: "user-1", Email: "someuser@example.com", Name: "Some User", Groups: groups,
		Claims: map[string][]string{"department": {"refreshed"}}}
}

func TestRefreshUpdatesIdentity(t *testing.T) {
	f, s, logs := refreshFixture(t)
	var mu sync.Mutex
	var used []string // the refresh tokens presented, in order
	f.setRefresh(func(_ context.Context, rt string) (*idp.Identity, *idp.Tokens, error) {
		mu.Lock()
		defer mu.Unlock()
		used = append(used, rt)
		return newIdentity("dev", "oncall"), &idp.Tokens{
			RefreshToken: fmt.Sprintf("rotated-refresh-SECRET-%d", len(used)),
			IDToken:      "new-id-token-SECRET",
			Expiry:       f.clock().Add(time.Hour),
		}, nil
	})
	presented := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(used)
	}

	// Not due: the identity of the sign-in, and no call.
	wantGroups(t, f, s, "sre", "dev")
	if got := presented(); len(got) != 0 {
		t.Fatalf("refreshed before the provider's expiry: %v", got)
	}

	if id, err := f.identifyBy(s, true); err != nil || !slices.Equal(id.Claims["department"], []string{"eng"}) {
		t.Errorf("claims after sign-in: got %v, %v, want department eng", id, err)
	}
	f.advance(time.Hour + time.Second)
	wantGroups(t, f, s, "dev", "oncall")
	// The provider's claims of the refresh replace those of sign-in, for
	// the cookie and the token alike.
	for _, token := range []bool{false, true} {
		if id, err := f.identifyBy(s, token); err != nil || !slices.Equal(id.Claims["department"], []string{"refreshed"}) {
			t.Errorf("claims after the refresh (token %v): got %v, %v, want department refreshed", token, id, err)
		}
	}
	if got, want := presented(), []string{idpRefreshToken}; !slices.Equal(got, want) {
		t.Errorf("refresh tokens presented: got %v, want %v", got, want)
	}
	sess := f.storedSession(t, s)
	if sess.IDPRefreshToken != "rotated-refresh-SECRET-1" || sess.IDPIDToken != "new-id-token-SECRET" || !sess.IDPExpiry.Equal(f.clock().Add(time.Hour)) {
		t.Errorf("stored session: refresh token %q, ID token %q, expiry %v; want the provider's new ones", sess.IDPRefreshToken, sess.IDPIDToken, sess.IDPExpiry)
	}
	if !slices.Equal(sess.Groups, []string{"dev", "oncall"}) {
		t.Errorf("stored groups: got %v, want [dev oncall]", sess.Groups)
	}

	// The next refresh presents the rotated token.
	f.advance(time.Hour + time.Second)
	wantGroups(t, f, s, "dev", "oncall")
	if got, want := presented(), []string{idpRefreshToken, "rotated-refresh-SECRET-1"}; !slices.Equal(got, want) {
		t.Errorf("refresh tokens presented: got %v, want %v", got, want)
	}

	if !strings.Contains(logs.String(), "refreshed the session with the identity provider") || !strings.Contains(logs.String(), "groups_changed=true") {
		t.Errorf("the log does not say the session was refreshed:\n%s", logs)
	}
	for _, secret := range []string{idpRefreshToken, "rotated-refresh-SECRET", "new-id-token-SECRET", idpIDToken, s.token} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows a secret %q:\n%s", secret, logs)
		}
	}
}

// TestRefreshWithinMargin: a session close to the provider's expiry is
// refreshed without making the request wait.
func TestRefreshWithinMargin(t *testing.T) {
	f, s, _ := refreshFixture(t)
	release := make(chan struct{})
	var calls atomic.Int32
	f.setRefresh(func(context.Context, string) (*idp.Identity, *idp.Tokens, error) {
		calls.Add(1)
		<-release
		return newIdentity("dev", "oncall"), &idp.Tokens{RefreshToken: "rotated-refresh-SECRET", Expiry: f.clock().Add(time.Hour)}, nil
	})
	f.advance(time.Hour - refreshMargin/2)
	for range 10 {
		// The provider has not answered: still the identity of before,
		// which is valid for another half minute.
		wantGroups(t, f, s, "sre", "dev")
	}
	close(release)
	waitFor(t, "the refreshed session to be stored", func() bool {
		return f.storedSession(t, s).IDPRefreshToken == "rotated-refresh-SECRET"
	})
	wantGroups(t, f, s, "dev", "oncall")
	if n := calls.Load(); n != 1 {
		t.Errorf("refreshes: got %d, want 1", n)
	}
}

func TestRefreshRefusedEndsSession(t *testing.T) {
	for _, tc := range []struct {
		name    string
		token   bool // the first request after the expiry carries the token, not the cookie
		refresh func(context.Context, string) (*idp.Identity, *idp.Tokens, error)
		wantLog string
		// wantResult is what Options.Refreshed is told.
		wantResult string
	}{
		{
			name: "invalid_grant, by cookie",
			refresh: func(context.Context, string) (*idp.Identity, *idp.Tokens, error) {
				return nil, nil, errors.New("refreshing the session: the identity provider refused: invalid_grant")
			},
			wantLog:    "the identity provider refused to refresh the session; ending it",
			wantResult: RefreshRefused,
		},
		{
			name:  "invalid_grant, by token",
			token: true,
			refresh: func(context.Context, string) (*idp.Identity, *idp.Tokens, error) {
				return nil, nil, errors.New("refreshing the session: the identity provider refused: invalid_grant")
			},
			wantLog:    "the identity provider refused to refresh the session; ending it",
			wantResult: RefreshRefused,
		},
		{
			name: "an answer about another user",
			refresh: func(context.Context, string) (*idp.Identity, *idp.Tokens, error) {
				return &idp.Identity{Subject: "user-2", Email: "other@example.com"}, &idp.Tokens{Expiry: time.Now().Add(time.Hour)}, nil
			},
			wantLog:    "answered for another user",
			wantResult: RefreshOtherUser,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, s, logs := refreshFixture(t)
			f.setRefresh(tc.refresh)
			f.advance(time.Hour + time.Second)
			if _, err := f.identifyBy(s, tc.token); !errors.Is(err, ErrSessionEnded) {
				t.Errorf("first request after the expiry: got %v, want ErrSessionEnded", err)
			}
			wantEnded(t, f, s)
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("the log does not say %q:\n%s", tc.wantLog, logs)
			}
			f.mu.Lock()
			results, last := f.refresh, f.records[len(f.records)-1]
			f.mu.Unlock()
			if len(results) != 1 || results[0] != tc.wantResult {
				t.Errorf("refresh results: got %v, want [%s]", results, tc.wantResult)
			}
			if last.Action != ActivitySessionEnded || last.Email != "someuser@example.com" || last.Reason == "" {
				t.Errorf("the last activity recorded: got %+v, want the session ended, with why", last)
			}
		})
	}
}

func TestRefreshProviderUnreachable(t *testing.T) {
	f, s, logs := refreshFixture(t)
	var calls atomic.Int32
	var down atomic.Bool
	down.Store(true)
	f.setRefresh(func(context.Context, string) (*idp.Identity, *idp.Tokens, error) {
		calls.Add(1)
		if down.Load() {
			return nil, nil, fmt.Errorf("%w: refreshing the session: dial tcp 127.0.0.1:1: connection refused", idp.ErrProviderUnavailable)
		}
		return newIdentity("dev"), &idp.Tokens{RefreshToken: "rotated-refresh-SECRET", Expiry: f.clock().Add(time.Hour)}, nil
	})
	wantCalls := func(want int32) {
		t.Helper()
		if n := calls.Load(); n != want {
			t.Errorf("refresh attempts: got %d, want %d", n, want)
		}
	}

	// Past the provider's expiry, within the grace: the identity it last
	// gave still serves, and attempts are spaced.
	f.advance(time.Hour + time.Minute)
	wantGroups(t, f, s, "sre", "dev")
	wantCalls(1)
	if !strings.Contains(logs.String(), "could not reach the identity provider to refresh the session") {
		t.Errorf("the log does not say the provider is unreachable:\n%s", logs)
	}
	f.advance(refreshRetry / 2)
	wantGroups(t, f, s, "sre", "dev")
	wantCalls(1)
	f.advance(refreshRetry)
	wantGroups(t, f, s, "sre", "dev")
	wantCalls(2)

	// Past the grace, still down: the session ends, tokens too.
	f.advance(refreshGrace)
	if _, err := f.identifyBy(s, false); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("past the grace: got %v, want ErrSessionEnded", err)
	}
	wantCalls(3)
	wantEnded(t, f, s)
	if !strings.Contains(logs.String(), "the grace after its identity expired is over") {
		t.Errorf("the log does not say why the session ended:\n%s", logs)
	}

	t.Run("back within the grace", func(t *testing.T) {
		f, s, _ := refreshFixture(t)
		f.setRefresh(func(ctx context.Context, rt string) (*idp.Identity, *idp.Tokens, error) {
			if f.clock().Before(f.storedSession(t, s).IDPExpiry.Add(2 * time.Minute)) {
				return nil, nil, fmt.Errorf("%w: refreshing the session: 503 Service Unavailable", idp.ErrProviderUnavailable)
			}
			return newIdentity("dev"), &idp.Tokens{RefreshToken: "rotated-refresh-SECRET", Expiry: f.clock().Add(time.Hour)}, nil
		})
		f.advance(time.Hour + time.Minute)
		wantGroups(t, f, s, "sre", "dev")
		f.advance(2 * time.Minute)
		wantGroups(t, f, s, "dev")
		f.advance(refreshGrace)
		wantGroups(t, f, s, "dev")
	})
}

// TestRefreshOncePerSession: fifty requests of one session past the
// provider's expiry, by cookie and by token, share one refresh and all see
// its result; so do those of two replicas sharing a session store, which
// take turns by the store's lease.
func TestRefreshOncePerSession(t *testing.T) {
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprint(replicas, " replicas"), func(t *testing.T) {
			f, s, _ := refreshFixture(t)
			auths := []*Authenticator{f.a}
			for len(auths) < replicas {
				other, err := New(f.a.opts) // the same store and provider
				if err != nil {
					t.Fatal(err)
				}
				other.now = f.clock
				auths = append(auths, other)
			}
			release := make(chan struct{})
			var calls atomic.Int32
			f.setRefresh(func(context.Context, string) (*idp.Identity, *idp.Tokens, error) {
				calls.Add(1)
				<-release
				return newIdentity("dev", "oncall"), &idp.Tokens{RefreshToken: "rotated-refresh-SECRET", Expiry: f.clock().Add(time.Hour)}, nil
			})
			f.advance(time.Hour + time.Second)
			var wg sync.WaitGroup
			errs := make([]error, 50)
			for i := range errs {
				wg.Go(func() {
					id, err := f.identifyAt(auths[i%replicas], s, i/replicas%2 == 1)
					if err == nil && !slices.Equal(id.Groups, []string{"dev", "oncall"}) {
						err = fmt.Errorf("groups %v, want [dev oncall]", id.Groups)
					}
					errs[i] = err
				})
			}
			waitFor(t, "the refresh to start", func() bool { return calls.Load() > 0 })
			time.Sleep(50 * time.Millisecond) // let the others queue behind it
			close(release)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("request %d: %v", i, err)
				}
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("refreshes: got %d, want 1", n)
			}
		})
	}
}

// TestRefreshDoesNotUndoSignOut: a sign-out while the provider answers a
// refresh stays a sign-out.
func TestRefreshDoesNotUndoSignOut(t *testing.T) {
	f, s, _ := refreshFixture(t)
	release := make(chan struct{})
	var calls atomic.Int32
	f.setRefresh(func(context.Context, string) (*idp.Identity, *idp.Tokens, error) {
		calls.Add(1)
		<-release
		return newIdentity("dev"), &idp.Tokens{RefreshToken: "rotated-refresh-SECRET", Expiry: f.clock().Add(time.Hour)}, nil
	})
	f.advance(time.Hour + time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := f.identifyBy(s, false)
		done <- err
	}()
	waitFor(t, "the refresh to start", func() bool { return calls.Load() > 0 })
	res := f.post(t, routeURL+"/.pomerium/sign_out", req{cookies: []*http.Cookie{s.routeCookie}})
	if res.code != http.StatusSeeOther {
		t.Fatalf("sign-out: got %d", res.code)
	}
	close(release)
	if err := <-done; !errors.Is(err, ErrSessionEnded) {
		t.Errorf("the request waiting for the refresh: got %v, want ErrSessionEnded", err)
	}
	wantEnded(t, f, s)
}

// TestNoRefreshToken: a session whose provider gave no refresh token is
// never refreshed; it lasts until COOKIE_EXPIRE.
func TestNoRefreshToken(t *testing.T) {
	f, _, _ := refreshFixture(t)
	f.setRefresh(func(context.Context, string) (*idp.Identity, *idp.Tokens, error) {
		t.Error("a session without a refresh token was refreshed")
		return nil, nil, errors.New("no")
	})
	now := f.clock()
	sess := &session.Session{
		ID: session.NewSessionID(), Subject: "user-1", Email: "someuser@example.com", Groups: []string{"dev"},
		CreatedAt: now, ExpiresAt: now.Add(14 * time.Hour), IDPIDToken: idpIDToken, IDPExpiry: now.Add(time.Hour),
	}
	if err := f.store.Put(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	cookie := &http.Cookie{Name: cookieName, Value: f.sealer.Seal(f.a.sessionPurpose(routeHost), []byte(sess.ID), sess.ExpiresAt)}
	for _, d := range []time.Duration{0, 2 * time.Hour, 11 * time.Hour} { // 13h in all
		f.advance(d)
		signedInAs(t, f, cookie)
	}
	f.advance(2 * time.Hour)
	noSession(t, f, cookie)
}

func TestRefreshMargin(t *testing.T) {
	jwt := func(payload string) string {
		return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
	}
	tests := []struct {
		name    string
		idToken string
		want    time.Duration
	}{
		{"an hour's token", jwt(`{"iat":1700000000,"exp":1700003600}`), refreshMargin},
		{"a five seconds' token", jwt(`{"iat":1700000000,"exp":1700000005}`), 1250 * time.Millisecond},
		{"no ID token (GitHub)", "", refreshMargin},
		{"not a JWT", idpIDToken, refreshMargin},
		{"no iat", jwt(`{"exp":1700000005}`), refreshMargin},
		{"exp before iat", jwt(`{"iat":1700000005,"exp":1700000000}`), refreshMargin},
		{"payload not JSON", jwt(`not json`), refreshMargin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := margin(&session.Session{IDPIDToken: tc.idToken}); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// unavailableStore is a session store whose database is down.
type unavailableStore struct{ session.Store }

var errDown = fmt.Errorf("%w: dial tcp 127.0.0.1:5432: connection refused", session.ErrUnavailable)

func (unavailableStore) Put(context.Context, *session.Session) error { return errDown }
func (unavailableStore) Get(context.Context, string) (*session.Session, error) {
	return nil, errDown
}
func (unavailableStore) View(context.Context, string) (*session.Session, error) {
	return nil, errDown
}
func (unavailableStore) RedeemState(context.Context, string, time.Duration, int) error {
	return errDown
}
func (unavailableStore) Delete(context.Context, string) error { return errDown }

// TestStoreUnavailable: with the session store down, a request is refused
// as unavailable, not as signed out, and a sign-in gets a 503 that says
// why; nothing is ended.
func TestStoreUnavailable(t *testing.T) {
	f, s, _ := refreshFixture(t)
	f.a.opts.Store = unavailableStore{f.store}
	if _, err := f.identifyBy(s, true); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Identify: got %v, want ErrStoreUnavailable", err)
	}
	res := f.callback(t, f.browserSignIn(t))
	if res.code != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" || !strings.Contains(res.body, "cannot reach its session database") {
		t.Errorf("sign-in: got %d %q, want 503 naming the session database", res.code, res.body)
	}
	// A sign-out cannot be recorded: it says so, and does not pretend.
	res = f.post(t, routeURL+"/.pomerium/sign_out", req{cookies: []*http.Cookie{s.routeCookie}})
	if res.code != http.StatusServiceUnavailable || strings.Contains(res.header.Get("Set-Cookie"), cookieName+"=;") {
		t.Errorf("sign-out: got %d, Set-Cookie %q; want 503 and the cookie kept", res.code, res.header.Get("Set-Cookie"))
	}
	f.a.opts.Store = f.store
	wantGroups(t, f, s, "sre", "dev")
}

// leaseDownStore is a session store that answers reads but cannot take a
// lease: a database blip in the middle of a refresh.
type leaseDownStore struct{ session.Store }

func (leaseDownStore) TryLease(context.Context, string, string, time.Duration) (bool, error) {
	return false, errDown
}

// TestRefreshStoreFailureEndsNothing: a refresh the session store cannot
// take part in refuses the request as unavailable (503), and signs nobody
// out, even long past the provider's expiry; the next request, with the
// store back, refreshes.
func TestRefreshStoreFailureEndsNothing(t *testing.T) {
	f, s, _ := refreshFixture(t)
	f.setRefresh(func(context.Context, string) (*idp.Identity, *idp.Tokens, error) {
		return newIdentity("dev"), &idp.Tokens{RefreshToken: "rotated-refresh-SECRET", Expiry: f.clock().Add(time.Hour)}, nil
	})
	f.advance(time.Hour + refreshGrace + time.Minute)
	f.a.opts.Store = leaseDownStore{f.store}
	if _, err := f.identifyBy(s, true); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Identify with the store failing: got %v, want ErrStoreUnavailable", err)
	}
	f.a.opts.Store = f.store
	wantGroups(t, f, s, "dev")
}
