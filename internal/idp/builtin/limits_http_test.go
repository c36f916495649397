package builtin_test

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
)

// The tests of this file are the attacks on sign-in that the limits stop
// (a flood of sign-ins, password guessing, hashing load), each run over
// HTTP against the real provider.

// authorize makes the authorize call of authURL with c, without following
// the redirect, and returns the answer.
func authorize(t *testing.T, c *http.Client, authURL string) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirects(c).Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// isLoginRedirect says whether resp sends the browser to the login page,
// as a sign-in request the provider stored does.
func (d *idp) isLoginRedirect(resp *http.Response) bool {
	return resp.StatusCode == http.StatusFound && strings.HasPrefix(resp.Header.Get("Location"), d.issuer+"/login?authRequestID=")
}

// TestSignInFloodFromOneAddress is the review's first finding: ten
// thousand anonymous authorize calls from one address filled the table of
// sign-ins in progress for ten minutes, so that nobody could sign in.
func TestSignInFloodFromOneAddress(t *testing.T) {
	needLoopback(t, "127.0.0.2", "127.0.0.3")
	clock := newTestClock()
	d := startIdP(t, options{clock: clock})
	flooder := clientFrom(t, "127.0.0.2")
	authURL := d.newFlow().authURL

	var started, refused int
	for i := range builtin.MaxAuthRequests {
		resp, body := authorize(t, flooder, authURL)
		switch {
		case d.isLoginRedirect(resp):
			started++
		case resp.StatusCode == http.StatusTooManyRequests:
			refused++
			if refused == 1 && (!strings.Contains(body, "Too many sign-ins are in progress from your network") || resp.Header.Get("Retry-After") != "60") {
				t.Errorf("refusal of the flood: got Retry-After %q and\n%s\nwant Retry-After 60 and a page saying too many sign-ins are in progress", resp.Header.Get("Retry-After"), body)
			}
		default:
			t.Fatalf("authorize call %d: got %s to %q, want a redirect to the login page or 429", i+1, resp.Status, resp.Header.Get("Location"))
		}
	}
	if started != builtin.MaxSignInsPerAddr {
		t.Errorf("sign-ins the flooding address started: got %d, want %d", started, builtin.MaxSignInsPerAddr)
	}

	// Meanwhile a person at another address signs in.
	f, code := d.signInFrom(t, "127.0.0.3", aliceEmail, alicePassword)
	if _, err := d.exchange(t, code, f.verifier); err != nil {
		t.Fatalf("exchanging the code of a sign-in during the flood: %v", err)
	}

	// No browser opened the flood's requests: a minute on they are gone,
	// and the address may start sign-ins again.
	clock.Advance(builtin.UnboundTTL)
	if resp, body := authorize(t, flooder, authURL); !d.isLoginRedirect(resp) {
		t.Errorf("authorize call a minute after the flood: got %s\n%s\nwant a redirect to the login page", resp.Status, body)
	}
}

