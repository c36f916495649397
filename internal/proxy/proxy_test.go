package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
)

// clientCredentials are the headers by which a client might try to
// authenticate upstream or choose the identity Kubernetes sees. None of
// them may reach the upstream.
func clientCredentials() http.Header {
	return http.Header{
		"Authorization":            {"Bearer Pomerium-eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"},
		"Proxy-Authorization":      {"Basic YWRtaW46YWRtaW4="},
		"X-Pomerium-Authorization": {"Pomerium eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"},
		"X-Remote-User":            {"system:admin"},
		"X-Remote-Group":           {"system:masters"},
		"X-Remote-Uid":             {"0"},
		"X-Remote-Extra-Scopes":    {"everything"},
		"Cookie":                   {testCookieName + "=session-secret; theme=dark"},
		// The hop-by-hop trick: a proxy that set the credential before
		// removing the headers Connection names would send none, and the
		// request would go with the service account's own rights.
		"Connection": {"Authorization, Impersonate-User, Impersonate-Group"},
		// What kubectl sends anyway, and must arrive.
		"Accept":     {"application/json"},
		"User-Agent": {"kubectl/v1.37.2 (linux/amd64) kubernetes/0000000"},
	}
}

// checkOnlyIdentity fails unless h holds exactly the service-account
// token and alice's impersonation headers, no client credential, and the
// ordinary headers the client sent.
func checkOnlyIdentity(t *testing.T, h http.Header) {
	t.Helper()
	want := http.Header{
		"Authorization":     {"Bearer " + testSAToken},
		"Impersonate-User":  {"alice@example.com"},
		"Impersonate-Group": {"sre", "dev"},
	}
	got := http.Header{}
	for k, v := range h {
		lk := strings.ToLower(k)
		if lk == "authorization" || strings.HasPrefix(lk, "impersonate-") {
			got[k] = v
		}
		for _, banned := range []string{"proxy-authorization", "x-pomerium-authorization", "x-remote-"} {
			if strings.HasPrefix(lk, banned) {
				t.Errorf("upstream received %s: %q", k, v)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("credential and impersonation headers upstream (-want +got):\n%s", diff)
	}
	if got, want := h.Values("Cookie"), []string{"theme=dark"}; !cmp.Equal(got, want) {
		t.Errorf("Cookie upstream: got %q, want %q (the session cookie removed, the rest kept)", got, want)
	}
	if got := h.Get("User-Agent"); !strings.HasPrefix(got, "kubectl/") {
		t.Errorf("User-Agent upstream: got %q, want kubectl's", got)
	}
	if got := h.Get("Accept"); got != "application/json" {
		t.Errorf("Accept upstream: got %q, want application/json", got)
	}
}

// TestKubernetesRouteForwardsOnlyTheVerifiedIdentity is the core promise:
// whatever credentials and identity headers the client sends, the API
// server sees the service account's token and the person in the context.
func TestKubernetesRouteForwardsOnlyTheVerifiedIdentity(t *testing.T) {
	t.Run("handler", func(t *testing.T) {
		up := newUpstream(t, nil)
		p := newProxy(t, kubeRoute(t, up.URL))
		req := httptest.NewRequest("GET", testFrom+"/api/v1/namespaces/default/pods?limit=500", nil)
		req.Header = clientCredentials()
		// Keys in other letter cases, as a handler or a middleware could
		// set them by direct assignment: net/http would send them.
		req.Header["x-remote-user"] = []string{"root"}
		req.Header["authorization"] = []string{"Bearer stolen"}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, withIdentity(req, alice()))

		if rec.Code != http.StatusOK {
			t.Fatalf("status: got %d, want 200; body: %s", rec.Code, rec.Body)
		}
		got := up.only(t)
		if got.Method != "GET" || got.Path != "/api/v1/namespaces/default/pods?limit=500" {
			t.Errorf("upstream request: got %s %s, want GET /api/v1/namespaces/default/pods?limit=500", got.Method, got.Path)
		}
		checkOnlyIdentity(t, got.Header)
	})
	t.Run("over HTTP/1.1", func(t *testing.T) {
		up := newUpstream(t, nil)
		p := newProxy(t, kubeRoute(t, up.URL))
		srv := front(t, p, alice())
		req, err := http.NewRequest("GET", srv.URL+"/api/v1/pods", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = clientCredentials()
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status: got %d, want 200", resp.StatusCode)
		}
		got := up.only(t)
		checkOnlyIdentity(t, got.Header)
		if xff := got.Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
			t.Errorf("X-Forwarded-For: got %q, want 127.0.0.1", xff)
		}
	})
}

