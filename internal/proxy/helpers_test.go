package proxy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// Test fixtures: the service-account token routes send upstream, the
// session cookie name, and the person signed in.
const (
	testSAToken    = "sa-token.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cG9tZXJpdW06cG9tZXJpdW0ifQ.c2ln"
	testCookieName = "_pomerium"
	testFrom       = "https://k8s.example.com"
)

func alice() *identity.Identity {
	return &identity.Identity{
		User:   "alice-id",
		Email:  "alice@example.com",
		Groups: []string{"sre", "dev"},
		Expiry: time.Now().Add(time.Hour),
	}
}

// received is what a test upstream saw of one request.
type received struct {
	Method string
	Path   string // with the query, as sent
	Host   string
	Proto  string
	Header http.Header
	Body   []byte
}

// upstream is an httptest TLS server (HTTP/2 enabled, as kube-apiserver)
// that records every request it receives before handing it to its handler.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []received
}

// newUpstream starts a recording upstream; a nil h answers 200 with a
// small JSON body.
func newUpstream(t testing.TB, h http.HandlerFunc) *upstream {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"kind":"PodList","apiVersion":"v1","items":[]}`)
		}
	}
	u := &upstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream: reading the request body: %v", err)
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, received{
			Method: r.Method,
			Path:   r.URL.RequestURI(),
			Host:   r.Host,
			Proto:  r.Proto,
			Header: r.Header.Clone(),
			Body:   body,
		})
		u.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r)
	}))
	u.EnableHTTP2 = true
	u.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

// requests returns what the upstream received so far.
func (u *upstream) requests() []received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]received(nil), u.reqs...)
}

// only returns the one request the upstream received, failing the test if
// it received another number.
func (u *upstream) only(t testing.TB) received {
	t.Helper()
	reqs := u.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream received %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("parsing %q: %v", s, err)
	}
	return u
}

// kubeRoute is a Kubernetes route to the given upstream URLs, trusting
// httptest's CA, with the defaults config.Load gives a Kubernetes route
// (both upgrades, no timeout).
func kubeRoute(t testing.TB, to ...string) *config.Route {
	t.Helper()
	r := plainRoute(t, to...)
	r.KubernetesServiceAccountToken = testSAToken
	r.AllowSPDY, r.AllowWebsockets = true, true
	return r
}

// plainRoute is a route that is not a Kubernetes route, to the given
// upstream URLs, trusting httptest's CA.
func plainRoute(t testing.TB, to ...string) *config.Route {
	t.Helper()
	r := &config.Route{From: mustURL(t, testFrom), TLSCustomCA: httptestCA(t)}
	for _, s := range to {
		r.To = append(r.To, mustURL(t, s))
	}
	return r
}

// httptestCA is the PEM of the certificate every httptest TLS server
// uses, which is its own CA.
func httptestCA(testing.TB) []byte { return httptestCAPEM() }

var httptestCAPEM = sync.OnceValue(func() []byte {
	s := httptest.NewUnstartedServer(nil)
	s.StartTLS()
	defer s.Close()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
})

// newProxy builds the proxy of route, logging into a buffer that is shown
// if the test fails.
func newProxy(t testing.TB, route *config.Route) *Proxy {
	t.Helper()
	logs := &logbuf.Buffer{}
	if tt, ok := t.(*testing.T); ok {
		t.Cleanup(func() {
			if tt.Failed() {
				t.Logf("proxy logs:\n%s", logs.String())
			}
		})
	}
	p, err := New(route, Options{
		CookieName: testCookieName,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// withIdentity returns r carrying id, as authentication leaves it; a nil id
// returns r unchanged.
func withIdentity(r *http.Request, id *identity.Identity) *http.Request {
	if id == nil {
		return r
	}
	return r.WithContext(identity.NewContext(r.Context(), id))
}

// front serves p over plain HTTP/1.1 on loopback, putting id in every
// request's context: the proxy as the server runs it, for tests that need
// a real connection (streaming, upgrades).
func front(t testing.TB, p *Proxy, id *identity.Identity) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeHTTP(w, withIdentity(r, id))
	}))
	s.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	t.Cleanup(s.Close)
	return s
}

// kubeStatus is the Kubernetes Status body of an error.
type kubeStatus struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Status     string `json:"status"`
	Message    string `json:"message"`
	Reason     string `json:"reason"`
	Code       int    `json:"code"`
}

// statusOf decodes rec's body as a Status and checks it against rec's code.
func statusOf(t testing.TB, rec *httptest.ResponseRecorder) kubeStatus {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q, want application/json", ct)
	}
	var st kubeStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("response body is not a Status: %v\n%s", err, rec.Body)
	}
	if st.Kind != "Status" || st.Status != "Failure" || st.Code != rec.Code {
		t.Errorf("Status: got %+v, want kind Status, status Failure, code %d", st, rec.Code)
	}
	return st
}

// closedPort returns the URL of a loopback port nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "https://" + addr
}

// otherCA returns the PEM certificate of a fresh CA that signed nothing
// the tests serve.
func otherCA(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "portcullis proxy test: unrelated CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
