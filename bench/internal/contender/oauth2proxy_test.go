package contender

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// oauth2ProxyTest is oauth2-proxy started in front of a recording upstream,
// with the bench issuer.
type oauth2ProxyTest struct {
	contenderTest
	iss *Issuer
	env Env
}

// startOAuth2Proxy starts the upstream, the issuer and oauth2-proxy. A
// failed build fails the test: skipping would hide that the benchmark
// cannot run.
func startOAuth2Proxy(t *testing.T) *oauth2ProxyTest {
	t.Helper()
	c := &OAuth2ProxyContender{}
	if err := c.Prepare(t.Context(), testLog{t}); err != nil {
		t.Fatalf("oauth2-proxy is needed for the benchmark: %v", err)
	}
	ot := &oauth2ProxyTest{contenderTest: contenderTest{recordingUpstream: startRecordingUpstream(t)}}
	iss, err := StartIssuer(ot.ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	ot.iss = iss
	ot.env = ot.recordingUpstream.env(t, "oauth2-proxy", "alice@example.com", []string{"developers", "readers"})
	ot.env.Issuer = iss
	inst, err := c.Start(t.Context(), ot.env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	t.Logf("oauth2-proxy ready in %s", inst.Ready)
	ot.inst = inst
	return ot
}

func TestOAuth2Proxy(t *testing.T) {
	ot := startOAuth2Proxy(t)
	t.Run("credentials", ot.testCredentials)
	t.Run("refused", ot.testRefused)
	t.Run("keepalive", ot.testKeepalive)
	t.Run("streaming", ot.testStreaming)
	t.Run("websocket", ot.testWebSocket)
	t.Run("spdy", ot.testSPDY)
	t.Run("metrics", ot.testMetrics)
}

// A valid JWT is replaced by the service-account token, and the identity
// comes from its claims, whatever the client claimed in headers.
func (ot *oauth2ProxyTest) testCredentials(t *testing.T) {
	req := ot.request(t, http.MethodGet, "/credentials")
	req.Header.Set("Impersonate-User", "evil")
	req.Header.Set("Impersonate-Group", "system:masters")
	req.Header.Set("Impersonate-Uid", "0")
	req.Header.Set("Accept", "application/json")
	resp, err := ot.client(t, true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %s, want 200 OK", resp.Status)
	}
	// Bearer-token clients get no session cookie to carry.
	if c := resp.Header.Values("Set-Cookie"); len(c) > 0 {
		t.Errorf("got Set-Cookie %q, want none", c)
	}
	got, upProto, ok := ot.received("/credentials")
	if !ok {
		t.Fatal("the request did not reach the upstream")
	}
	t.Logf("client to oauth2-proxy: %s; oauth2-proxy to upstream: %s", resp.Proto, upProto)
	if resp.ProtoMajor != 1 {
		t.Errorf("client got %s; oauth2proxy.go says oauth2-proxy serves HTTP/1.1 only", resp.Proto)
	}
	if upProto != "HTTP/2.0" {
		t.Errorf("upstream got %s; oauth2proxy.go says oauth2-proxy speaks HTTP/2 to an upstream that offers it", upProto)
	}

	for _, tt := range []struct {
		name string
		want []string
	}{
		{name: "Authorization", want: []string{"Bearer upstream-token"}},
		{name: "Impersonate-User", want: []string{"alice@example.com"}},
		// The groups come from the token's groups claim, but oauth2-proxy
		// joins the values of every header into one line
		// (flattenHeaders): kube-apiserver would read one group
		// "developers,readers". Asserted so that a release that fixes it
		// shows up here.
		{name: "Impersonate-Group", want: []string{"developers,readers"}},
		{name: "Impersonate-Uid"},
		{name: "Accept", want: []string{"application/json"}},
	} {
		if g := got.Values(tt.name); !slices.Equal(g, tt.want) {
			t.Errorf("upstream got %s: %q, want %q", tt.name, g, tt.want)
		}
	}
}

// Requests without a valid token from the issuer are answered by
// oauth2-proxy and never reach the upstream.
func (ot *oauth2ProxyTest) testRefused(t *testing.T) {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := ot.iss.claims(ot.env.User, ot.env.Groups, now, now.Add(time.Hour))
	// Everything right but the key: same issuer, audience and kid.
	forged, err := signJWT(other, ot.iss.kid, claims)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ot.iss.Mint(ot.env.User, ot.env.Groups, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	otherAud := ot.iss.claims(ot.env.User, ot.env.Groups, now, now.Add(time.Hour))
	otherAud.Audience = "someone-else"
	wrongAudience, err := signJWT(ot.iss.key, ot.iss.kid, otherAud)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name          string
		authorization string
		wantStatus    int
	}{
		// --force-json-errors: 401 JSON instead of a sign-in page.
		{name: "no-token", wantStatus: http.StatusUnauthorized},
		// --bearer-token-login-fallback=false: a JWT that fails
		// verification is refused with 403.
		{name: "forged", authorization: "Bearer " + forged, wantStatus: http.StatusForbidden},
		{name: "expired", authorization: "Bearer " + expired, wantStatus: http.StatusForbidden},
		{name: "wrong-audience", authorization: "Bearer " + wrongAudience, wantStatus: http.StatusForbidden},
		// Not a JWT at all (here the upstream's own token, which must not
		// pass through): refused like a bad JWT.
		{name: "opaque-token", authorization: "Bearer upstream-token", wantStatus: http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := "/api/v1/namespaces/default/configmaps/refused-" + tt.name
			req := ot.request(t, http.MethodGet, path)
			req.Header.Del("Authorization")
			if tt.authorization != "" {
				req.Header.Set("Authorization", tt.authorization)
			}
			resp, err := ot.client(t, true).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("got %s: %.200s, want %d", resp.Status, body, tt.wantStatus)
			}
			if _, _, ok := ot.received(path); ok {
				t.Errorf("the upstream received the refused request")
			}
		})
	}
}