// A route that is not a Kubernetes route adds no credential, and still
// passes none of the client's on.
func TestPlainRouteStripsCredentials(t *testing.T) {
	up := newUpstream(t, nil)
	p := newProxy(t, plainRoute(t, up.URL))
	req := httptest.NewRequest("GET", testFrom+"/", nil)
	req.Header = clientCredentials()
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req) // no identity needed here: a public route
	if rec.Code != http.StatusOK {
		t.Fatalf("status: got %d, want 200; body: %s", rec.Code, rec.Body)
	}
	for k, v := range up.only(t).Header {
		lk := strings.ToLower(k)
		for _, banned := range []string{"authorization", "proxy-authorization", "x-pomerium-authorization", "impersonate-", "x-remote-"} {
			if strings.HasPrefix(lk, banned) {
				t.Errorf("upstream received %s: %q", k, v)
			}
		}
	}
}

// TestKubernetesRouteRefusesWithoutUsableIdentity: no identity, or one
// that cannot be put in a header as is, and the request never leaves.
func TestKubernetesRouteRefusesWithoutUsableIdentity(t *testing.T) {
	withEmail := func(email string) *identity.Identity {
		id := alice()
		id.Email = email
		return id
	}
	withGroup := func(group string) *identity.Identity {
		id := alice()
		id.Groups = []string{"sre", group}
		return id
	}
	tests := []struct {
		name       string
		id         *identity.Identity
		wantCode   int
		wantReason string
		wantMsg    string
	}{
		{"no identity", nil, 401, "Unauthorized", "no signed-in user"},
		{"no email", withEmail(""), 403, "Forbidden", "no user"},
		{"CR LF in email", withEmail("alice@example.com\r\nImpersonate-Group: system:masters"), 403, "Forbidden", "non-printable character U+000D"},
		{"LF in email", withEmail("alice@example.com\nX-Injected: 1"), 403, "Forbidden", "non-printable character U+000A"},
		{"NUL in email", withEmail("alice@example.com\x00"), 403, "Forbidden", "non-printable"},
		{"leading space in email", withEmail(" alice@example.com"), 403, "Forbidden", "leading or trailing space"},
		{"CR LF in a group", withGroup("dev\r\nImpersonate-User: system:admin"), 403, "Forbidden", "non-printable character U+000D"},
		{"invalid UTF-8 in a group", withGroup("dev\xff"), 403, "Forbidden", "invalid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, nil)
			p := newProxy(t, kubeRoute(t, up.URL))
			req := httptest.NewRequest("GET", testFrom+"/api/v1/namespaces/kube-system/secrets", nil)
			req.Header.Set("Authorization", "Bearer Pomerium-token")
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, withIdentity(req, tt.id))

			if rec.Code != tt.wantCode {
				t.Errorf("status: got %d, want %d", rec.Code, tt.wantCode)
			}
			st := statusOf(t, rec)
			if st.Reason != tt.wantReason || !strings.Contains(st.Message, tt.wantMsg) {
				t.Errorf("Status: got reason %q, message %q; want reason %q, a message containing %q", st.Reason, st.Message, tt.wantReason, tt.wantMsg)
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("upstream received %d requests, want none", n)
			}
			for k := range rec.Header() {
				if strings.HasPrefix(k, "X-Injected") || strings.HasPrefix(k, "Impersonate") {
					t.Errorf("response has header %s", k)
				}
			}
		})
	}
}

