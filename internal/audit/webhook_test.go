package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// webhookServer is an audit webhook on loopback TLS that records the
// EventLists it accepts. It answers 401 to a request without the bearer
// token, and 503 while down is set.
type webhookServer struct {
	*httptest.Server
	token string

	mu       sync.Mutex
	down     bool
	received []*Event
}

func newWebhookServer(t *testing.T, token string) *webhookServer {
	t.Helper()
	ws := &webhookServer{token: token}
	ws.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a POST of JSON", http.StatusBadRequest)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+ws.token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		ws.mu.Lock()
		down := ws.down
		ws.mu.Unlock()
		if down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		var list struct {
			Kind, APIVersion string
			Items            []*Event
		}
		if err := json.NewDecoder(r.Body).Decode(&list); err != nil || list.Kind != "EventList" || list.APIVersion != APIVersion {
			http.Error(w, "want an audit.k8s.io/v1 EventList", http.StatusBadRequest)
			return
		}
		ws.mu.Lock()
		ws.received = append(ws.received, list.Items...)
		ws.mu.Unlock()
	}))
	t.Cleanup(ws.Close)
	return ws
}

func (ws *webhookServer) setDown(down bool) {
	ws.mu.Lock()
	ws.down = down
	ws.mu.Unlock()
}

func (ws *webhookServer) events() []*Event {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return append([]*Event(nil), ws.received...)
}

// caPEM is the server's certificate, which signs itself, in PEM.
func (ws *webhookServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ws.Certificate().Raw})
}

// writeKubeconfig writes a kubeconfig for ws, with the CA and token inline,
// into a new directory and returns its path.
func (ws *webhookServer) writeKubeconfig(t *testing.T) string {
	t.Helper()
	return writeFiles(t, map[string]string{"kubeconfig": `apiVersion: v1
kind: Config
current-context: audit
clusters:
- name: other
  cluster: {server: "https://192.0.2.1:1"}
- name: webhook
  cluster:
    server: ` + ws.URL + `/audit
    certificate-authority-data: ` + base64.StdEncoding.EncodeToString(ws.caPEM()) + `
users:
- name: other
  user: {token: wrong}
- name: portcullis
  user:
    token: ` + ws.token + `
contexts:
- name: audit
  context: {cluster: webhook, user: portcullis}
`})
}

// writeFiles writes files into a new directory and returns the path of
// "kubeconfig" in it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "kubeconfig")
}

func TestWebhookSink(t *testing.T) {
	ws := newWebhookServer(t, "s3cret-token")
	tests := []struct {
		name       string
		kubeconfig string
	}{
		{"current context, inline CA and token", ws.writeKubeconfig(t)},
		{"first cluster and user, CA and token files relative to the kubeconfig", writeFiles(t, map[string]string{
			"ca.pem": string(ws.caPEM()),
			"token":  ws.token + "\n",
			"kubeconfig": `clusters:
- name: webhook
  cluster: {server: "` + ws.URL + `", certificate-authority: ca.pem}
users:
- name: portcullis
  user: {tokenFile: token}
`,
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(ws.events())
			s, err := NewWebhookSink(tt.kubeconfig, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			want := []*Event{testEvent(1), testEvent(2)}
			if err := s.Write(context.Background(), want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, ws.events()[before:]); diff != "" {
				t.Errorf("events received (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWebhookSinkFailures(t *testing.T) {
	ws := newWebhookServer(t, "right")
	tests := []struct {
		name       string
		kubeconfig string
		wantErr    string
	}{
		{"wrong token: 401", writeFiles(t, map[string]string{"kubeconfig": `clusters:
- cluster: {server: "` + ws.URL + `", insecure-skip-tls-verify: true}
users:
- user: {token: wrong}
`}), "401 Unauthorized"},
		{"unknown CA", writeFiles(t, map[string]string{"kubeconfig": `clusters:
- cluster: {server: "` + ws.URL + `"}
users:
- user: {token: right}
`}), "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewWebhookSink(tt.kubeconfig, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.Write(context.Background(), []*Event{testEvent(1)})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "right") || strings.Contains(err.Error(), "wrong") {
				t.Errorf("the error shows a token: %v", err)
			}
		})
	}
}

func TestParseKubeconfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{"no clusters", "users: []", "no clusters"},
		{"bad server", "clusters: [{cluster: {server: 'ftp://x'}}]", `server "ftp://x" is not an http(s) URL`},
		{"missing context", "current-context: x\nclusters: [{cluster: {server: 'https://x'}}]", `current-context "x"`},
		{"missing user", "clusters: [{name: c, cluster: {server: 'https://x'}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x", `user "u" is not among users`},
		{"bad CA data", "clusters: [{cluster: {server: 'https://x', certificate-authority-data: '!!'}}]", "not base64"},
		{"CA not PEM", "clusters: [{cluster: {server: 'https://x', certificate-authority-data: 'aGVsbG8='}}]", "no PEM certificate"},
		{"exec", "clusters: [{cluster: {server: 'https://x'}}]\nusers: [{user: {exec: {command: sh}}}]", "not username, exec or auth-provider"},
		{"cert without key", "clusters: [{cluster: {server: 'https://x'}}]\nusers: [{user: {client-certificate-data: 'aGVsbG8='}}]", "needs its key"},
		{"missing CA file", "clusters: [{cluster: {server: 'https://x', certificate-authority: nope.pem}}]", "nope.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseKubeconfig([]byte(tt.yaml), t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzParseKubeconfig(f *testing.F) {
	f.Add("clusters: [{name: c, cluster: {server: 'https://x', insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x")
	f.Add("clusters: [{cluster: {server: 'https://x', certificate-authority-data: 'aGVsbG8='}}]")
	f.Add("users: [{user: {client-certificate-data: 'aGVsbG8=', client-key-data: 'aGVsbG8='}}]\nclusters: [{cluster: {server: 'http://x'}}]")
	f.Add("a: &a [*a, *a]")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data string) {
		if len(data) > 64<<10 {
			t.Skip("larger than any kubeconfig worth fuzzing")
		}
		target, err := parseKubeconfig([]byte(data), dir)
		if (target == nil) == (err == nil) {
			t.Fatalf("got target %v and error %v, want exactly one", target, err)
		}
		if target != nil && target.server == nil {
			t.Fatal("a target without a server")
		}
	})
}
