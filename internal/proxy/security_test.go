package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawUpstream is a plain-HTTP/1.1 upstream that records every byte it
// receives, the way a server behind an HTTP/1.1 hop (a load balancer,
// kube-apiserver with --disable-http2-serving) sees the connection. It
// answers each request it can parse with 200 and an empty body.
type rawUpstream struct {
	url  string
	mu   sync.Mutex
	seen strings.Builder
}

func newRawUpstream(t *testing.T) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &rawUpstream{url: "http://" + ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(io.TeeReader(c, u))
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				}
			}()
		}
	}()
	return u
}

func (u *rawUpstream) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen.Write(p)
}

func (u *rawUpstream) received() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen.String()
}

// TestRefusesUnframedRequests is the regression test of CONNECT request
// smuggling: a CONNECT's body would go onto a pooled HTTP/1.1 upstream
// connection unframed, where the upstream reads it as requests of its own,
// the next of which another person's headers complete. The server refuses
// such requests first; the proxy must refuse them on its own too, on
// every kind of route.
func TestRefusesUnframedRequests(t *testing.T) {
	const smuggled = "GET /api/v1/namespaces/kube-system/secrets HTTP/1.1\r\nHost: x\r\nImpersonate-User: system:admin\r\nX-Ignore: "
	tests := []struct {
		name   string
		method string
		path   string
	}{
		{"CONNECT with an empty path", http.MethodConnect, ""},
		{"CONNECT with a path", http.MethodConnect, "/api"},
		{"TRACE", http.MethodTrace, "/api"},
		{"a target that is not a path", http.MethodPost, "*"},
	}
	for _, kubernetes := range []bool{true, false} {
		for _, tt := range tests {
			name := tt.name + " on a plain route"
			if kubernetes {
				name = tt.name + " on a Kubernetes route"
			}
			t.Run(name, func(t *testing.T) {
				up := newRawUpstream(t)
				route := plainRoute(t, up.url)
				if kubernetes {
					route = kubeRoute(t, up.url)
				}
				p := newProxy(t, route)
				req := httptest.NewRequest(http.MethodPost, testFrom+"/", strings.NewReader(smuggled))
				req.Method, req.URL.Path, req.ContentLength = tt.method, tt.path, -1
				rec := httptest.NewRecorder()
				p.ServeHTTP(rec, withIdentity(req, alice()))
				if rec.Code < 400 {
					t.Errorf("status: got %d, want a refusal", rec.Code)
				}
				if got := up.received(); got != "" {
					t.Errorf("upstream received %q, want nothing", got)
				}
			})
		}
	}
	// The same upstream takes a framed request with the same body as one
	// request, so the test's upstream does see what is forwarded.
	t.Run("a POST with the same body is framed", func(t *testing.T) {
		up := newRawUpstream(t)
		p := newProxy(t, kubeRoute(t, up.url))
		req := httptest.NewRequest(http.MethodPost, testFrom+"/api/v1/namespaces/default/configmaps", strings.NewReader(smuggled))
		req.ContentLength = -1
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, withIdentity(req, alice()))
		if rec.Code != http.StatusOK {
			t.Fatalf("status: got %d, want 200; body %s", rec.Code, rec.Body)
		}
		got := up.received()
		if !strings.Contains(got, "Transfer-Encoding: chunked") {
			t.Errorf("upstream received %q, want a chunked body", got)
		}
		if n := strings.Count(got, "HTTP/1.1\r\n"); n != 2 { // the request line, and the body's text
			t.Errorf("upstream received %d request-line-looking lines, want 2 (one of them inside a chunk): %q", n, got)
		}
	})
}

// A Kubernetes route's responses carry a sandboxing Content-Security-Policy:
// kube-apiserver serves pods' and nodes' pages on its origin through the
// proxy subresources, and such a page must not run as the API's origin.
func TestKubernetesResponsesAreSandboxed(t *testing.T) {
	page := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		io.WriteString(w, `<script>fetch("/api/v1/secrets")</script>`)
	}
	for _, path := range []string{
		"/api/v1/namespaces/dev/pods/web:8080/proxy/",
		"/api/v1/namespaces/dev/services/https:web:443/proxy/index.html",
		"/api/v1/nodes/worker/proxy/metrics",
		"/api/v1/namespaces",
	} {
		t.Run(path, func(t *testing.T) {
			up := newUpstream(t, page)
			p := newProxy(t, kubeRoute(t, up.URL))
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", testFrom+path, nil), alice()))
			got := rec.Header().Values("Content-Security-Policy")
			if !slices.Contains(got, "sandbox") || !slices.Contains(got, "default-src 'self'") {
				t.Errorf("Content-Security-Policy: got %q, want the upstream's and %q", got, "sandbox")
			}
		})
	}
	t.Run("plain routes are the upstream's business", func(t *testing.T) {
		up := newUpstream(t, page)
		p := newProxy(t, plainRoute(t, up.URL))
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", testFrom+"/", nil))
		if got := rec.Header().Values("Content-Security-Policy"); len(got) != 1 {
			t.Errorf("Content-Security-Policy: got %q, want only the upstream's", got)
		}
	})
}

// An upstream cannot set Portcullis's own cookies (session fixation, or a
// sign-in binding of the attacker's), on any route; its own cookies pass.
func TestUpstreamCannotSetPortcullisCookies(t *testing.T) {
	setter := func(w http.ResponseWriter, r *http.Request) {
		for _, c := range []string{
			testCookieName + "=attackers-session; Path=/",
			testCookieName + "_signin=attackers-binding; Path=/.pomerium/callback",
			" " + testCookieName + " =spaced; Path=/",
			"app=1; Path=/",
			"x" + testCookieName + "=2",
			testCookieName + "x=3",
		} {
			w.Header().Add("Set-Cookie", c)
		}
	}
	for _, kubernetes := range []bool{true, false} {
		up := newUpstream(t, setter)
		route := plainRoute(t, up.URL)
		if kubernetes {
			route = kubeRoute(t, up.URL)
		}
		p := newProxy(t, route)
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", testFrom+"/api", nil), alice()))
		want := []string{"app=1; Path=/", "x" + testCookieName + "=2", testCookieName + "x=3"}
		if got := rec.Header().Values("Set-Cookie"); !slices.Equal(got, want) {
			t.Errorf("kubernetes %v: Set-Cookie: got %q, want %q", kubernetes, got, want)
		}
	}
}

// Kubernetes reserves names beginning with "system:"; a route impersonates
// them only when kubernetes_allow_system_names says so.
func TestSystemNamesNeedTheRoutesConsent(t *testing.T) {
	masters := alice()
	masters.Groups = []string{"dev", "system:masters"}
	for _, allow := range []bool{false, true} {
		up := newUpstream(t, nil)
		route := kubeRoute(t, up.URL)
		route.KubernetesAllowSystemNames = allow
		p := newProxy(t, route)
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", testFrom+"/api", nil), masters))
		if !allow {
			if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "kubernetes_allow_system_names") {
				t.Errorf("not allowed: got %d %s, want 403 naming kubernetes_allow_system_names", rec.Code, rec.Body)
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("not allowed: upstream received %d requests, want none", n)
			}
			continue
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("allowed: got %d %s, want 200", rec.Code, rec.Body)
		}
		if got := up.only(t).Header.Values("Impersonate-Group"); !slices.Equal(got, []string{"dev", "system:masters"}) {
			t.Errorf("allowed: Impersonate-Group: got %q", got)
		}
	}
}
