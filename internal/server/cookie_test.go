package server

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// browserStack is a Server with the built-in provider, a Kubernetes route
// (k8s.test) and a browser application route (app.test), both in front of
// one upstream that answers every request (a WebSocket upgrade with 101),
// and a browser signed in on both routes. All host names reach the one
// listener; none needs DNS.
type browserStack struct {
	browser  *testenv.Browser
	upstream *httptest.Server
	upgrades chan string // the path of each upgrade the upstream received
	token    string      // a Portcullis token for k8s.test of the same person
}

func newBrowserStack(t *testing.T, editK8s ...func(*config.Route)) *browserStack {
	t.Helper()
	ca, err := testenv.NewCA("portcullis-cookie-test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("portcullis", "k8s.test", "app.test", "auth.test")
	if err != nil {
		t.Fatal(err)
	}
	st := &browserStack{upgrades: make(chan string, 10)}
	st.upstream = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			st.upgrades <- r.URL.Path
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.Header.Get("Upgrade"))
			brw.Flush()
			return
		}
		fmt.Fprintf(w, "upstream %s as %q", r.URL.Path, r.Header.Get("Impersonate-User"))
	}))
	t.Cleanup(st.upstream.Close)
	upstreamCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: st.upstream.Certificate().Raw})

	hash, err := builtin.HashPassword("a long test password")
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users.yaml")
	if err := os.WriteFile(users, []byte("- email: someone@example.com\n  password_hash: "+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	route := func(from string, kubernetes bool) config.Route {
		r := config.Route{From: mustURL(t, from), To: []*url.URL{mustURL(t, st.upstream.URL)}, TLSCustomCA: upstreamCA,
			AllowAnyAuthenticatedUser: true, AllowWebsockets: true}
		if kubernetes {
			r.KubernetesServiceAccountToken = "sa-token"
			r.AllowSPDY = true
		}
		return r
	}
	opts := testOptions(func(o *config.Options) {
		o.Certificate, o.CertificateKey = certPEM, keyPEM
		o.AuthenticateServiceURL = mustURL(t, "https://auth.test")
		o.IDPProvider, o.IDPUsersFile = "builtin", users
		o.Routes = []config.Route{route("https://k8s.test", true), route("https://app.test", false)}
		for _, edit := range editK8s {
			edit(&o.Routes[0])
		}
	})
	logger, _ := testLogger(t)
	s, err := New(opts, logger)
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s, false)
	addr := strings.TrimPrefix(ts.url, "https://")
	st.browser = testenv.NewBrowser(&tls.Config{RootCAs: ca.Pool()})
	// Every host name is this server.
	st.browser.Client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	t.Cleanup(st.browser.Client.CloseIdleConnections)
	for _, host := range []string{"k8s.test", "app.test"} {
		final, page, err := st.browser.SignIn(t.Context(), "https://"+host+"/.pomerium/", "someone@example.com", "a long test password", "")
		if err != nil || final.Host != host || !strings.Contains(page, "someone@example.com") {
			t.Fatalf("signing in on %s: ended at %v: %v\n%s", host, final, err, page)
		}
	}
	// A token of the same person, as portcullis-cli gets one.
	cb := "http://127.0.0.1:1/cli"
	login := st.get(t, "https://k8s.test/.pomerium/api/v1/login?pomerium_redirect_uri="+url.QueryEscape(cb), nil)
	final, _, err := st.browser.SignIn(t.Context(), login.body, "someone@example.com", "a long test password", cb)
	if err != nil {
		t.Fatal(err)
	}
	st.token = final.Query().Get("pomerium_jwt")
	return st
}

type answer struct {
	code int
	body string
}

// get sends GET target from the signed-in browser, with header.
func (st *browserStack) get(t *testing.T, target string, header http.Header) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := st.browser.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b)}
}

// TestBrowserSessionNeverOpensTheKubernetesAPI: a signed-in browser's
// cookie opens Portcullis's own pages on a Kubernetes route, and nothing
// of the API, however the request is dressed; kubectl's token does.
func TestBrowserSessionNeverOpensTheKubernetesAPI(t *testing.T) {
	st := newBrowserStack(t)
	if a := st.get(t, "https://k8s.test/.pomerium/", http.Header{"Accept": {"application/json"}}); a.code != http.StatusOK || !strings.Contains(a.body, "someone@example.com") {
		t.Fatalf("who am I with the cookie: got %d %q, want the person", a.code, a.body)
	}
	for _, tt := range []struct {
		name   string
		path   string
		header http.Header
		want   string
	}{
		{"a browser opening the API", "/api/v1/namespaces/kube-system/secrets", http.Header{"Accept": {"text/html"}}, "Use kubectl for this cluster"},
		{"a page's fetch", "/api/v1/namespaces/kube-system/secrets", http.Header{"Accept": {"*/*"}, "Sec-Fetch-Site": {"same-origin"}}, "session cookie does not open the Kubernetes API"},
		{"a pod's page through the proxy subresource", "/api/v1/namespaces/dev/pods/web:8080/proxy/", http.Header{"Accept": {"text/html"}}, "Use kubectl"},
		{"a WebSocket exec from the route's own origin", "/api/v1/namespaces/dev/pods/web/exec",
			http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Origin": {"https://k8s.test"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}, "session cookie does not open"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := st.get(t, "https://k8s.test"+tt.path, tt.header)
			if a.code != http.StatusUnauthorized || !strings.Contains(a.body, tt.want) || strings.Contains(a.body, "upstream") {
				t.Errorf("got %d %q, want 401 saying %q", a.code, a.body, tt.want)
			}
		})
	}
	select {
	case p := <-st.upgrades:
		t.Errorf("the upstream received an upgrade for %s", p)
	default:
	}
	a := st.get(t, "https://k8s.test/api/v1/namespaces", http.Header{"Authorization": {"Bearer Pomerium-" + st.token}})
	if a.code != http.StatusOK || a.body != `upstream /api/v1/namespaces as "someone@example.com"` {
		t.Errorf("with the token: got %d %q, want the upstream as the person", a.code, a.body)
	}
}

// TestCookieUpgradeChecksOrigin is the regression test of cross-site
// WebSocket hijacking on a browser application route: a page of another
// origin, a sibling host of the same site included, cannot open a
// WebSocket with the person's cookie; the route's own pages can.
func TestCookieUpgradeChecksOrigin(t *testing.T) {
	st := newBrowserStack(t)
	ws := func(origin string, header http.Header) answer {
		h := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		for k, v := range header {
			h[k] = v
		}
		return st.get(t, "https://app.test/socket", h)
	}
	for _, origin := range []string{"https://evil.example", "https://k8s.test", "https://auth.test", "http://app.test", "https://app.test:8443", "null", ""} {
		t.Run("origin "+origin, func(t *testing.T) {
			if a := ws(origin, nil); a.code != http.StatusForbidden {
				t.Errorf("got %d %q, want 403", a.code, a.body)
			}
		})
	}
	select {
	case p := <-st.upgrades:
		t.Fatalf("the upstream received an upgrade for %s", p)
	default:
	}
	for _, origin := range []string{"https://app.test", "https://APP.test", "https://app.test:443"} {
		if a := ws(origin, nil); a.code != http.StatusSwitchingProtocols {
			t.Errorf("origin %s: got %d %q, want 101", origin, a.code, a.body)
		}
		<-st.upgrades
	}
}