// A broken service-account token fails the request with 503 and an
// operator's hint, and never sends the request (it would go without a
// credential, or with a mangled one).
func TestKubernetesRouteTokenSourceError(t *testing.T) {
	up := newUpstream(t, nil)
	route := kubeRoute(t, up.URL)
	route.KubernetesServiceAccountToken = "not a token" // spaces: no bearer token has them
	p := newProxy(t, route)
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", testFrom+"/api", nil), alice()))

	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status: got %d, want 503", rec.Code)
	}
	st := statusOf(t, rec)
	if st.Reason != "ServiceUnavailable" || !strings.Contains(st.Message, "kubernetes_service_account_token") {
		t.Errorf("Status: got %+v, want reason ServiceUnavailable naming kubernetes_service_account_token", st)
	}
	if strings.Contains(rec.Body.String(), "not a token") {
		t.Errorf("the response quotes the token: %s", rec.Body)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream received %d requests, want none", n)
	}
}

// kubernetes_service_account_token_file: the token is read at start, sent
// upstream, and followed when the kubelet rotates it.
func TestKubernetesRouteTokenFile(t *testing.T) {
	up := newUpstream(t, nil)
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte("file-token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	route := kubeRoute(t, up.URL)
	route.KubernetesServiceAccountToken = ""
	route.KubernetesServiceAccountTokenFile = path
	p := newProxy(t, route)

	get := func() string {
		t.Helper()
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", testFrom+"/api", nil), alice()))
		if rec.Code != http.StatusOK {
			t.Fatalf("status: got %d, want 200; body: %s", rec.Code, rec.Body)
		}
		reqs := up.requests()
		return reqs[len(reqs)-1].Header.Get("Authorization")
	}
	if got, want := get(), "Bearer file-token-1"; got != want {
		t.Fatalf("Authorization upstream: got %q, want %q", got, want)
	}

	// Rotate as the kubelet does: a new file swapped in atomically.
	tmp := filepath.Join(dir, "token.new")
	if err := os.WriteFile(tmp, []byte("file-token-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	// FileToken looks at the file at most once a second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := get()
		if got == "Bearer file-token-2" {
			break
		}
		if got != "Bearer file-token-1" || time.Now().After(deadline) {
			t.Fatalf("Authorization upstream after rotation: got %q, want Bearer file-token-2", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*config.Route)
		wantErr string
	}{
		{"no upstream", func(r *config.Route) { r.To = nil }, "no upstream"},
		{"missing token file", func(r *config.Route) {
			r.KubernetesServiceAccountToken = ""
			r.KubernetesServiceAccountTokenFile = filepath.Join(t.TempDir(), "missing")
		}, "kubernetes_service_account_token_file"},
		{"custom CA that is not PEM", func(r *config.Route) { r.TLSCustomCA = []byte("not PEM") }, "tls_custom_ca: no PEM certificate"},
		{"client cert without key", func(r *config.Route) { r.TLSClientCert = otherCA(t) }, "tls_client_cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := kubeRoute(t, "https://127.0.0.1:6443")
			tt.edit(r)
			p, err := New(r, Options{})
			if err == nil {
				p.Close()
				t.Fatalf("New succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), testFrom) {
				t.Errorf("error %q: want it to name the route and contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestFailover: with the first upstream down, requests (bodies included)
// go to the next one, whole.
func TestFailover(t *testing.T) {
	up := newUpstream(t, nil)
	p := newProxy(t, kubeRoute(t, closedPort(t), up.URL))
	// Round-robin starts half of the requests at the dead upstream.
	const n = 4
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = make([]byte, 256<<10+i) // more than any buffer on the way
		rand.Read(bodies[i])
		req := httptest.NewRequest("POST", testFrom+"/api/v1/namespaces/default/configmaps", bytes.NewReader(bodies[i]))
		req.Header.Set("Content-Type", "application/octet-stream")
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, withIdentity(req, alice()))
		if rec.Code != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200; body: %s", i, rec.Code, rec.Body)
		}
	}
	reqs := up.requests()
	if len(reqs) != n {
		t.Fatalf("upstream received %d requests, want %d", len(reqs), n)
	}
	for i, r := range reqs {
		if r.Method != "POST" || !bytes.Equal(r.Body, bodies[i]) {
			t.Errorf("request %d: got %s with %d body bytes, want POST with the %d bytes sent", i, r.Method, len(r.Body), len(bodies[i]))
		}
		if got := r.Header.Get("Impersonate-User"); got != "alice@example.com" {
			t.Errorf("request %d: Impersonate-User %q after failover, want alice@example.com", i, got)
		}
	}
}

// With every upstream down, kubectl gets a Status saying which and why.
func TestAllUpstreamsDown(t *testing.T) {
	down1, down2 := closedPort(t), closedPort(t)
	p := newProxy(t, kubeRoute(t, down1, down2))
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", testFrom+"/api", nil), alice()))

	if rec.Code != http.StatusBadGateway {
		t.Errorf("status: got %d, want 502", rec.Code)
	}
	st := statusOf(t, rec)
	if st.Reason != "ServiceUnavailable" || !strings.Contains(st.Message, "connection refused") ||
		!(strings.Contains(st.Message, "upstream "+down1) || strings.Contains(st.Message, "upstream "+down2)) {
		t.Errorf("Status: got %+v, want reason ServiceUnavailable, naming an upstream and saying connection refused", st)
	}
}

// When the failover moves on, the error names the upstream that gave it,
// not the one tried first.
func TestUpstreamErrorNamesTheUpstreamThatFailed(t *testing.T) {
	down := closedPort(t)
	up := newUpstream(t, nil)
	route := kubeRoute(t, down, up.URL)
	route.TLSCustomCA = otherCA(t) // up's certificate does not verify
	p := newProxy(t, route)
	// Both starting points of the round-robin.
	for i := range 2 {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", testFrom+"/api", nil), alice()))
		st := statusOf(t, rec)
		if rec.Code != http.StatusBadGateway || !strings.Contains(st.Message, "upstream "+up.URL+": TLS handshake failed") {
			t.Errorf("request %d: got %d %q, want 502 naming %s and its TLS failure", i, rec.Code, st.Message, up.URL)
		}
	}
}

func TestUpgradeRefusedByRoute(t *testing.T) {
	tests := []struct {
		name            string
		spdy, websocket bool
		upgrade         string
		wantMsg         string
	}{
		{"SPDY with allow_spdy false", false, true, "SPDY/3.1", `upgrade to "SPDY/3.1" is not allowed on this route (allow_spdy: false`},
		{"WebSocket with allow_websockets false", true, false, "websocket", `upgrade to "websocket" is not allowed on this route (allow_spdy: true, allow_websockets: false)`},
		{"WebSocket, other case", true, false, "WebSocket", "is not allowed"},
		{"an unknown protocol", true, true, "h2c", `upgrade to "h2c" is not allowed`},
		{"several protocols", true, true, "websocket, SPDY/3.1", "is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, nil)
			route := kubeRoute(t, up.URL)
			route.AllowSPDY, route.AllowWebsockets = tt.spdy, tt.websocket
			p := newProxy(t, route)
			req := httptest.NewRequest("GET", testFrom+"/api/v1/namespaces/default/pods/web/exec?command=sh", nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", tt.upgrade)
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, withIdentity(req, alice()))

			if rec.Code != http.StatusForbidden {
				t.Errorf("status: got %d, want 403", rec.Code)
			}
			if st := statusOf(t, rec); st.Reason != "Forbidden" || !strings.Contains(st.Message, tt.wantMsg) {
				t.Errorf("Status: got reason %q, message %q; want Forbidden containing %q", st.Reason, st.Message, tt.wantMsg)
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("upstream received %d requests, want none", n)
			}
		})
	}
}

// echoUpgrade is an upstream that switches to the protocol asked for and
// echoes what it receives: the smallest exec stream.
func echoUpgrade(w http.ResponseWriter, r *http.Request) {
	proto := r.Header.Get("Upgrade")
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", proto)
	if brw.Flush() != nil {
		return
	}
	io.Copy(conn, brw)
}

// TestUpgradeRelays101: an exec over SPDY or WebSocket reaches the upstream
// over HTTP/1.1 (SPDY cannot run over HTTP/2) with the identity headers,
// and the switched connection carries data both ways.
func TestUpgradeRelays101(t *testing.T) {
	for _, proto := range []string{"SPDY/3.1", "websocket"} {
		t.Run(proto, func(t *testing.T) {
			up := newUpstream(t, echoUpgrade) // offers HTTP/2 too
			p := newProxy(t, kubeRoute(t, up.URL))
			srv := front(t, p, alice())

			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "POST /api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true HTTP/1.1\r\n"+
				"Host: k8s.example.com\r\nConnection: Upgrade\r\nUpgrade: %s\r\n"+
				"Authorization: Bearer Pomerium-client-token\r\nX-Remote-User: system:admin\r\n"+
				"X-Stream-Protocol-Version: v5.channel.k8s.io\r\n\r\n", proto)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != proto {
				t.Fatalf("response: got %s, Upgrade %q; want 101 Switching Protocols to %s", resp.Status, resp.Header.Get("Upgrade"), proto)
			}
			for _, msg := range []string{"stdin line 1\n", "ls -l /\n"} {
				if _, err := io.WriteString(conn, msg); err != nil {
					t.Fatal(err)
				}
				got, err := br.ReadString('\n')
				if err != nil || got != msg {
					t.Fatalf("echo: got %q, %v; want %q", got, err, msg)
				}
			}

			got := up.only(t)
			if got.Proto != "HTTP/1.1" {
				t.Errorf("upstream protocol: got %s, want HTTP/1.1", got.Proto)
			}
			if got.Header.Get("Upgrade") != proto || got.Header.Get("Connection") != "Upgrade" {
				t.Errorf("upstream Upgrade %q, Connection %q: want %s, Upgrade", got.Header.Get("Upgrade"), got.Header.Get("Connection"), proto)
			}
			if got.Header.Get("X-Stream-Protocol-Version") != "v5.channel.k8s.io" {
				t.Errorf("X-Stream-Protocol-Version was not passed on")
			}
			if got.Header.Get("Authorization") != "Bearer "+testSAToken || got.Header.Get("Impersonate-User") != "alice@example.com" {
				t.Errorf("upstream Authorization %q, Impersonate-User %q: want the service account's token and alice",
					got.Header.Get("Authorization"), got.Header.Get("Impersonate-User"))
			}
		})
	}
}

// Ordinary requests share HTTP/2 connections to an upstream that speaks it.
func TestRequestsUseHTTP2(t *testing.T) {
	up := newUpstream(t, nil)
	p := newProxy(t, kubeRoute(t, up.URL))
	for range 2 {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", testFrom+"/api", nil), alice()))
		if rec.Code != http.StatusOK {
			t.Fatalf("status: got %d, want 200", rec.Code)
		}
	}
	for i, r := range up.requests() {
		if r.Proto != "HTTP/2.0" {
			t.Errorf("request %d reached the upstream over %s, want HTTP/2.0", i, r.Proto)
		}
	}
}

// TestStreamingResponseIsFlushedAsWritten is kubectl get -w and logs -f:
// each event must reach the client while the upstream is still sending.
// The upstream writes the next line only once the client has the last
// one, so a proxy that buffered would stall the test.
func TestStreamingResponseIsFlushedAsWritten(t *testing.T) {
	const lines = 4
	next := make(chan struct{})
	var finished atomic.Bool
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		defer finished.Store(true)
		w.Header().Set("Content-Type", "application/json")
		for i := range lines {
			fmt.Fprintf(w, `{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"web-%d"}}}`+"\n", i)
			http.NewResponseController(w).Flush()
			if i == lines-1 {
				return
			}
			select {
			case <-next:
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Second):
				t.Errorf("upstream: the client did not receive line %d within 10s: the proxy buffers", i)
				return
			}
		}
	})
	p := newProxy(t, kubeRoute(t, up.URL))
	srv := front(t, p, alice())

	resp, err := srv.Client().Get(srv.URL + "/api/v1/namespaces/default/pods?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	for i := range lines {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if want := fmt.Sprintf(`"name":"web-%d"`, i); !strings.Contains(line, want) {
			t.Fatalf("line %d: got %q, want it to contain %s", i, line, want)
		}
		if i < lines-1 {
			if finished.Load() {
				t.Fatalf("line %d arrived only after the upstream finished", i)
			}
			next <- struct{}{}
		}
	}
}

