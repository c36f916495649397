package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

func TestTLSNegotiatesHTTP2AndHTTP1(t *testing.T) {
	certPEM, keyPEM, pool := selfSignedCert(t)
	logger, _ := testLogger(t)
	opts := testOptions(func(o *config.Options) { o.Certificate, o.CertificateKey = certPEM, keyPEM })
	s, err := New(opts, logger)
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s, false)

	tests := []struct {
		name      string
		http1     bool
		http2     bool
		alpn      []string // what the client offers, if not Go's choice
		wantProto string
		wantALPN  string
	}{
		{name: "h2", http2: true, wantProto: "HTTP/2.0", wantALPN: "h2"},
		// As kubectl's SPDY transport does: HTTP/1.1, asked for by ALPN.
		{name: "http/1.1", http1: true, alpn: []string{"http/1.1"}, wantProto: "HTTP/1.1", wantALPN: "http/1.1"},
		{name: "both offered: h2 wins", http1: true, http2: true, wantProto: "HTTP/2.0", wantALPN: "h2"},
		{name: "no ALPN: HTTP/1.1", http1: true, wantProto: "HTTP/1.1", wantALPN: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var protocols http.Protocols
			protocols.SetHTTP1(tt.http1)
			protocols.SetHTTP2(tt.http2)
			client := newClient(t, &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: tt.alpn},
				Protocols:       &protocols,
			})
			resp, err := client.Get(ts.url + "/ping")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "OK\n" {
				t.Errorf("GET /ping: %d %q, want 200 OK", resp.StatusCode, body)
			}
			if resp.Proto != tt.wantProto {
				t.Errorf("protocol: got %s, want %s", resp.Proto, tt.wantProto)
			}
			if got := resp.TLS.NegotiatedProtocol; got != tt.wantALPN {
				t.Errorf("ALPN: got %q, want %q", got, tt.wantALPN)
			}
		})
	}

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(ts.url, "https://"), &tls.Config{
			RootCAs:    pool,
			MinVersion: tls.VersionTLS10,
			MaxVersion: tls.VersionTLS11,
		})
		if err == nil {
			conn.Close()
			t.Fatal("a TLS 1.1 handshake succeeded, want it refused")
		}
	})

	t.Run("plain HTTP on the TLS port", func(t *testing.T) {
		client := newClient(t, nil)
		resp, err := client.Get("http://" + strings.TrimPrefix(ts.url, "https://") + "/ping")
		if err != nil {
			return // a refused connection is fine too
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: got %d, want 400", resp.StatusCode)
		}
	})
}

func TestInsecureServerServesPlainHTTPAndWarns(t *testing.T) {
	logger, logs := testLogger(t)
	s, err := New(insecureOptions(t), logger)
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s, false)
	resp, err := newClient(t, nil).Get(ts.url + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" {
		t.Errorf("GET /ping: %d %s, want 200 HTTP/1.1", resp.StatusCode, resp.Proto)
	}
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"INSECURE_SERVER is set`) {
		t.Errorf("no start-up warning about INSECURE_SERVER in:\n%s", logs.String())
	}
}

