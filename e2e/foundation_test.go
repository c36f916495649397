package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestGuideFoundation follows the cluster side of the Kubernetes guide:
// apply the service account, its impersonation role and a user binding
// with kubectl, get the service account a token from the TokenRequest API,
// check with kubectl that the token may impersonate and that the user is
// bound, then start the real portcullis binary with that token in its route
// and check its health and metrics endpoints over TLS, and that the
// cluster's own health and version endpoints answer through it.
func TestGuideFoundation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cluster := testenv.NewCluster(t)

	kubectl := func(args ...string) string {
		t.Helper()
		out, _, err := cluster.Kubectl(ctx, nil, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	kubectl("apply", "-f", "../deploy/kubernetes/service-account.yaml")
	kubectl("apply", "-f", "../deploy/kubernetes/user-binding.yaml")

	saToken, err := cluster.CreateToken(ctx, "default", "portcullis", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// What the service account may do, asked as the service account itself.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"impersonate users", []string{"auth", "can-i", "impersonate", "users"}, "yes"},
		{"impersonate groups", []string{"auth", "can-i", "impersonate", "groups"}, "yes"},
		{"nothing else", []string{"auth", "can-i", "list", "secrets", "--all-namespaces"}, "no"},
		{"someuser is cluster-admin", []string{"auth", "can-i", "*", "*", "--as", "someuser@example.com"}, "yes"},
		{"another user is not", []string{"auth", "can-i", "get", "pods", "--as", "other@example.com"}, "no"},
		{"whoami as someuser", []string{"auth", "whoami", "--as", "someuser@example.com", "-o", "jsonpath={.status.userInfo.username}"}, "someuser@example.com"},
	} {
		t.Run("service account "+tc.name, func(t *testing.T) {
			// kubectl auth can-i exits 1 when the answer is no.
			out, _, _ := cluster.Kubectl(ctx, nil, append([]string{"--token", saToken}, tc.args...)...)
			if got := strings.TrimSpace(out); got != tc.want {
				t.Errorf("kubectl %s: got %q, want %q", strings.Join(tc.args, " "), got, tc.want)
			}
		})
	}

	// Portcullis, configured the way the guide configures it: environment
	// variables, base64 certificate and policy, the token in the route.
	ca, err := testenv.NewCA("portcullis-e2e")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("portcullis", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	routeURL := fmt.Sprintf("https://127.0.0.1:%d", port)
	authURL := fmt.Sprintf("https://localhost:%d", port)
	sharedSecret := random(32)
	policy := fmt.Sprintf(`- from: %s
  to: %s
  tls_custom_ca: %s
  allow_spdy: true
  policy:
    - allow:
        or:
          - email:
              is: someuser@example.com
  kubernetes_service_account_token: %q
`, routeURL, cluster.URL, b64(cluster.CA.CertPEM), saToken)
	env := []string{
		"ADDRESS=127.0.0.1:" + strconv.Itoa(port),
		"AUTHENTICATE_SERVICE_URL=" + authURL,
		"CERTIFICATE=" + b64(certPEM),
		"CERTIFICATE_KEY=" + b64(keyPEM),
		"COOKIE_SECRET=" + b64(random(32)),
		"SHARED_SECRET=" + b64(sharedSecret),
		"IDP_PROVIDER=oidc",
		"IDP_PROVIDER_URL=http://127.0.0.1:1/",
		"IDP_CLIENT_ID=portcullis",
		"IDP_CLIENT_SECRET=unused",
		"POLICY=" + b64([]byte(policy)),
		"METRICS_ADDRESS=127.0.0.1:" + strconv.Itoa(metricsPort),
		"LOG_LEVEL=debug",
	}
	dir := t.TempDir()
	bin, err := testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/cmd/portcullis", dir)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("check-config accepts the guide's configuration", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, bin, "--check-config")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("portcullis --check-config: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), routeURL) {
			t.Errorf("check-config summary: got %q, want it to name the route %s", out, routeURL)
		}
		if strings.Contains(string(out), saToken) {
			t.Errorf("check-config summary prints the service-account token")
		}
		for _, want := range []string{"limits:", "not checked: reaching the identity provider"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("check-config summary: got %q, want it to say %q", out, want)
			}
		}
	})

	// Ready when Portcullis's own readiness says so: on a Kubernetes route
	// /healthz is the cluster's, and needs a token.
	srv := testenv.StartServer(t, "portcullis", bin, dir, nil, env, routeURL+"/.pomerium/healthz", ca.ClientTLS())

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS(), ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	get := func(url string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := get(routeURL + "/ping")
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" {
		t.Errorf("GET /ping: got %s over %s (%q), want 200 over HTTP/2.0", resp.Status, resp.Proto, body)
	}
	resp, body = get(routeURL + "/.pomerium/healthz")
	if resp.StatusCode != http.StatusOK || body != `{"status":"ready"}`+"\n" {
		t.Errorf("GET /.pomerium/healthz: got %s (%q), want 200 ready", resp.Status, body)
	}
	// The route is a Kubernetes route: its /healthz is kube-apiserver's,
	// behind authentication like the rest of the API.
	resp, body = get(routeURL + "/healthz")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"kind":"Status"`) {
		t.Errorf("GET /healthz on the Kubernetes route without a token: got %s (%q), want a 401 Status", resp.Status, body)
	}
	// HTTP/1.1 must keep working for kubectl's SPDY upgrades.
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	if r, err := h1.Get(routeURL + "/ping"); err != nil || r.Proto != "HTTP/1.1" {
		t.Errorf("GET /ping over HTTP/1.1: got %v, %v", r, err)
	} else {
		r.Body.Close()
	}
	resp, body = get(fmt.Sprintf("https://localhost:%d/ping", port))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ping on the authenticate host: got %s (%q), want 200", resp.Status, body)
	}
	resp, body = get(fmt.Sprintf("https://localhost:%d/healthz", port))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz on the authenticate host: got %s (%q), want 200", resp.Status, body)
	}
	resp, body = get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "portcullis_http_requests_total") {
		t.Errorf("GET /metrics: got %s, want 200 with portcullis_http_requests_total; body starts %q", resp.Status, head(body, 300))
	}
	// The same health on the metrics port, for probes that use it. (The
	// Helm chart's, and deploy/kubernetes/portcullis.yaml's, are /ping and
	// /.pomerium/healthz on the main port, checked above.)
	for _, path := range []string{"/ping", "/healthz", "/readyz"} {
		resp, body = get(fmt.Sprintf("http://127.0.0.1:%d%s", metricsPort, path))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s on the metrics listener: got %s (%q), want 200", path, resp.Status, body)
		}
	}

	t.Run("the cluster's own health and version through kubectl", func(t *testing.T) {
		keys, err := session.NewKeys(nil, sharedSecret, authURL)
		if err != nil {
			t.Fatal(err)
		}
		jwt, err := keys.Issue(session.Claims{Subject: "sub-someuser", Email: "someuser@example.com",
			Audience: fmt.Sprintf("127.0.0.1:%d", port), Expiry: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		kubeconfig := writeKubeconfig(t, routeURL, ca.CertPEM, jwt)
		raw := func(path string) string {
			t.Helper()
			out, _, err := cluster.Kubectl(ctx, nil, "--kubeconfig", kubeconfig, "get", "--raw", path)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		// kube-apiserver's checks, not Portcullis's answer.
		for path, want := range map[string][]string{
			"/readyz?verbose":  {"[+]etcd ok", "readyz check passed"},
			"/livez?verbose":   {"[+]ping ok", "livez check passed"},
			"/healthz?verbose": {"[+]etcd ok", "healthz check passed"},
			"/readyz/etcd":     {"ok"},
		} {
			out := raw(path)
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("kubectl get --raw %s: got %q, want it to contain %q", path, head(out, 500), w)
				}
			}
		}
		var version struct {
			GitVersion string `json:"gitVersion"`
		}
		if out := raw("/version"); json.Unmarshal([]byte(out), &version) != nil || version.GitVersion != "v1.37.2" {
			t.Errorf("kubectl get --raw /version: got %q, want the API server's gitVersion v1.37.2", head(out, 300))
		}
	})

	// The server stops cleanly on SIGTERM, and never logged the token.
	srv.Stop(15 * time.Second)
	if exited, err := srv.Exited(); !exited || err != nil {
		t.Errorf("portcullis after SIGTERM: exited=%v err=%v, want a clean exit", exited, err)
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "portcullis.log"))
	if strings.Contains(string(logs), saToken) {
		t.Errorf("portcullis logged the service-account token")
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func head(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
