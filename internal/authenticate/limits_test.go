package authenticate

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/limit"
)

// TestSignInRateLimit: one client address gets LIMIT_SIGN_INS_PER_MINUTE
// sign-ins at once and then 429 with Retry-After, a page that says when
// to try again; another address is not affected, and the first gets one
// back as time passes.
func TestSignInRateLimit(t *testing.T) {
	f := newFixture(t)
	f.a.opts.SignInRate = limit.NewRate(3, 0)
	start := authURL + "/.pomerium/sign_in?" + url.Values{"pomerium_redirect_uri": {routeURL + "/"}}.Encode()
	for range 3 {
		f.startSignIn(t, start)
	}
	res := f.get(t, start, req{header: []string{"Accept", browserAccept}})
	if res.code != http.StatusTooManyRequests || res.header.Get("Retry-After") != "20" || !strings.Contains(res.body, "Try again in 20 seconds") {
		t.Errorf("4th sign-in: got %d, Retry-After %q, %q; want 429 after 20 seconds", res.code, res.header.Get("Retry-After"), res.body)
	}
	// The callback counts too: a client cannot flood it instead.
	res = f.get(t, callbackURL("x", "y"), req{header: []string{"Accept", browserAccept}})
	if res.code != http.StatusTooManyRequests {
		t.Errorf("callback past the limit: got %d, want 429", res.code)
	}
	res = f.get(t, start, req{header: []string{"Accept", "text/html"}, remote: "198.51.100.9:4000"})
	if res.code != http.StatusFound {
		t.Errorf("another client's sign-in: got %d (%s), want 302 to the provider", res.code, res.body)
	}
	f.advance(20 * time.Second)
	f.startSignIn(t, start)
	if want := []string{LimitSignInRate, LimitSignInRate}; !slices.Equal(f.limited, want) {
		t.Errorf("limits reported: got %v, want %v", f.limited, want)
	}
}

// TestLoginRateLimit: the programmatic login API (portcullis-cli) is
// limited per client address, and answers a program with a Status.
func TestLoginRateLimit(t *testing.T) {
	f := newFixture(t)
	f.a.opts.LoginRate = limit.NewRate(2, 0)
	login := routeURL + "/.pomerium/api/v1/login?pomerium_redirect_uri=" + url.QueryEscape("http://127.0.0.1:8000/cb")
	for i := range 2 {
		if res := f.get(t, login, req{}); res.code != http.StatusOK {
			t.Fatalf("login %d: got %d %s", i+1, res.code, res.body)
		}
	}
	res := f.get(t, login, req{})
	if res.code != http.StatusTooManyRequests || res.header.Get("Retry-After") != "30" ||
		!strings.Contains(res.body, `"reason":"TooManyRequests"`) || !strings.Contains(res.body, "try again in 30 seconds") {
		t.Errorf("3rd login: got %d, Retry-After %q, %s; want a 429 Status", res.code, res.header.Get("Retry-After"), res.body)
	}
	if res := f.get(t, login, req{remote: "[2001:db8::1]:443"}); res.code != http.StatusOK {
		t.Errorf("another client's login: got %d %s", res.code, res.body)
	}
	if want := []string{LimitLoginRate}; !slices.Equal(f.limited, want) {
		t.Errorf("limits reported: got %v, want %v", f.limited, want)
	}
}

// TestPendingSignInsCap: the sign-ins remembered against replay are
// capped; past the cap a callback is refused with 503 before the provider
// is asked, and room comes back as they expire.
func TestPendingSignInsCap(t *testing.T) {
	f := newFixture(t)
	f.a.opts.PendingSignIns = 2
	for range 2 {
		if res := f.callback(t, f.browserSignIn(t)); res.code != http.StatusFound {
			t.Fatalf("sign-in within the cap: got %d %s", res.code, res.body)
		}
	}
	s := f.browserSignIn(t)
	before := f.idp.exchanges()
	res := f.callback(t, s)
	if res.code != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" || !strings.Contains(res.body, "Too many sign-ins") {
		t.Errorf("sign-in past the cap: got %d %q, want 503 Too many sign-ins", res.code, res.body)
	}
	if f.idp.exchanges() != before {
		t.Error("the provider was asked for a sign-in refused at the cap")
	}
	f.advance(stateTTL + time.Second)
	if res := f.callback(t, f.browserSignIn(t)); res.code != http.StatusFound {
		t.Errorf("sign-in once the remembered ones expired: got %d %s", res.code, res.body)
	}
	if want := []string{LimitPendingSignIns}; !slices.Equal(f.limited, want) {
		t.Errorf("limits reported: got %v, want %v", f.limited, want)
	}
}
