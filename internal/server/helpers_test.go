package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// testLogger returns a debug-level JSON logger whose output the test can
// read, and which is shown if the test fails.
func testLogger(t *testing.T) (*slog.Logger, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	return slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), logs
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("parsing %q: %v", s, err)
	}
	return u
}

// testOptions returns the defaults (config.Defaults, as Load starts from)
// with a loopback address and the test secrets, changed by edit.
func testOptions(edit func(o *config.Options)) *config.Options {
	o := config.Defaults()
	o.Address, o.SharedSecret, o.CookieSecret = "127.0.0.1:0", testSecret, testSecret
	if edit != nil {
		edit(&o)
	}
	return &o
}

// newUnservedServer is New for a test that drives s.handler directly,
// logging into the test's log, with the routes' upstream connections
// closed when the test ends.
func newUnservedServer(t *testing.T, opts *config.Options) *Server {
	t.Helper()
	logger, _ := testLogger(t)
	s, err := New(opts, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.current().close() })
	return s
}

// insecureOptions returns plain-HTTP options with one route per `from`.
func insecureOptions(t testing.TB, froms ...string) *config.Options {
	t.Helper()
	opts := testOptions(func(o *config.Options) { o.InsecureServer = true })
	for _, f := range froms {
		opts.Routes = append(opts.Routes, config.Route{
			From: mustURL(t, f),
			To:   []*url.URL{mustURL(t, "https://127.0.0.1:6443")},
		})
	}
	return opts
}

// testSecret is a SHARED_SECRET for tests: token keys derive from it.
var testSecret = bytes.Repeat([]byte("k"), 32)

// infallible adapts a per-route handler that cannot fail to newServer.
func infallible(f func(*config.Route) http.Handler) func(*config.Route) (http.Handler, error) {
	return func(r *config.Route) (http.Handler, error) { return f(r), nil }
}

// namedRoute is a per-route handler that answers 200 "route <from>".
func namedRoute(r *config.Route) http.Handler {
	body := "route " + r.From.String()
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(body))
	})
}

// testServer is a Server serving on 127.0.0.1:0 for one test.
type testServer struct {
	*Server
	url        string // http(s)://127.0.0.1:port
	metricsURL string // "" unless metrics were asked for
	stop       func() error
}

// serve starts s on loopback listeners; stop (also run at cleanup) cancels
// its context and returns what Serve returned.
func serve(t *testing.T, s *Server, withMetrics bool) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mln net.Listener
	if withMetrics {
		if mln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, mln) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Serve returned before it was ready: %v", err)
	}
	ts := &testServer{Server: s, url: "http://" + ln.Addr().String()}
	if s.tlsConfig != nil {
		ts.url = "https://" + ln.Addr().String()
	}
	if mln != nil {
		ts.metricsURL = "http://" + mln.Addr().String()
	}
	ts.stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errTimeout
		}
	})
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

var errTimeout = errors.New("Serve did not return within 30s of its context's end")

// newClient returns a client for one test, closed at cleanup.
func newClient(t *testing.T, tr *http.Transport) *http.Client {
	t.Helper()
	if tr == nil {
		tr = &http.Transport{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// selfSignedCert returns a PEM certificate and key for 127.0.0.1 and
// localhost, issued by a fresh CA, and a pool that trusts that CA.
func selfSignedCert(t *testing.T) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	ca, err := testenv.NewCA("portcullis-server-test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err = ca.Issue("portcullis test", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, ca.Pool()
}

// kubeStatus is the part of a Kubernetes Status the tests compare.
type kubeStatus struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Metadata   struct{} `json:"metadata"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Reason     string   `json:"reason"`
	Code       int      `json:"code"`
}

// tlsUpstream starts an HTTPS upstream that serves h (offering HTTP/2, as
// kube-apiserver does) for the test, and points each route at it, trusting
// its certificate.
func tlsUpstream(t *testing.T, h http.Handler, routes ...*config.Route) {
	t.Helper()
	up := httptest.NewUnstartedServer(h)
	up.EnableHTTP2 = true
	up.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	up.StartTLS()
	t.Cleanup(up.Close)
	for _, r := range routes {
		r.To = []*url.URL{mustURL(t, up.URL)}
		r.TLSCustomCA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})
	}
}