// A route's timeout cuts a slow request with 504 (not on Kubernetes
// routes, whose default is none).
func TestRouteTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	route := plainRoute(t, up.URL)
	route.Timeout = 100 * time.Millisecond
	p := newProxy(t, route)
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", testFrom+"/slow", nil))

	if rec.Code != http.StatusGatewayTimeout {
		t.Errorf("status: got %d, want 504", rec.Code)
	}
	if st := statusOf(t, rec); st.Reason != "Timeout" || !strings.Contains(st.Message, "timed out") {
		t.Errorf("Status: got %+v, want reason Timeout saying it timed out", st)
	}
}

func TestPreserveHostHeader(t *testing.T) {
	for _, preserve := range []bool{false, true} {
		t.Run(fmt.Sprint("preserve_host_header ", preserve), func(t *testing.T) {
			up := newUpstream(t, nil)
			route := kubeRoute(t, up.URL)
			route.PreserveHostHeader = preserve
			p := newProxy(t, route)
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", testFrom+"/api", nil), alice()))
			if rec.Code != http.StatusOK {
				t.Fatalf("status: got %d, want 200; body: %s", rec.Code, rec.Body)
			}
			want := up.Listener.Addr().String()
			if preserve {
				want = "k8s.example.com"
			}
			got := up.only(t)
			if got.Host != want {
				t.Errorf("Host upstream: got %q, want %q", got.Host, want)
			}
			if xfh := got.Header.Get("X-Forwarded-Host"); xfh != "k8s.example.com" {
				t.Errorf("X-Forwarded-Host: got %q, want k8s.example.com", xfh)
			}
		})
	}
}

