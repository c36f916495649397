package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestHealthEndpointsByHost: which host and path Portcullis answers itself
// and which go to the route. On a Kubernetes route the API server's own
// health and version endpoints are the route's; Portcullis's are /ping and
// /.pomerium/healthz there, as everywhere.
func TestHealthEndpointsByHost(t *testing.T) {
	opts := insecureOptions(t, "https://k8s.example.com", "https://app.example.com")
	opts.Routes[0].KubernetesServiceAccountToken = "sa-token"
	logger, _ := testLogger(t)
	s, err := newServer(opts, logger, infallible(namedRoute))
	if err != nil {
		t.Fatal(err)
	}
	const (
		ping  = "OK\n"
		ready = `{"status":"ready"}` + "\n"
		k8s   = "route https://k8s.example.com"
		app   = "route https://app.example.com"
	)
	tests := []struct {
		host, target string
		want         string // the body: one of the constants above
	}{
		{"k8s.example.com", "/ping", ping},
		{"k8s.example.com", "/.pomerium/healthz", ready},
		{"k8s.example.com", "/healthz", k8s},
		{"k8s.example.com", "/healthz?verbose", k8s},
		{"k8s.example.com", "/healthz/etcd", k8s},
		{"k8s.example.com", "/livez?verbose", k8s},
		{"k8s.example.com", "/readyz", k8s},
		{"k8s.example.com", "/readyz/etcd", k8s},
		{"k8s.example.com:443", "/healthz", k8s},
		{"k8s.example.com", "/version", k8s},
		{"app.example.com", "/ping", ping},
		{"app.example.com", "/.pomerium/healthz", ready},
		{"app.example.com", "/healthz", ready}, // as Pomerium answers it
		{"app.example.com", "/readyz", app},
		{"203.0.113.9", "/ping", ping}, // a load balancer probing by address
		{"203.0.113.9", "/healthz", ready},
		{"203.0.113.9", "/.pomerium/healthz", ready},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.target, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tt.target, nil)
			req.Host = tt.host
			rec := httptest.NewRecorder()
			s.handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Body.String() != tt.want {
				t.Errorf("got %d %q, want 200 %q", rec.Code, rec.Body.String(), tt.want)
			}
		})
	}
}

// TestKubernetesHealthEndpointsReachTheAPIServer: `kubectl get --raw
// '/readyz?verbose'` through a Kubernetes route is a request like any
// other: refused without a token, and with one forwarded to kube-apiserver
// as the person, query and all.
func TestKubernetesHealthEndpointsReachTheAPIServer(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []*http.Request
	)
	opts := insecureOptions(t, "https://k8s.example.com")
	route := &opts.Routes[0]
	tlsUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Clone(context.Background()))
		mu.Unlock()
		w.Write([]byte("[+]etcd ok\nreadyz check passed\n"))
	}), route)
	route.KubernetesServiceAccountToken = "sa-token"
	route.AllowedUsers = []string{"alice@example.com"}
	s := newUnservedServer(t, opts)

	get := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "https://k8s.example.com/readyz?verbose", nil)
		req.Header.Set("Accept", "application/json, */*")
		if token != "" {
			req.Header.Set("Authorization", "Bearer Pomerium-"+token)
		}
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req)
		return rec
	}

	if rec := get(""); rec.Code != http.StatusUnauthorized || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("without a token: got %d %s %q, want a 401 Status", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	mu.Lock()
	if len(seen) != 0 {
		t.Errorf("without a token, the upstream got %d requests, want none", len(seen))
	}
	mu.Unlock()

	rec := get(benchToken(t, opts, route))
	if rec.Code != http.StatusOK || rec.Body.String() != "[+]etcd ok\nreadyz check passed\n" {
		t.Fatalf("with a token: got %d %q, want the API server's answer", rec.Code, rec.Body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("the upstream got %d requests, want 1", len(seen))
	}
	r := seen[0]
	if r.URL.Path != "/readyz" || r.URL.RawQuery != "verbose" {
		t.Errorf("the upstream got %s, want /readyz?verbose", r.URL)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer sa-token" {
		t.Errorf("the upstream got Authorization %q, want the service account's token", got)
	}
	if got := r.Header.Get("Impersonate-User"); got != "alice@example.com" {
		t.Errorf("the upstream got Impersonate-User %q, want alice@example.com", got)
	}
}

// A dependency that is down makes the server not ready, with its reason,
// and leaves liveness alone.
func TestReadinessChecks(t *testing.T) {
	s, err := New(insecureOptions(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	probe := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := probe(pathReadiness); code != http.StatusOK || body != `{"status":"ready"}`+"\n" {
		t.Errorf("ready: got %d %q", code, body)
	}

	storeDown := func(context.Context) error { return errors.New("session store unreachable") }
	s.current().router.ready = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveReadiness(w, r, append(s.readinessChecks(), storeDown))
	})
	if code, body := probe(pathReadiness); code != http.StatusServiceUnavailable || body != `{"status":"session store unreachable"}`+"\n" {
		t.Errorf("store down: got %d %q, want 503 naming the store", code, body)
	}
	s.shuttingDown.Store(true)
	if code, body := probe(pathReadiness); code != http.StatusServiceUnavailable || body != `{"status":"shutting down; session store unreachable"}`+"\n" {
		t.Errorf("store down while shutting down: got %d %q, want 503 with both", code, body)
	}
	if code, _ := probe(pathPing); code != http.StatusOK {
		t.Errorf("liveness with a dependency down: got %d, want 200", code)
	}
}