// TestSignInTableFull fills the whole table from many addresses, each at
// its own limit. The table's ceiling is the last line of defence; the
// person it refuses gets the provider's page saying so, not an error
// redirect to the application, and a minute later room again.
func TestSignInTableFull(t *testing.T) {
	addrs := make([]string, (builtin.MaxAuthRequests+builtin.MaxSignInsPerAddr-1)/builtin.MaxSignInsPerAddr)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.%d.%d", 10+i/200, 1+i%200)
	}
	const person = "127.0.0.4"
	needLoopback(t, append(addrs, person)...)
	clock := newTestClock()
	d := startIdP(t, options{clock: clock})
	authURL := d.newFlow().authURL

	clients := make(chan *http.Client, len(addrs))
	for _, a := range addrs {
		clients <- noRedirects(clientFrom(t, a))
	}
	close(clients)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		started int
	)
	for range 8 {
		wg.Go(func() {
			for c := range clients {
				for range builtin.MaxSignInsPerAddr {
					resp, err := c.Get(authURL)
					if err != nil {
						t.Errorf("authorize call: %v", err) // not Fatal: not the test's goroutine
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if !d.isLoginRedirect(resp) {
						break // the table is full
					}
					mu.Lock()
					started++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if started != builtin.MaxAuthRequests {
		t.Fatalf("sign-ins started from %d addresses: got %d, want %d", len(addrs), started, builtin.MaxAuthRequests)
	}

	resp, body := authorize(t, clientFrom(t, person), authURL)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Too many sign-ins are in progress. Try again in a minute.") {
		t.Errorf("authorize call with the table full: got %s to %q\n%s\nwant 503 and a page saying too many sign-ins are in progress", resp.Status, resp.Header.Get("Location"), body)
	}
	if got := resp.Header.Get("Retry-After"); got != "60" {
		t.Errorf("Retry-After: got %q, want 60", got)
	}
	if got := resp.Header.Get("Content-Security-Policy"); !strings.Contains(got, "default-src 'none'") {
		t.Errorf("Content-Security-Policy of the page: got %q, want the login page's", got)
	}

	clock.Advance(builtin.UnboundTTL)
	f, code := d.signInFrom(t, person, aliceEmail, alicePassword)
	if _, err := d.exchange(t, code, f.verifier); err != nil {
		t.Fatalf("exchanging the code of a sign-in after the table emptied: %v", err)
	}
}

// TestUnboundSignInExpires: a sign-in request no browser has opened lives
// a minute; once opened, the person has the full ten minutes.
func TestUnboundSignInExpires(t *testing.T) {
	clock := newTestClock()
	d := startIdP(t, options{clock: clock})

	c := clientFrom(t, "")
	resp, _ := authorize(t, c, d.newFlow().authURL)
	if !d.isLoginRedirect(resp) {
		t.Fatalf("authorize call: got %s, want a redirect to the login page", resp.Status)
	}
	clock.Advance(builtin.UnboundTTL)
	resp, body := authorize(t, c, resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "expired") {
		t.Errorf("login page opened %v after the authorize call: got %s, want 400 (sign-in expired)", builtin.UnboundTTL, resp.Status)
	}

	c, loginURL, id := loginPage(t, d.newFlow().authURL)
	clock.Advance(builtin.AuthRequestTTL - time.Second)
	if resp, body := postLogin(t, c, loginURL, loginForm(id, aliceEmail, alicePassword), nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("signing in %v after opening the login page: got %s, want 303\n%s", builtin.AuthRequestTTL-time.Second, resp.Status, body)
	}
}

// guess opens a new sign-in request from addr and posts email and
// password to its login page, as a script guessing passwords does.
func (d *idp) guess(t *testing.T, addr, email, password string) (*http.Response, string) {
	t.Helper()
	c, loginURL, id := loginPageFrom(t, addr, d.newFlow().authURL)
	resp, body := postLogin(t, c, loginURL, loginForm(id, email, password), nil)
	return resp, strings.ReplaceAll(body, id, "ID")
}

// wantAnswer fails the test unless resp has the status and body has want.
func wantAnswer(t *testing.T, what string, resp *http.Response, body string, status int, want string) {
	t.Helper()
	if resp.StatusCode != status || !strings.Contains(body, want) {
		t.Errorf("%s: got %s\n%s\nwant %d with %q", what, resp.Status, body, status, want)
	}
}

// TestGuessingPausesAccount is the review's second finding: the failure
// limit counted per sign-in request, so a script starting new requests
// guessed 60 passwords, then the right one. Now wrong passwords for an
// email count across requests and addresses; past five, the email is
// paused, even for the right password, for a time that doubles. An email
// that is no user's is paused the same way.
func TestGuessingPausesAccount(t *testing.T) {
	needLoopback(t, "127.0.3.1", "127.0.4.1")
	clock := newTestClock()
	d := startIdP(t, options{clock: clock})

	tests := []struct {
		name  string
		email string
		net   string // the guesses come from net.1, net.2, …
	}{
		{name: "a user's email", email: aliceEmail, net: "127.0.3."},
		{name: "an unknown email", email: "mallory@example.com", net: "127.0.4."},
	}
	var pausePages []string
	for _, tt := range tests {
		from := func(i int) string { return fmt.Sprint(tt.net, i) }
		for i := 1; i <= builtin.FreeFailures; i++ {
			resp, body := d.guess(t, from(i), tt.email, fmt.Sprint("guess ", i))
			wantAnswer(t, fmt.Sprintf("%s: wrong password %d", tt.name, i), resp, body, http.StatusUnauthorized, wrongCredentials)
		}
		resp, body := d.guess(t, from(20), tt.email, alicePassword)
		wantAnswer(t, tt.name+": the right password after five wrong ones", resp, body, http.StatusTooManyRequests, "Try again in 1 second.")
		if got := resp.Header.Get("Retry-After"); got != "1" {
			t.Errorf("%s: Retry-After: got %q, want 1", tt.name, got)
		}
		pausePages = append(pausePages, strings.ReplaceAll(body, tt.email, "EMAIL"))
	}
	if diff := cmp.Diff(pausePages[0], pausePages[1]); diff != "" {
		t.Errorf("the pause of a user's email and of an unknown one differ (-user +unknown):\n%s", diff)
	}

	// The pause doubles with every further wrong password, and the right
	// one is refused until it is over.
	clock.Advance(time.Second)
	resp, body := d.guess(t, "127.0.3.6", aliceEmail, "guess 6")
	wantAnswer(t, "wrong password 6, after the first pause", resp, body, http.StatusUnauthorized, wrongCredentials)
	c, loginURL, id := loginPageFrom(t, "127.0.3.21", d.newFlow().authURL)
	for _, want := range []string{"Try again in 2 seconds.", "Try again in 1 second."} {
		resp, body := postLogin(t, c, loginURL, loginForm(id, aliceEmail, alicePassword), nil)
		wantAnswer(t, "the right password during the second pause", resp, body, http.StatusTooManyRequests, want)
		clock.Advance(time.Second)
	}
	// The refusals did not end the sign-in request: the person signs in
	// from the same form once the pause is over.
	if resp, body := postLogin(t, c, loginURL, loginForm(id, aliceEmail, alicePassword), nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the right password after the pause: got %s, want 303\n%s", resp.Status, body)
	}
}

// TestGuessingPausesAddress: wrong passwords from one client address
// count across emails and requests; past five the address is paused, and
// only it: a person elsewhere signs in. Signing in from the address does
// not clear its count.
func TestGuessingPausesAddress(t *testing.T) {
	const guesser, elsewhere = "127.0.5.1", "127.0.5.2"
	needLoopback(t, guesser, elsewhere)
	clock := newTestClock()
	d := startIdP(t, options{clock: clock})

	for i, email := range []string{aliceEmail, bobEmail, "mallory@example.com", "eve@example.com", "trent@example.com"} {
		resp, body := d.guess(t, guesser, email, "guess")
		wantAnswer(t, fmt.Sprintf("wrong password %d from %s", i+1, guesser), resp, body, http.StatusUnauthorized, wrongCredentials)
	}
	resp, body := d.guess(t, guesser, bobEmail, bobPassword)
	wantAnswer(t, "Bob's right password from the guessing address", resp, body, http.StatusTooManyRequests, "Try again in 1 second.")
	d.signInFrom(t, elsewhere, bobEmail, bobPassword)

	clock.Advance(time.Second)
	resp, body = d.guess(t, guesser, bobEmail, bobPassword)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("Bob's right password from %s after the pause: got %s, want 303\n%s", guesser, resp.Status, body)
	}
	resp, body = d.guess(t, guesser, "eve@example.com", "guess")
	wantAnswer(t, "wrong password 6 from the address, after a sign-in from it", resp, body, http.StatusUnauthorized, wrongCredentials)
	resp, body = d.guess(t, guesser, aliceEmail, alicePassword)
	wantAnswer(t, "alice's right password from the address", resp, body, http.StatusTooManyRequests, "Try again in 2 seconds.")
}

// TestRightPasswordClearsAccountFailures: a person who mistypes a few
// times and then signs in starts again from no failures.
func TestRightPasswordClearsAccountFailures(t *testing.T) {
	needLoopback(t, "127.0.6.1")
	d := startIdP(t, options{clock: newTestClock()})
	wrong := func(round int) {
		t.Helper()
		for i := 1; i < builtin.FreeFailures; i++ {
			resp, body := d.guess(t, fmt.Sprintf("127.0.6.%d", 10*round+i), aliceEmail, "typo")
			wantAnswer(t, fmt.Sprintf("round %d, wrong password %d", round, i), resp, body, http.StatusUnauthorized, wrongCredentials)
		}
	}
	wrong(1)
	d.signInFrom(t, "127.0.6.1", aliceEmail, alicePassword)
	wrong(2)
}

// TestPasswordHashingBounded: password checks run on at most half the
// CPUs; one that finds no free slot within a second is refused with 503
// and the form, and its request lives on.
func TestPasswordHashingBounded(t *testing.T) {
	d := startIdP(t, options{})
	c, loginURL, id := loginPage(t, d.newFlow().authURL)
	slots, release := builtin.HoldHashing(d.Provider)
	if want := max(runtime.GOMAXPROCS(0)/2, 1); slots != want {
		t.Errorf("hashing slots: got %d, want half of GOMAXPROCS (%d), at least 1: %d", slots, runtime.GOMAXPROCS(0), want)
	}
	resp, body := postLogin(t, c, loginURL, loginForm(id, aliceEmail, alicePassword), nil)
	release()
	wantAnswer(t, "a login post with every hashing slot taken", resp, body, http.StatusServiceUnavailable, "The server is busy checking other sign-ins. Try again in a moment.")
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After: got %q, want 1", got)
	}
	if !strings.Contains(body, `type="password"`) {
		t.Errorf("the refusal does not show the form again:\n%s", body)
	}
	if resp, body := postLogin(t, c, loginURL, loginForm(id, aliceEmail, alicePassword), nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the same sign-in once slots are free: got %s, want 303\n%s", resp.Status, body)
	}
}
