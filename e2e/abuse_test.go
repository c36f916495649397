package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestAbuseLimits attacks the real portcullis binary, with its built-in
// provider in front of a real kube-apiserver, from other loopback
// addresses than the person who uses it (127.0.0.1): floods of sign-in
// starts and login API calls, a pile of idle connections, an oversized
// body, and one person signing in again and again. Each limit holds, is
// counted in the metrics, and the person still gets in.
func TestAbuseLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const (
		email    = "alice@example.com"
		password = "alice's long password"
	)
	metricsPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	st := startBuiltinStack(t, ctx, builtinUsersFile(t, email, password, "dev"),
		"METRICS_ADDRESS=127.0.0.1:"+strconv.Itoa(metricsPort),
		"LIMIT_CONNECTIONS_PER_CLIENT=50",
		"LIMIT_SESSIONS_PER_PERSON=2",
	)
	// signIn is the person, from 127.0.0.1, as portcullis-cli signs in: a
	// fresh browser each time, so each is a new session.
	signIn := func(t *testing.T) string {
		t.Helper()
		return programmaticLogin(t, ctx, testenv.NewBrowser(st.ca.ClientTLS()), st.routeURL, st.authURL, email, password)
	}
	api := &http.Client{Transport: &http.Transport{TLSClientConfig: st.ca.ClientTLS()}}
	works := func(t *testing.T, tok string) int {
		t.Helper()
		return selfSubjectReview(t, api, st.routeURL, http.Header{"Authorization": {"Bearer Pomerium-" + tok}}).code
	}

	t.Run("10,000 sign-in starts and login calls from one client", func(t *testing.T) {
		heap0 := metricValue(t, metrics, "go_memstats_heap_inuse_bytes")
		attacker := clientFrom(t, "127.0.0.2", st.ca.ClientTLS())
		var (
			wg              sync.WaitGroup
			signIns, logins map[int]int
			signInErrs      []string
			loginErrs       []string
			// personIn closes once the person has signed in: each flood
			// sends at least 10,000 requests and keeps on until then, so
			// the sign-in always happens under the flood, however long
			// a sign-in takes on a loaded machine.
			personIn = make(chan struct{})
		)
		start := time.Now()
		wg.Add(2)
		go func() {
			defer wg.Done()
			signIns, signInErrs = flood(ctx, attacker, 10_000, personIn, st.authURL+"/.pomerium/sign_in?"+
				url.Values{"pomerium_redirect_uri": {st.routeURL + "/"}}.Encode())
		}()
		go func() {
			defer wg.Done()
			logins, loginErrs = flood(ctx, attacker, 10_000, personIn, st.routeURL+"/.pomerium/api/v1/login?"+
				url.Values{"pomerium_redirect_uri": {"http://127.0.0.1:1/cb"}}.Encode())
		}()
		// The person signs in once the floods are under way.
		time.Sleep(200 * time.Millisecond)
		personTok := signIn(t)
		close(personIn)
		wg.Wait()
		// Each limit refills by its per-minute rate: the flood may earn
		// back that many per started minute beyond the burst.
		minutes := int(time.Since(start)/time.Minute) + 1
		t.Logf("sign-in starts: %v; login calls: %v (over %v)", signIns, logins, time.Since(start).Round(time.Millisecond))
		if len(signInErrs)+len(loginErrs) > 0 {
			t.Logf("requests that failed: sign-in starts %q, login calls %q", signInErrs, loginErrs)
		}
		// At once 30 (LIMIT_SIGN_INS_PER_MINUTE) and 60 (the logins), and
		// as many more as the flood's duration earned back, refused (429)
		// the rest; nothing else.
		checkFlood := func(what string, counts map[int]int, ok, perMinute int) {
			t.Helper()
			total := 0
			for _, n := range counts {
				total += n
			}
			if total < 10_000 || counts[ok] < perMinute || counts[ok] > perMinute*(1+minutes) ||
				counts[ok]+counts[http.StatusTooManyRequests] != total {
				t.Errorf("%s: got %v, want %d to %d answered %d and the rest 429", what, counts, perMinute, perMinute*(1+minutes), ok)
			}
		}
		checkFlood("sign-in starts", signIns, http.StatusFound, 30)
		checkFlood("login calls", logins, http.StatusOK, 60)
		if code := works(t, personTok); code != http.StatusCreated {
			t.Errorf("the person's token during the flood: apiserver answered %d, want 201", code)
		}
		for limit, atLeast := range map[string]float64{
			"sign_ins_per_minute": float64(signIns[http.StatusTooManyRequests]),
			"logins_per_minute":   float64(logins[http.StatusTooManyRequests]),
		} {
			if got := metricValue(t, metrics, `portcullis_limit_refusals_total{limit="`+limit+`"}`); got < atLeast {
				t.Errorf("refusals at %s: the metric says %v, want at least %v", limit, got, atLeast)
			}
		}
		// Memory: the refused requests leave nothing behind. The bound is
		// loose (a live heap moves with garbage not yet collected); what
		// it catches is state kept per request, 10,000 times over.
		heap1 := metricValue(t, metrics, "go_memstats_heap_inuse_bytes")
		t.Logf("heap in use: %.1f MiB before, %.1f MiB after", heap0/(1<<20), heap1/(1<<20))
		if heap1-heap0 > 64<<20 {
			t.Errorf("heap in use grew by %.0f MiB over 20,000 refused requests, want it bounded", (heap1-heap0)/(1<<20))
		}
	})

	t.Run("idle connections from one client", func(t *testing.T) {
		// 200 connections from 127.0.0.3 that never send a byte: 50
		// (LIMIT_CONNECTIONS_PER_CLIENT) are kept, the rest are closed at
		// once.
		refused0 := metricValue(t, metrics, `portcullis_limit_refusals_total{limit="connections_per_client"}`)
		var conns []net.Conn
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
		for range 200 {
			c, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(st.routeURL, "https://"))
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		// A connection the server closed reads EOF at once; one it keeps
		// waits for its TLS handshake (up to 10s) and times out here.
		var (
			closed atomic.Int32
			wg     sync.WaitGroup
		)
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
					closed.Add(1)
				}
			}()
		}
		wg.Wait()
		if got := closed.Load(); got != 150 {
			t.Errorf("%d of 200 idle connections from one client were closed, want 150", got)
		}
		if got := metricValue(t, metrics, `portcullis_limit_refusals_total{limit="connections_per_client"}`) - refused0; got != 150 {
			t.Errorf("refusals at connections_per_client: the metric grew by %v, want 150", got)
		}
		// The person, from another address, is not affected.
		if code := works(t, signIn(t)); code != http.StatusCreated {
			t.Errorf("the person's token with another client's connections held: apiserver answered %d, want 201", code)
		}
	})

	t.Run("oversized sign-in bodies", func(t *testing.T) {
		for _, target := range []string{
			st.authURL + "/.pomerium/sign_out",
			st.routeURL + "/.pomerium/sign_out",
			st.authURL + "/.portcullis/idp/login", // the built-in provider's password form
		} {
			req, _ := http.NewRequestWithContext(ctx, "POST", target, strings.NewReader(strings.Repeat("a=b&", 1<<18)))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", strings.Join(strings.Split(target, "/")[:3], "/"))
			resp, err := api.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("POST %s with a 1 MiB body: got %d, want 413", target, resp.StatusCode)
			}
		}
	})

	t.Run("one person signing in again and again", func(t *testing.T) {
		// LIMIT_SESSIONS_PER_PERSON is 2: the third sign-in ends the
		// oldest session, and its token opens nothing any more.
		first, second, third := signIn(t), signIn(t), signIn(t)
		if code := works(t, first); code != http.StatusUnauthorized {
			t.Errorf("the oldest session's token after two newer sign-ins: got %d, want 401", code)
		}
		for i, tok := range []string{second, third} {
			if code := works(t, tok); code != http.StatusCreated {
				t.Errorf("sign-in %d of the newest two: got %d, want 201", i+2, code)
			}
		}
	})
}

