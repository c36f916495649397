package stub

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// startStub serves a stub on loopback and returns its URL, its admin URL
// and a client that trusts it.
func startStub(t *testing.T) (string, string, *http.Client) {
	t.Helper()
	ca, err := testenv.NewCA("stub-test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("stub", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(cert, certPEM, 0o600)
	os.WriteFile(key, keyPEM, 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, New(Config{Token: "sa", User: "alice@example.com"}), ln, adminLn, cert, key)
	}()
	t.Cleanup(func() { cancel(); <-done })
	tlsConfig := ca.ClientTLS()
	tlsConfig.NextProtos = []string{"h2"}
	tr := &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return "https://" + ln.Addr().String(), "http://" + adminLn.Addr().String(), &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string, h map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func stats(t *testing.T, admin string) Stats {
	t.Helper()
	resp, err := http.Get(admin + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

var creds = map[string]string{"Authorization": "Bearer sa", "Impersonate-User": "alice@example.com"}

func TestStubAnswersLikeKubeAPIServer(t *testing.T) {
	url, admin, c := startStub(t)
	resp := get(t, c, url+"/api/v1/namespaces/default/configmaps/bench", creds)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("got %s over %s, want 200 over HTTP/2", resp.Status, resp.Proto)
	}
	var cm struct {
		Kind     string
		Metadata struct{ Name string }
	}
	if err := json.Unmarshal(body, &cm); err != nil || cm.Kind != "ConfigMap" || cm.Metadata.Name != "bench" {
		t.Errorf("body: got %.80q (%v), want a ConfigMap named bench", body, err)
	}
	if n := len(body); n < 900 || n > 1100 {
		t.Errorf("body: got %d bytes, want about 1 KB", n)
	}
	if st := stats(t, admin); st.Requests != 1 || st.BadAuth != 0 || st.NewConns != 1 {
		t.Errorf("stats: got %+v, want 1 request, 1 connection, no bad auth", st)
	}
}

// A request without the proxy's token or Impersonate-User is refused and
// counted: that is how the harness catches a contender that lets one by.
func TestStubRefusesMissingCredentials(t *testing.T) {
	url, admin, c := startStub(t)
	for _, h := range []map[string]string{
		nil,
		{"Authorization": "Bearer sa"},
		{"Authorization": "Bearer other", "Impersonate-User": "alice@example.com"},
		{"Authorization": "Bearer sa", "Impersonate-User": "mallory@example.com"},
	} {
		resp := get(t, c, url+"/api/v1/namespaces/default/configmaps/bench", h)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("headers %v: got %s, want 401", h, resp.Status)
		}
	}
	if st := stats(t, admin); st.BadAuth != 4 {
		t.Errorf("bad_auth: got %d, want 4", st.BadAuth)
	}
}

func TestStubWatchGetsBroadcastEvent(t *testing.T) {
	url, admin, c := startStub(t)
	resp := get(t, c, url+"/api/v1/namespaces/default/configmaps?watch=1", creds)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch: got %s, want 200", resp.Status)
	}
	if st := stats(t, admin); st.Watches != 1 {
		t.Fatalf("watches: got %d, want 1", st.Watches)
	}
	r, err := http.Post(admin+"/broadcast", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if strings.TrimSpace(string(n)) != "1" {
		t.Errorf("broadcast: got %q watches, want 1", n)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Type   string
		Object struct{ Kind string }
	}
	if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Type != "MODIFIED" || ev.Object.Kind != "ConfigMap" {
		t.Errorf("event: got %.80q (%v), want a MODIFIED ConfigMap", line, err)
	}
}
