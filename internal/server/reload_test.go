package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// reloadStack is a server read from a config file it watches, with a
// Kubernetes route a.test in front of a fake API server that serves
// watches: enough to see a reload change routes and policy, and end the
// streams the new policy denies.
type reloadStack struct {
	*testServer
	path       string // the config file
	client     *http.Client
	adminToken string
	logs       *logbuf.Buffer
}

const reloadAdminToken = "0123456789abcdef0123456789abcdef-admin"

// reloadConfig is the config file: routes under it, after the settings.
func reloadConfig(routes string) string {
	return fmt.Sprintf(`address: 127.0.0.1:0
metrics_address: 127.0.0.1:0
insecure_server: true
shared_secret: %s
cookie_secret: %s
admin_token: %s
routes:
%s`, base64.StdEncoding.EncodeToString(testSecret), base64.StdEncoding.EncodeToString(testSecret), reloadAdminToken, routes)
}

// kubeRoute is a Kubernetes route from host to upstream, allowing emails.
func kubeRoute(host, upstream string, emails ...string) string {
	return fmt.Sprintf(`  - from: http://%s
    to: %s
    kubernetes_service_account_token: eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpwb3J0Y3VsbGlzIn0.c2ln
    policy:
      - allow:
          or:
            - email:
                in: [%s]
`, host, upstream, strings.Join(emails, ", "))
}

// watchUpstream answers a watch with one ADDED event, then holds the
// stream open until the client goes; anything else gets 200 {}.
func watchUpstream(t *testing.T) string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "" {
			w.Write([]byte("{}"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"first"}}}`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(up.Close)
	return up.URL
}

func startReloadStack(t *testing.T, routes string) *reloadStack {
	t.Helper()
	path := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(path, []byte(reloadConfig(routes)), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func() (*config.Options, error) { return config.Load(path, nil, Checks()...) }
	opts, err := load()
	if err != nil {
		t.Fatal(err)
	}
	logger, logs := testLogger(t)
	s, err := New(opts, logger)
	if err != nil {
		t.Fatal(err)
	}
	s.SetReloader(load, nil)
	return &reloadStack{testServer: serve(t, s, true), path: path, client: newClient(t, nil), adminToken: reloadAdminToken, logs: logs}
}

func (rs *reloadStack) rewrite(t *testing.T, text string) {
	t.Helper()
	// As a ConfigMap volume changes: a new file renamed into place.
	tmp := rs.path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, rs.path); err != nil {
		t.Fatal(err)
	}
}

// get sends a GET for host and path with email's token.
func (rs *reloadStack) get(t *testing.T, ctx context.Context, host, path, email string) *http.Response {
	t.Helper()
	tok, err := rs.keys.Issue(session.Claims{Subject: "sub-" + email, Email: email, Audience: host, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rs.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Authorization", "Bearer Pomerium-"+tok)
	resp, err := rs.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// metric returns the value of the unlabelled metric name, scraped now.
func (rs *reloadStack) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get(rs.metricsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

// TestReloadEndsDeniedStreams changes the config file under a running
// server: a new route is served, a watch the new policy denies ends with
// an ERROR event naming why, another person's watch goes on, and a file
// that does not parse changes nothing but the reload metric.
func TestReloadEndsDeniedStreams(t *testing.T) {
	up := watchUpstream(t)
	rs := startReloadStack(t, kubeRoute("a.test", up, "alice@example.com", "bob@example.com"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const watchPath = "/api/v1/namespaces/default/configmaps?watch=1"
	watches := map[string]*bufio.Reader{}
	for _, email := range []string{"alice@example.com", "bob@example.com"} {
		resp := rs.get(t, ctx, "a.test", watchPath, email)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s's watch: got %d, want 200", email, resp.StatusCode)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, `"ADDED"`) {
			t.Fatalf("%s's watch: first event %q, %v", email, line, err)
		}
		watches[email] = br
	}
	if got := rs.metric(t, `portcullis_streams_open{kind="watch"}`); got != "2" {
		t.Errorf("portcullis_streams_open{kind=watch}: got %q, want 2", got)
	}

	// Bob is no longer allowed on a.test; b.test is new.
	rs.rewrite(t, reloadConfig(kubeRoute("a.test", up, "alice@example.com")+kubeRoute("b.test", up, "bob@example.com")))
	start := time.Now()
	line, err := watches["bob@example.com"].ReadString('\n')
	var ev struct {
		Type   string `json:"type"`
		Object struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"object"`
	}
	if jerr := json.Unmarshal([]byte(line), &ev); jerr != nil || ev.Type != "ERROR" || ev.Object.Code != http.StatusForbidden ||
		!strings.Contains(ev.Object.Message, "no longer allowed") || !strings.Contains(ev.Object.Message, "(email-unauthorized)") {
		t.Fatalf("bob's watch after the reload: got %q (%v), want an ERROR event with a 403 Status naming the rule", line, err)
	}
	if _, err := watches["bob@example.com"].ReadString('\n'); err != io.EOF {
		t.Errorf("bob's watch after the ERROR event: got %v, want EOF", err)
	}
	t.Logf("bob's watch ended %s after the file was rewritten", time.Since(start))

	if resp := rs.get(t, ctx, "b.test", "/api/v1/namespaces", "bob@example.com"); resp.StatusCode != http.StatusOK {
		t.Errorf("the new route b.test: got %d, want 200", resp.StatusCode)
	}
	if resp := rs.get(t, ctx, "a.test", "/api/v1/namespaces", "bob@example.com"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob on a.test after the reload: got %d, want 403", resp.StatusCode)
	}
	if got := rs.metric(t, "portcullis_config_last_reload_successful"); got != "1" {
		t.Errorf("portcullis_config_last_reload_successful: got %q, want 1", got)
	}

	// A file that does not parse: everything stays as it was.
	rs.rewrite(t, "routes: [\n")
	waitFor(t, "the failed reload to show in the metrics", func() bool {
		return rs.metric(t, "portcullis_config_last_reload_successful") == "0"
	})
	if resp := rs.get(t, ctx, "b.test", "/api/v1/namespaces", "bob@example.com"); resp.StatusCode != http.StatusOK {
		t.Errorf("b.test after a failed reload: got %d, want 200", resp.StatusCode)
	}

	// Alice's watch went on through all of it.
	if got := rs.metric(t, `portcullis_streams_open{kind="watch"}`); got != "1" {
		t.Errorf("portcullis_streams_open{kind=watch}: got %q, want 1 (alice's)", got)
	}
}

