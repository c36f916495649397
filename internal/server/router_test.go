package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

func TestRouting(t *testing.T) {
	opts := insecureOptions(t,
		"https://k8s.example.com",
		"https://127.0.0.1:8443",
		"http://plain.example.com",
		"https://explicit.example.com:443",
		"https://[::1]:9443",
	)
	logger, _ := testLogger(t)
	s, err := newServer(opts, logger, infallible(namedRoute))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		host     string
		path     string
		accept   string
		wantCode int
		wantBody string // exact, unless wantJSON or wantPage
		wantJSON *kubeStatus
		wantPage string // in the HTML page a browser gets
	}{
		{name: "exact host", host: "k8s.example.com", wantCode: 200, wantBody: "route https://k8s.example.com"},
		{name: "default port given", host: "k8s.example.com:443", wantCode: 200, wantBody: "route https://k8s.example.com"},
		{name: "case-insensitive", host: "K8s.Example.COM:443", wantCode: 200, wantBody: "route https://k8s.example.com"},
		{name: "trailing dot", host: "k8s.example.com.", wantCode: 200, wantBody: "route https://k8s.example.com"},
		{name: "explicit default port in from", host: "explicit.example.com", wantCode: 200, wantBody: "route https://explicit.example.com:443"},
		{name: "http default port", host: "plain.example.com:80", wantCode: 200, wantBody: "route http://plain.example.com"},
		{name: "non-default port matches exactly", host: "127.0.0.1:8443", wantCode: 200, wantBody: "route https://127.0.0.1:8443"},
		{name: "ipv6 literal", host: "[::1]:9443", wantCode: 200, wantBody: "route https://[::1]:9443"},
		{name: "path is kept", host: "k8s.example.com", path: "/api/v1/namespaces", wantCode: 200, wantBody: "route https://k8s.example.com"},
		{
			name: "other port on a known host", host: "k8s.example.com:8443", wantCode: 404,
			wantJSON: notFoundStatus(`portcullis: no route is configured for host "k8s.example.com:8443"`),
		},
		{
			name: "non-default port route without port", host: "127.0.0.1", wantCode: 404,
			wantJSON: notFoundStatus(`portcullis: no route is configured for host "127.0.0.1"`),
		},
		{
			name: "non-default port route on the default port", host: "127.0.0.1:443", wantCode: 404,
			wantJSON: notFoundStatus(`portcullis: no route is configured for host "127.0.0.1:443"`),
		},
		{
			name: "unknown host, kubectl", host: "nope.example.com", accept: "application/json, */*", wantCode: 404,
			wantJSON: notFoundStatus(`portcullis: no route is configured for host "nope.example.com"`),
		},
		{
			name: "unknown host, browser", host: "nope.example.com", accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8", wantCode: 404,
			wantPage: "<h1>Not Found</h1><p>portcullis: no route is configured for host &#34;nope.example.com&#34;</p>",
		},
		{
			name: "no host", host: "", wantCode: 404,
			wantJSON: notFoundStatus("portcullis: the request names no host (Host header), and routes are chosen by host"),
		},
		{name: "ping on a route host", host: "k8s.example.com", path: "/ping", wantCode: 200, wantBody: "OK\n"},
		{name: "ping on an unknown host", host: "203.0.113.9", path: "/ping", wantCode: 200, wantBody: "OK\n"},
		{name: "healthz on an unknown host", host: "nope.example.com", path: "/healthz", wantCode: 200, wantBody: `{"status":"ready"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/"
			}
			req := httptest.NewRequest("GET", path, nil)
			req.Host = tt.host
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			rec := httptest.NewRecorder()
			s.handler.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Errorf("status: got %d, want %d (body %q)", rec.Code, tt.wantCode, rec.Body.String())
			}
			if tt.wantJSON != nil {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type: got %q, want application/json", ct)
				}
				var got kubeStatus
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
					t.Fatalf("decoding Status %q: %v", rec.Body.String(), err)
				}
				if diff := cmp.Diff(*tt.wantJSON, got); diff != "" {
					t.Errorf("Status (-want +got):\n%s", diff)
				}
				return
			}
			if tt.wantPage != "" {
				if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
					t.Errorf("Content-Type: got %q, want text/html; charset=utf-8", ct)
				}
				if got := rec.Body.String(); !strings.Contains(got, tt.wantPage) {
					t.Errorf("page: got %q, want it to contain %q", got, tt.wantPage)
				}
				return
			}
			if got := rec.Body.String(); got != tt.wantBody {
				t.Errorf("body: got %q, want %q", got, tt.wantBody)
			}
		})
	}
}

func notFoundStatus(msg string) *kubeStatus {
	return &kubeStatus{Kind: "Status", APIVersion: "v1", Status: "Failure", Message: msg, Reason: "NotFound", Code: 404}
}

// A route request without a Portcullis token is refused with a Status
// kubectl understands, and never reaches the proxy.
func TestRouteRequestWithoutTokenIsUnauthorized(t *testing.T) {
	logger, _ := testLogger(t)
	s, err := New(insecureOptions(t, "https://k8s.example.com"), logger)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/api/v1/pods", nil)
	req.Host = "k8s.example.com"
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)

	if rec.Code != http.StatusUnauthorized {
		t.Errorf("status: got %d, want 401", rec.Code)
	}
	// The exact bytes kubectl receives.
	want := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",` +
		`"message":"portcullis: no valid credentials: the request has no Portcullis token: run any kubectl command to sign in again",` +
		`"reason":"Unauthorized","code":401}` + "\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("body:\n got %s\nwant %s", got, want)
	}
}