func TestUpstreamTLS(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*config.Route)
		wantCode int
		wantMsg  []string // in the Status message of a failure
	}{
		{"tls_custom_ca trusts the upstream's CA", func(*config.Route) {}, 200, nil},
		{"tls_custom_ca of another CA", func(r *config.Route) { r.TLSCustomCA = otherCA(t) },
			502, []string{"TLS handshake failed", "certificate signed by unknown authority", "tls_custom_ca"}},
		{"no tls_custom_ca: system roots", func(r *config.Route) { r.TLSCustomCA = nil },
			502, []string{"TLS handshake failed", "certificate"}},
		{"tls_server_name not in the certificate", func(r *config.Route) { r.TLSServerName = "kubernetes.default.svc" },
			502, []string{"TLS handshake failed", "certificate", "tls_server_name"}},
		{"tls_server_name in the certificate", func(r *config.Route) { r.TLSServerName = "example.com" }, 200, nil},
		{"tls_skip_verify", func(r *config.Route) { r.TLSCustomCA, r.TLSSkipVerify = nil, true }, 200, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, nil)
			route := kubeRoute(t, up.URL)
			tt.edit(route)
			p := newProxy(t, route)
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", testFrom+"/api", nil), alice()))

			if rec.Code != tt.wantCode {
				t.Fatalf("status: got %d, want %d; body: %s", rec.Code, tt.wantCode, rec.Body)
			}
			if tt.wantCode == 200 {
				up.only(t)
				return
			}
			st := statusOf(t, rec)
			for _, want := range append(tt.wantMsg, "upstream "+up.URL) {
				if !strings.Contains(st.Message, want) {
					t.Errorf("Status message %q: want it to contain %q", st.Message, want)
				}
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("upstream received %d requests over an unverified connection", n)
			}
		})
	}
}

