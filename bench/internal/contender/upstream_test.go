package contender

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// recordingUpstream is the upstream of the contenders' tests: HTTPS with
// HTTP/2 and HTTP/1.1 like kube-apiserver, a certificate from its own CA,
// and a record of what each path received.
type recordingUpstream struct {
	ca  *testenv.CA
	url string
	dir string
	// newConns counts connections the upstream accepted.
	newConns atomic.Int64
	mu       sync.Mutex
	headers  map[string]http.Header // by path: what the upstream received
	protos   map[string]string      // by path: the protocol it arrived over
	release  chan struct{}          // lets /stream write its second line
}

func startRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	ca, err := testenv.NewCA("bench")
	if err != nil {
		t.Fatal(err)
	}
	u := &recordingUpstream{ca: ca, dir: t.TempDir(), headers: map[string]http.Header{}, protos: map[string]string{}, release: make(chan struct{})}
	certPEM, keyPEM, err := ca.Issue("upstream", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2", "http/1.1"}}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.newConns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

// env is the Env of a contender called name in front of u, with its
// serving certificate from the same CA.
func (u *recordingUpstream) env(t *testing.T, name, user string, groups []string) Env {
	t.Helper()
	write := func(file string, b []byte) string {
		p := filepath.Join(u.dir, file)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certPEM, keyPEM, err := u.ca.Issue(name, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return Env{
		Dir:      u.dir,
		CA:       u.ca,
		CertFile: write(name+".crt", certPEM),
		KeyFile:  write(name+".key", keyPEM),
		CertPEM:  certPEM,
		KeyPEM:   keyPEM,
		Upstream: Upstream{
			URL:    u.url,
			CAFile: write("ca.crt", u.ca.CertPEM),
			CAPEM:  u.ca.CertPEM,
			Token:  "upstream-token",
		},
		User:   user,
		Groups: groups,
		Log:    testLog{t},
	}
}

func (u *recordingUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.headers[r.URL.Path] = r.Header.Clone()
	u.protos[r.URL.Path] = r.Proto
	u.mu.Unlock()
	switch r.URL.Path {
	case ReadyPath:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"bench","namespace":"default"}}`)
	case "/stream":
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		<-u.release
		io.WriteString(w, "second\n")
	case "/idle":
		// An idle watch: headers now, events later (here never).
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	case "/websocket", "/spdy":
		// Switch protocols and echo, like exec's streams.
		proto := map[string]string{"/websocket": "websocket", "/spdy": "SPDY/3.1"}[r.URL.Path]
		if !strings.EqualFold(r.Header.Get("Upgrade"), proto) || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			http.Error(w, "want Connection: upgrade and Upgrade: "+proto, http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + proto + "\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw.Reader)
	default:
		io.WriteString(w, "ok\n")
	}
}

// received returns what path last received, and over which protocol.
func (u *recordingUpstream) received(path string) (http.Header, string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	h, ok := u.headers[path]
	return h, u.protos[path], ok
}

// contenderTest is a contender started in front of a recordingUpstream.
type contenderTest struct {
	*recordingUpstream
	inst *Instance
}

func (ct *contenderTest) client(t *testing.T, http2 bool) *http.Client {
	return testClient(t, ct.inst, http2)
}

func (ct *contenderTest) request(t *testing.T, method, path string) *http.Request {
	return testRequest(t, ct.inst, method, path)
}

// testStreaming checks that a streamed response (a watch) reaches the
// client while the upstream is still writing it.
func (ct *contenderTest) testStreaming(t *testing.T) {
	resp, err := ct.client(t, true).Do(ct.request(t, http.MethodGet, "/stream"))
	if err != nil {
		close(ct.release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	select {
	case got := <-lines:
		if got != "first" {
			t.Errorf("got first line %q, want %q", got, "first")
		}
	case <-time.After(10 * time.Second):
		close(ct.release)
		t.Fatalf("the first line did not arrive while the upstream held the response open: %s buffers it", ct.inst.Name)
	}
	close(ct.release)
	if got := <-lines; got != "second" {
		t.Errorf("got second line %q, want %q", got, "second")
	}
}

// testClient returns a client of inst that offers HTTP/2 like kubectl, or
// an HTTP/1.1-only one. It has no Timeout, which would cut the body of a
// 101 response; testRequest gives each request a deadline instead.
func testClient(t *testing.T, inst *Instance, http2 bool) *http.Client {
	cfg := inst.TLS.Clone()
	if !http2 {
		cfg.NextProtos = []string{"http/1.1"}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: http2}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// testRequest is a request to inst with its credentials and a deadline.
func testRequest(t *testing.T, inst *Instance, method, path string) *http.Request {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	req, err := inst.NewRequest(ctx, method, path)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// testLog writes progress into the test's log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