// TestAdminAPI lists open streams and ends a person's, only with the
// admin token.
func TestAdminAPI(t *testing.T) {
	up := watchUpstream(t)
	rs := startReloadStack(t, kubeRoute("a.test", up, "alice@example.com"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := rs.get(t, ctx, "a.test", "/api/v1/namespaces/default/configmaps?watch=1", "alice@example.com")
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}

	admin := func(method, path, token string) (int, string) {
		req, _ := http.NewRequest(method, rs.metricsURL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tok := range []string{"", "wrong", reloadAdminToken + "x", reloadAdminToken[:len(reloadAdminToken)-1]} {
		if code, _ := admin(http.MethodGet, "/admin/v1/streams", tok); code != http.StatusUnauthorized {
			t.Errorf("streams with token %q: got %d, want 401", tok, code)
		}
	}
	code, body := admin(http.MethodGet, "/admin/v1/streams", reloadAdminToken)
	if code != http.StatusOK || !strings.Contains(body, `"email":"alice@example.com"`) || !strings.Contains(body, `"kind":"watch"`) {
		t.Fatalf("streams: got %d %s, want alice's watch", code, body)
	}
	code, body = admin(http.MethodPost, "/admin/v1/users/alice@example.com/sign-out", reloadAdminToken)
	if code != http.StatusOK || !strings.Contains(body, `"streams_ended":1`) {
		t.Fatalf("sign-out: got %d %s, want one stream ended", code, body)
	}
	line, _ := br.ReadString('\n')
	if !strings.Contains(line, `"ERROR"`) || !strings.Contains(line, "revoked by an administrator") {
		t.Errorf("alice's watch after the admin sign-out: got %q, want an ERROR event saying why", line)
	}
}

// TestReloadNamesRestartSettings changes a setting a reload cannot apply
// along with one it can: the route changes, and the log names the other,
// whose running value is kept.
func TestReloadNamesRestartSettings(t *testing.T) {
	up := watchUpstream(t)
	rs := startReloadStack(t, kubeRoute("a.test", up, "alice@example.com"))
	ctx := context.Background()
	rs.rewrite(t, "cookie_expire: 1h\n"+reloadConfig(kubeRoute("a.test", up, "bob@example.com")))
	waitFor(t, "bob to be let in", func() bool {
		resp := rs.get(t, ctx, "a.test", "/api/v1/namespaces", "bob@example.com")
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !strings.Contains(rs.logs.String(), `"setting":"COOKIE_EXPIRE"`) {
		t.Errorf("the log does not name COOKIE_EXPIRE as needing a restart:\n%s", rs.logs.String())
	}
	if got := rs.current().opts.CookieExpire; got != config.Defaults().CookieExpire {
		t.Errorf("COOKIE_EXPIRE in force: got %v, want the running %v", got, config.Defaults().CookieExpire)
	}
}

// TestAccessLogNamesPersonAndDecision: the access log line of a route
// request says who made it and what the policy decided, with the rule.
func TestAccessLogNamesPersonAndDecision(t *testing.T) {
	up := watchUpstream(t)
	rs := startReloadStack(t, kubeRoute("a.test", up, "alice@example.com"))
	for _, email := range []string{"alice@example.com", "mallory@example.com"} {
		resp := rs.get(t, context.Background(), "a.test", "/api/v1/namespaces", email)
		resp.Body.Close()
	}
	var lines []map[string]any
	for line := range strings.Lines(rs.logs.String()) {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == "request" && e["host"] == "a.test" {
			lines = append(lines, e)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("got %d access log lines for a.test, want 2", len(lines))
	}
	for i, want := range []struct{ user, decision, rule string }{
		{"alice@example.com", "allow", "policy[0].allow.or"},
		{"mallory@example.com", "deny", "none"},
	} {
		if l := lines[i]; l["user"] != want.user || l["decision"] != want.decision || l["rule"] != want.rule {
			t.Errorf("access log line %d: user %v, decision %v, rule %v; want %s, %s, %s", i, l["user"], l["decision"], l["rule"], want.user, want.decision, want.rule)
		}
	}
	// The same decisions in the metrics, and the token cache's work: two
	// tokens, each verified once.
	for sample, want := range map[string]string{
		`portcullis_policy_decisions_total{result="allow",route="http://a.test",rule="policy[0].allow.or"}`: "1",
		`portcullis_policy_decisions_total{result="deny",route="http://a.test",rule="none"}`:                "1",
		`portcullis_token_cache_misses_total`:                                                               "2",
	} {
		if got := rs.metric(t, sample); got != want {
			t.Errorf("%s: got %q, want %s", sample, got, want)
		}
	}
}

// TestAuditLogFollowsPolicy: with an audit log and a policy, a request the
// policy records gets an event with the person, the decision and Portcullis's
// audit id; one at level None gets none.
func TestAuditLogFollowsPolicy(t *testing.T) {
	up := watchUpstream(t)
	dir := t.TempDir()
	logPath, policyPath := filepath.Join(dir, "audit.log"), filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: None\n    users: [bob@example.com]\n  - level: Metadata\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := startReloadStack(t, kubeRoute("a.test", up, "alice@example.com")+
		fmt.Sprintf("audit_log_path: %s\naudit_policy_file: %s\n", logPath, policyPath))
	for _, email := range []string{"alice@example.com", "bob@example.com"} {
		resp := rs.get(t, context.Background(), "a.test", "/api/v1/namespaces/default/pods/web", email)
		resp.Body.Close()
	}
	var events []map[string]any
	waitFor(t, "alice's event in the audit log", func() bool {
		data, _ := os.ReadFile(logPath)
		events = nil
		for line := range strings.Lines(string(data)) {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil {
				events = append(events, e)
			}
		}
		return len(events) > 0
	})
	time.Sleep(100 * time.Millisecond) // bob's would have come by now
	if len(events) != 1 {
		t.Fatalf("got %d events, want alice's only: %v", len(events), events)
	}
	ev := events[0]
	user, _ := ev["user"].(map[string]any)
	ann, _ := ev["annotations"].(map[string]any)
	obj, _ := ev["objectRef"].(map[string]any)
	if user["username"] != "alice@example.com" || ev["verb"] != "get" || obj["resource"] != "pods" || obj["name"] != "web" ||
		ann["authorization.k8s.io/decision"] != "allow" || ev["stage"] != "ResponseComplete" || ev["kind"] != "Event" {
		t.Errorf("alice's event: %v", ev)
	}
	if id, _ := ev["auditID"].(string); id == "" || !strings.Contains(rs.logs.String(), `"audit_id":"`+id+`"`) {
		t.Errorf("the event's auditID %q is not the access log's", id)
	}

	// An administrator's sign-out is recorded too, as a sign-out.
	req, _ := http.NewRequest(http.MethodPost, rs.metricsURL+"/admin/v1/users/alice@example.com/sign-out", nil)
	req.Header.Set("Authorization", "Bearer "+reloadAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, "the sign-out's event", func() bool {
		data, _ := os.ReadFile(logPath)
		return strings.Contains(string(data), `"verb":"sign-out"`) && strings.Contains(string(data), `"portcullis.io/activity":"sign-out"`)
	})
	if got := rs.metric(t, `portcullis_sign_ins_total{action="sign-out"}`); got != "1" {
		t.Errorf(`portcullis_sign_ins_total{action="sign-out"}: got %q, want 1`, got)
	}
}

// TestUpstreamErrorsCounted: a route whose upstream refuses connections
// answers 502, and the metric counts the failure by its cause.
func TestUpstreamErrorsCounted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	rs := startReloadStack(t, kubeRoute("down.test", closed, "alice@example.com"))
	resp := rs.get(t, context.Background(), "down.test", "/api/v1/namespaces", "alice@example.com")
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("got %d, want 502", resp.StatusCode)
	}
	if got := rs.metric(t, `portcullis_upstream_errors_total{cause="refused",route="http://down.test"}`); got != "1" {
		t.Errorf("portcullis_upstream_errors_total{cause=refused}: got %q, want 1", got)
	}
}