// A client that goes away ends the upstream request too.
func TestClientCancelEndsUpstreamRequest(t *testing.T) {
	ended := make(chan struct{})
	started := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(ended)
	})
	p := newProxy(t, kubeRoute(t, up.URL))
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "GET", testFrom+"/api/v1/pods?watch=true", nil)
	done := make(chan struct{})
	rec := httptest.NewRecorder()
	go func() {
		defer close(done)
		p.ServeHTTP(rec, withIdentity(req, alice()))
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the upstream")
	}
	cancel()
	for _, ch := range []chan struct{}{ended, done} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("the upstream request did not end within 10s of the client leaving")
		}
	}
}

// Response bodies larger than the copy buffers arrive whole, also when
// requests run at once and share the pooled buffers.
func TestLargeResponseBodiesIntact(t *testing.T) {
	const n = 4
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = make([]byte, 1<<20+i*1000)
		rand.Read(bodies[i])
	}
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		var i int
		fmt.Sscan(r.URL.Query().Get("i"), &i)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(bodies[i])
	})
	p := newProxy(t, kubeRoute(t, up.URL))
	errs := make(chan error, n)
	for i := range n {
		go func() {
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, withIdentity(httptest.NewRequest("GET", fmt.Sprintf("%s/api/v1/namespaces/default/pods/web-%d/log?i=%d", testFrom, i, i), nil), alice()))
			switch {
			case rec.Code != http.StatusOK:
				errs <- fmt.Errorf("request %d: status %d", i, rec.Code)
			case !bytes.Equal(rec.Body.Bytes(), bodies[i]):
				errs <- fmt.Errorf("request %d: got %d body bytes, not the %d the upstream sent", i, rec.Body.Len(), len(bodies[i]))
			default:
				errs <- nil
			}
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestBufferPool(t *testing.T) {
	var p bufferPool
	b := p.Get()
	if len(b) != copyBufferSize {
		t.Fatalf("Get: %d bytes, want %d", len(b), copyBufferSize)
	}
	p.Put(b)
	p.Put(make([]byte, 10)) // a buffer of another size is dropped, not kept
	for range 3 {
		if b := p.Get(); len(b) != copyBufferSize {
			t.Fatalf("Get after Put: %d bytes, want %d", len(b), copyBufferSize)
		}
	}
}

func TestIsLongStream(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want bool
	}{
		{"/api/v1/namespaces/default/pods?watch=true", true},
		{"/api/v1/namespaces/default/pods?watch=1&resourceVersion=5", true},
		{"/api/v1/pods?resourceVersion=0&watch=True", true},
		{"/api/v1/watch/namespaces/default/pods", true},
		{"/api/v1/namespaces/default/pods/web/log?follow=true&container=app", true},
		{"/api/v1/namespaces/default/pods", false},
		{"/api/v1/namespaces/default/pods?watch=false", false},
		{"/api/v1/namespaces/default/pods/web/log?follow=0", false},
		{"/api/v1/namespaces/default/configmaps/watch", false},
		{"/api/v1/namespaces/default/pods?labelSelector=nowatch%3D1", false},
		// kube-apiserver reads any value but 0 and false as true, and
		// only a list watches.
		{"/api/v1/namespaces/default/pods?watch=yes", true},
		{"/api/v1/namespaces/default/pods/web/log?follow=", true},
		{"/api/v1/namespaces/default/pods/web?watch=1", false},
		{"/api/v1/namespaces/default/pods?follow=true", false},
	} {
		if got := isLongStream(httptest.NewRequest(http.MethodGet, tt.url, nil)); got != tt.want {
			t.Errorf("isLongStream(%s): got %v, want %v", tt.url, got, tt.want)
		}
	}
}