func TestNewRejectsRoutesSharingAHost(t *testing.T) {
	tests := []struct {
		name  string
		froms []string
	}{
		{"same from", []string{"https://a.example.com", "https://a.example.com"}},
		{"case and default port", []string{"https://a.example.com", "https://A.example.com:443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(insecureOptions(t, tt.froms...), nil)
			if err == nil || !strings.Contains(err.Error(), "answers the same requests as") {
				t.Errorf("New: got error %v, want one saying the routes both serve a host", err)
			}
		})
	}
	// Different ports of one name are different hosts.
	if _, err := New(insecureOptions(t, "https://a.example.com", "https://a.example.com:8443"), nil); err != nil {
		t.Errorf("New with routes on two ports of one host: %v", err)
	}
}

func TestNewRouteWithoutValidFrom(t *testing.T) {
	opts := testOptions(func(o *config.Options) { o.InsecureServer, o.Routes = true, []config.Route{{}} })
	if _, err := New(opts, nil); err == nil || !strings.Contains(err.Error(), "routes[0]: no from") {
		t.Errorf("New: got error %v, want one naming route 1's missing from", err)
	}
	opts = insecureOptions(t, "https://ok.example.com", "https://bad_host..example.com")
	if _, err := New(opts, nil); err == nil || !strings.Contains(err.Error(), `routes[1].from: "bad_host..example.com" is not a valid host name`) {
		t.Errorf("New: got error %v, want one naming route 2's host", err)
	}
}

func TestNewTLSCertificateProblems(t *testing.T) {
	certPEM, keyPEM, _ := selfSignedCert(t)
	otherCert, _, _ := selfSignedCert(t)
	tests := []struct {
		name      string
		cert, key []byte
		wantErr   []string // substrings
	}{
		{
			name:    "none",
			wantErr: []string{"certificate: no TLS certificate: set certificate and certificate_key", "certificate_file and certificate_key_file", "insecure_server to true"},
		},
		{name: "no key", cert: certPEM, wantErr: []string{"certificate: set without certificate_key"}},
		{name: "no cert", key: keyPEM, wantErr: []string{"certificate_key: set without certificate"}},
		{name: "not PEM", cert: []byte("nope"), key: keyPEM, wantErr: []string{"certificate: ", "PEM"}},
		{name: "key of another cert", cert: otherCert, key: keyPEM, wantErr: []string{"certificate", "match"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(testOptions(func(o *config.Options) { o.Certificate, o.CertificateKey = tt.cert, tt.key }), nil)
			if err == nil {
				t.Fatal("New: got no error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New: got error %q, want it to contain %q", err, want)
				}
			}
		})
	}
	if _, err := New(testOptions(func(o *config.Options) { o.Certificate, o.CertificateKey = certPEM, keyPEM }), nil); err != nil {
		t.Errorf("New with a good certificate: %v", err)
	}
}

func TestInternalEndpointMethods(t *testing.T) {
	logger, _ := testLogger(t)
	s, err := New(insecureOptions(t), logger)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		wantCode     int
		wantBody     string
	}{
		{"GET", "/ping", 200, "OK\n"},
		{"HEAD", "/ping", 200, "OK\n"}, // the recorder keeps what net/http would drop
		{"POST", "/ping", 405, ""},
		{"GET", "/healthz", 200, `{"status":"ready"}` + "\n"},
		{"DELETE", "/healthz", 405, ""},
		{"GET", "/.pomerium/healthz", 200, `{"status":"ready"}` + "\n"},
		{"HEAD", "/.pomerium/healthz", 200, `{"status":"ready"}` + "\n"},
		{"POST", "/.pomerium/healthz", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.handler.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantCode {
				t.Errorf("status: got %d, want %d", rec.Code, tt.wantCode)
			}
			if tt.wantCode == 405 {
				if got := rec.Header().Get("Allow"); got != "GET, HEAD" {
					t.Errorf("Allow: got %q, want %q", got, "GET, HEAD")
				}
				return
			}
			if got := rec.Body.String(); got != tt.wantBody {
				t.Errorf("body: got %q, want %q", got, tt.wantBody)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control: got %q, want no-store", got)
			}
		})
	}
}

// FuzzHostAndRequestID sends arbitrary Host and X-Request-Id headers, as
// any client can, through the whole pipeline.
func FuzzHostAndRequestID(f *testing.F) {
	for _, seed := range [][2]string{
		{"k8s.example.com", ""},
		{"K8S.example.com.:443", "abc"},
		{"[::1]:9443", "x\ny"},
		{"[::1", strings.Repeat("a", 65)},
		{"a:b:c", "<>"},
		{"", "ok.id"},
	} {
		f.Add(seed[0], seed[1])
	}
	s, err := newServer(insecureOptions(f, "https://k8s.example.com", "https://[::1]:9443"), nil, infallible(namedRoute))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host, id string) {
		if got := config.CanonicalHost(config.CanonicalHost(host)); got != config.CanonicalHost(host) {
			t.Errorf("canonicalHost is not idempotent on %q: %q, then %q", host, config.CanonicalHost(host), got)
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.Host = host
		req.Header.Set("X-Request-Id", id)
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusNotFound {
			t.Errorf("Host %q: status %d, want 200 or 404", host, rec.Code)
		}
		if got := rec.Header().Get("X-Request-Id"); !validRequestID(got) {
			t.Errorf("X-Request-Id %q answered with %q, which is not well formed", id, got)
		}
	})
}