// clientFrom is an HTTPS client whose connections come from the loopback
// address from, as another machine's would.
func clientFrom(t *testing.T, from string, tlsConfig *tls.Config) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// flood sends GETs of target with 16 workers, at least n and then on
// until until is closed, and counts the answers by status (0: the request failed), with the errors of the first few
// requests that failed.
func flood(ctx context.Context, client *http.Client, n int, until <-chan struct{}, target string) (counts map[int]int, failures []string) {
	counts = map[int]int{}
	var (
		mu   sync.Mutex
		sent atomic.Int64
		wg   sync.WaitGroup
	)
	more := func() bool {
		if sent.Add(1) <= int64(n) {
			return true
		}
		select {
		case <-until:
			return false
		default:
			return ctx.Err() == nil
		}
	}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for more() {
				code := 0
				req, _ := http.NewRequestWithContext(ctx, "GET", target, nil)
				req.Header.Set("Accept", "text/html")
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				counts[code]++
				if err != nil && len(failures) < 3 {
					failures = append(failures, err.Error())
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return counts, failures
}

// metricValue reads one sample from a Prometheus text exposition: name
// with its labels exactly as exposed (`x_total{limit="y"}`). A sample that
// is not there reads 0.
func metricValue(t *testing.T, metricsURL, sample string) float64 {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return v
		}
	}
	return 0
}

// metricSum sums the samples of a Prometheus text exposition whose line
// starts with prefix (a name, and "{" if it has labels) and holds every one
// of labels (label="value" pairs).
func metricSum(t *testing.T, metricsURL, prefix string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		total += v
	}
	return total
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