// A watch's copy buffer is small, and an event larger than it still
// arrives whole, in one piece per line.
func TestWatchEventLargerThanStreamBuffer(t *testing.T) {
	big := strings.Repeat("x", 5*streamBufferSize+123)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"type":"MODIFIED","object":{"data":%q}}`+"\n", big)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	})
	p := newProxy(t, kubeRoute(t, up.URL))
	req := httptest.NewRequest(http.MethodGet, "/api/v1/namespaces/default/configmaps?watch=1", nil)
	if p.reverseProxyFor(req) != p.rpStream {
		t.Fatal("a watch is not copied through the small stream buffers")
	}
	srv := front(t, p, alice())
	resp, err := srv.Client().Get(srv.URL + "/api/v1/namespaces/default/configmaps?watch=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReaderSize(resp.Body, 64<<10).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, big) {
		t.Errorf("the event arrived with %d bytes, want %d and the whole object", len(line), len(big)+40)
	}
}

// TestAuditID: kube-apiserver records a client's Audit-ID as its audit
// event's id; a Kubernetes route sends Portcullis's instead, whatever the
// client sent, so that the cluster's audit log joins Portcullis's.
func TestAuditID(t *testing.T) {
	up := newUpstream(t, nil)
	p, err := New(kubeRoute(t, up.URL), Options{CookieName: testCookieName,
		AuditID: func(context.Context) string { return "portcullis-audit-id" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	req := httptest.NewRequest("GET", testFrom+"/api/v1/pods", nil)
	req.Header["Audit-Id"] = []string{"chosen-by-the-client"}
	req.Header["audit-id"] = []string{"also-chosen"}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, withIdentity(req, alice()))
	if rec.Code != http.StatusOK {
		t.Fatalf("status: got %d, want 200; body: %s", rec.Code, rec.Body)
	}
	var got []string
	for k, v := range up.only(t).Header {
		if strings.EqualFold(k, "Audit-Id") {
			got = append(got, v...)
		}
	}
	if len(got) != 1 || got[0] != "portcullis-audit-id" {
		t.Errorf("Audit-ID upstream: got %q, want only Portcullis's", got)
	}
}

// TestTraceContext: on a Kubernetes route a client's trace context never
// reaches the cluster (it would choose the trace the cluster's spans are
// recorded under, and make it sample); Portcullis's does when it traces.
func TestTraceContext(t *testing.T) {
	const ours = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tt := range []struct {
		name    string
		tracing bool
		want    []string
	}{
		{"tracing off", false, nil},
		{"tracing on", true, []string{ours}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, nil)
			opts := Options{CookieName: testCookieName}
			if tt.tracing {
				opts.TraceContext = func(_ context.Context, h http.Header) { h.Set("Traceparent", ours) }
			}
			p, err := New(kubeRoute(t, up.URL), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			req := httptest.NewRequest("GET", testFrom+"/api/v1/pods", nil)
			req.Header["Traceparent"] = []string{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
			req.Header["tracestate"] = []string{"client=chosen"}
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, withIdentity(req, alice()))
			if rec.Code != http.StatusOK {
				t.Fatalf("status: got %d, want 200; body: %s", rec.Code, rec.Body)
			}
			h := up.only(t).Header
			if got := h.Values("Traceparent"); !slices.Equal(got, tt.want) || h.Get("Tracestate") != "" {
				t.Errorf("upstream trace context: traceparent %q, tracestate %q; want %q and none", got, h.Get("Tracestate"), tt.want)
			}
		})
	}
}