// Requests in a row reuse the upstream connection, and verifying a token
// uses the cached JWKS, not a fetch per request.
func (ot *oauth2ProxyTest) testKeepalive(t *testing.T) {
	const requests, workers, maxNew = 200, 8, 2
	client := ot.client(t, true)
	conns, fetches := ot.newConns.Load(), ot.iss.jwksFetches.Load()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	work := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range work {
				resp, err := client.Do(ot.request(t, http.MethodGet, ReadyPath))
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("request %d: got %s, want 200 OK", i, resp.Status)
				}
			}
		})
	}
	for i := range requests {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := ot.newConns.Load() - conns
	t.Logf("%d requests from %d clients opened %d upstream connections", requests, workers, n)
	if n > maxNew {
		t.Errorf("%d requests opened %d upstream connections, want at most %d", requests, n, maxNew)
	}
	if f := ot.iss.jwksFetches.Load() - fetches; f > 0 {
		t.Errorf("%d requests fetched the JWKS %d times, want 0 (cached)", requests, f)
	}
}

// upgrade sends an upgrade request for proto and, on 101, checks that bytes
// pass both ways. It returns the response status.
func (ot *oauth2ProxyTest) upgrade(t *testing.T, path, proto string) int {
	req := ot.request(t, http.MethodGet, path)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", proto)
	req.Header.Set("X-Stream-Protocol-Version", "v4.channel.k8s.io")
	// No client timeout: with one, the body of a 101 is wrapped and can
	// no longer be written to.
	client := ot.client(t, false)
	client.Timeout = 0
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		io.Copy(io.Discard, resp.Body)
		t.Logf("%s upgrade: got %s; oauth2-proxy's log ends:\n%s", proto, resp.Status, ot.inst.Process.LogTail(2))
		return resp.StatusCode
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("got body %T, want an io.ReadWriteCloser for a 101", resp.Body)
	}
	got, _, _ := ot.received(path)
	for _, tt := range []struct{ name, want string }{
		{name: "X-Stream-Protocol-Version", want: "v4.channel.k8s.io"},
		{name: "Authorization", want: "Bearer upstream-token"},
		{name: "Impersonate-User", want: ot.env.User},
	} {
		if g := got.Get(tt.name); g != tt.want {
			t.Errorf("upstream got %s %q, want %q", tt.name, g, tt.want)
		}
	}
	br := bufio.NewReader(rw)
	for _, msg := range []string{"ping\n", "a longer second message\n"} {
		if _, err := io.WriteString(rw, msg); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the echo of %q: %v", msg, err)
		}
		if got != msg {
			t.Errorf("got echo %q, want %q", got, msg)
		}
	}
	return resp.StatusCode
}

// A WebSocket upgrade (kubectl exec with the WebSocket protocol, the
// default since Kubernetes 1.31) passes with the replaced credentials.
func (ot *oauth2ProxyTest) testWebSocket(t *testing.T) {
	if got := ot.upgrade(t, "/websocket", "websocket"); got != http.StatusSwitchingProtocols {
		t.Errorf("got %d, want 101 Switching Protocols", got)
	}
}

// An SPDY/3.1 upgrade (kubectl exec before 1.31, port-forward) does not
// pass: oauth2-proxy hands it to its ordinary transport, which sends it
// over the HTTP/2 connection the upstream offered, where there is no
// upgrade. Asserted so that a release that fixes it shows up here.
func (ot *oauth2ProxyTest) testSPDY(t *testing.T) {
	got := ot.upgrade(t, "/spdy", "SPDY/3.1")
	if got == http.StatusSwitchingProtocols {
		t.Errorf("SPDY/3.1 passed through oauth2-proxy; update oauth2proxy.go, which says it does not")
	}
	if _, _, ok := ot.received("/spdy"); ok {
		t.Errorf("the upstream received the SPDY upgrade")
	}
}

// The metrics endpoint serves the Go runtime's metrics.
func (ot *oauth2ProxyTest) testMetrics(t *testing.T) {
	if ot.inst.Metrics == "" {
		t.Fatal("Instance.Metrics is empty")
	}
	if err := servesMetric(t.Context(), ot.inst.Metrics, "go_goroutines"); err != nil {
		t.Error(err)
	}
}