func TestMetricsEndpoint(t *testing.T) {
	logger, _ := testLogger(t)
	s, err := newServer(insecureOptions(t, "http://route.test"), logger, infallible(namedRoute))
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s, true)
	client := newClient(t, nil)

	for _, host := range []string{"route.test", "nope.test"} {
		req, _ := http.NewRequest("GET", ts.url+"/api", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := client.Get(ts.url + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	resp, err = client.Get(ts.metricsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	for _, want := range []string{
		`portcullis_http_requests_total{code="200",method="GET",route="http://route.test"} 1`,
		`portcullis_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`portcullis_http_requests_total{code="200",method="GET",route="internal"} 1`,
		`portcullis_http_request_duration_seconds_bucket{method="GET",route="http://route.test",le="0.005"}`,
		`portcullis_http_request_duration_seconds_count{method="GET",route="internal"} 1`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}

	// The metrics listener serves /metrics and the health endpoints, and
	// nothing of the routes.
	for path, want := range map[string]int{"/ping": 200, "/healthz": 200, "/readyz": 200, "/api": 404, "/.pomerium/healthz": 404} {
		resp, err = client.Get(ts.metricsURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s on the metrics listener: %d, want %d", path, resp.StatusCode, want)
		}
	}
	// And the main listener does not serve metrics.
	resp, err = client.Get(ts.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the main listener: %d, want 404", resp.StatusCode)
	}
}

func TestMetricsRegistriesAreIndependent(t *testing.T) {
	// Two servers in one process (tests, or a reload) must not collide on
	// a global registry.
	for range 2 {
		if _, err := New(insecureOptions(t), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// blocking is a per-route handler that tells the test it started, then
// waits for release (or for its request to be cancelled).
type blocking struct {
	entered chan struct{}
	release chan struct{}
}

func newBlocking() *blocking {
	return &blocking{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (b *blocking) handler(*config.Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.entered <- struct{}{}
		select {
		case <-b.release:
			w.Write([]byte("done"))
		case <-r.Context().Done():
		}
	})
}

func TestGracefulShutdownLetsInFlightRequestFinish(t *testing.T) {
	logger, _ := testLogger(t)
	b := newBlocking()
	s, err := newServer(insecureOptions(t, "http://route.test"), logger, infallible(b.handler))
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s, true)

	type result struct {
		code int
		body string
		err  error
	}
	resc := make(chan result, 1)
	client := newClient(t, nil)
	go func() {
		req, _ := http.NewRequest("GET", ts.url+"/slow", nil)
		req.Host = "route.test"
		resp, err := client.Do(req)
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		resc <- result{resp.StatusCode, string(body), err}
	}()
	<-b.entered

	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()

	// Shutdown has begun: readiness says so, and new connections are
	// refused.
	waitFor(t, "/healthz to turn 503", func() bool {
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code == http.StatusServiceUnavailable && rec.Body.String() == `{"status":"shutting down"}`+"\n"
	})
	for _, path := range []string{"/.pomerium/healthz", "/healthz"} {
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("GET %s while shutting down: %d, want 503", path, rec.Code)
		}
	}
	// The metrics listener closes last, so probes there see the drain.
	if resp, err := client.Get(ts.metricsURL + "/readyz"); err != nil {
		t.Errorf("GET /readyz on the metrics listener while draining: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("GET /readyz on the metrics listener while draining: %d, want 503", resp.StatusCode)
		}
	}
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(ts.url, "http://"), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}

	close(b.release)
	res := <-resc
	if res.err != nil || res.code != 200 || res.body != "done" {
		t.Errorf("in-flight request: got %d %q %v, want 200 done", res.code, res.body, res.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestShutdownTimeoutCutsStuckRequest(t *testing.T) {
	logger, logs := testLogger(t)
	b := newBlocking()
	s, err := newServer(insecureOptions(t, "http://route.test"), logger, infallible(b.handler))
	if err != nil {
		t.Fatal(err)
	}
	s.ShutdownTimeout = 200 * time.Millisecond
	ts := serve(t, s, false)

	errc := make(chan error, 1)
	client := newClient(t, nil)
	go func() {
		req, _ := http.NewRequest("GET", ts.url+"/stuck", nil)
		req.Host = "route.test"
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	<-b.entered

	start := time.Now()
	if err := ts.stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v with ShutdownTimeout 200ms", d)
	}
	if err := <-errc; err == nil {
		t.Error("the stuck request completed, want its connection closed")
	}
	if !strings.Contains(logs.String(), "graceful shutdown timed out") {
		t.Errorf("no log about the shutdown timing out")
	}
}

// upgrader is a per-route handler that hijacks the connection as a
// Kubernetes exec would (101, then raw bytes), echoes lines until the
// client closes, then closes.
func upgrader(*config.Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(line)
			brw.Flush()
		}
	})
}

// dialUpgrade opens a raw connection and upgrades it.
func dialUpgrade(t *testing.T, ts *testServer) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(conn, "GET /exec HTTP/1.1\r\nHost: route.test\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		t.Fatalf("upgrade: got %q, %v; want 101", status, err)
	}
	for { // headers
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	io.WriteString(conn, "ping\n")
	if echo, err := br.ReadString('\n'); err != nil || echo != "ping\n" {
		t.Fatalf("echo over the upgraded connection: got %q, %v", echo, err)
	}
	return conn, br
}

func TestShutdownDrainsUpgradedConnections(t *testing.T) {
	t.Run("stream ends within the timeout", func(t *testing.T) {
		logger, _ := testLogger(t)
		s, err := newServer(insecureOptions(t, "http://route.test"), logger, infallible(upgrader))
		if err != nil {
			t.Fatal(err)
		}
		s.ShutdownTimeout = 20 * time.Second
		ts := serve(t, s, false)
		conn, br := dialUpgrade(t, ts)
		if n := s.hijacked.len(); n != 1 {
			t.Fatalf("tracked upgraded connections: got %d, want 1", n)
		}

		stopped := make(chan error, 1)
		go func() { stopped <- ts.stop() }()
		waitFor(t, "shutdown to begin", s.shuttingDown.Load)
		select {
		case err := <-stopped:
			t.Fatalf("Serve returned (%v) while an upgraded stream was open", err)
		case <-time.After(200 * time.Millisecond):
		}
		// The stream still works during the drain.
		io.WriteString(conn, "still here\n")
		if echo, err := br.ReadString('\n'); err != nil || echo != "still here\n" {
			t.Fatalf("echo during shutdown: got %q, %v", echo, err)
		}
		conn.Close() // the user leaves the exec session
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after the upgraded connection closed")
		}
	})

	t.Run("stream outlives the timeout", func(t *testing.T) {
		logger, _ := testLogger(t)
		s, err := newServer(insecureOptions(t, "http://route.test"), logger, infallible(upgrader))
		if err != nil {
			t.Fatal(err)
		}
		s.ShutdownTimeout = 200 * time.Millisecond
		ts := serve(t, s, false)
		_, br := dialUpgrade(t, ts)

		if err := ts.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := br.ReadString('\n'); !errors.Is(err, io.EOF) {
			t.Errorf("reading the upgraded connection after shutdown: got %v, want EOF", err)
		}
		if n := s.hijacked.len(); n != 0 {
			t.Errorf("tracked upgraded connections after shutdown: got %d, want 0", n)
		}
	})
}

func TestRun(t *testing.T) {
	logger, _ := testLogger(t)
	opts := insecureOptions(t)
	opts.MetricsAddress = "127.0.0.1:0"
	s, err := New(opts, logger)
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Errorf("Addr before Run: got %v, want nil", s.Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}

	client := newClient(t, nil)
	for _, u := range []string{"http://" + s.Addr().String() + "/ping", "http://" + s.MetricsAddr().String() + "/metrics"} {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d, want 200", u, resp.StatusCode)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := s.Serve(context.Background(), ln, nil); err == nil || !strings.Contains(err.Error(), "already called") {
		t.Errorf("serving a second time: got %v, want an error saying Serve was already called", err)
	}
}

func TestRunReportsListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name    string
		address string
		metrics string
		want    string
	}{
		{"main", busy.Addr().String(), "", "(ADDRESS)"},
		{"metrics", "127.0.0.1:0", busy.Addr().String(), "(METRICS_ADDRESS)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := insecureOptions(t)
			opts.Address, opts.MetricsAddress = tt.address, tt.metrics
			s, err := New(opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Run(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run: got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
