package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// auditEvent is the part of an audit.k8s.io/v1 Event these tests read, from
// Portcullis's audit log and kube-apiserver's alike.
type auditEvent struct {
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	// ImpersonatedUser is who kube-apiserver acted as: the person
	// Portcullis forwarded (empty in Portcullis's own events).
	ImpersonatedUser struct {
		Username string              `json:"username"`
		Groups   []string            `json:"groups"`
		Extra    map[string][]string `json:"extra"`
	} `json:"impersonatedUser"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Annotations map[string]string `json:"annotations"`
}

// readAuditLog reads every event of a JSON-lines audit log.
func readAuditLog(t *testing.T, path string) []auditEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%s: a line that is not an audit event: %v\n%s", path, err, sc.Text())
		}
		events = append(events, ev)
	}
	return events
}

// TestAuditTrail runs a kubectl session through Portcullis with an audit
// log and checks it against kube-apiserver's own: every request Portcullis
// forwarded has an event in both logs with the same Audit-ID, user, verb
// and resource; the delete Portcullis denied has its event, naming the
// rule, and none at the apiserver; the exec's events count the bytes it
// carried.
func TestAuditTrail(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	auditLog := filepath.Join(t.TempDir(), "portcullis-audit.log")
	mport, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	s := startStackWith(t, ctx, stackOptions{kwok: true, env: []string{"AUDIT_LOG_PATH=" + auditLog, "METRICS_ADDRESS=" + strings.TrimSuffix(strings.TrimPrefix(metrics, "http://"), "/metrics")},
		policy: allowSignedIn + "    - deny:\n        and:\n          - kubernetes_verb: delete\n          - kubernetes_namespace: audited\n"})
	if _, _, err := s.cluster.Kubectl(ctx, nil, "create", "clusterrolebinding", "e2e-audited", "--clusterrole=cluster-admin", "--user=alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := s.cluster.EnsureNamespace(ctx, "audited"); err != nil {
		t.Fatal(err)
	}
	runDemoPod(t, ctx, s.cluster, s.kwok, t.TempDir(), "")
	alice := s.kubeconfig(t, s.token(t, "alice@example.com"))

	if _, errOut, err := s.as(ctx, alice, "", "-n", "audited", "get", "configmaps"); err != nil {
		t.Fatalf("get: %v\n%s", err, errOut)
	}
	if _, errOut, err := s.as(ctx, alice, "", "-n", "audited", "create", "configmap", "audit-me"); err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	if _, errOut, err := s.as(ctx, alice, "", "-n", "audited", "delete", "configmap", "audit-me"); err == nil || !strings.Contains(errOut, "Forbidden") {
		t.Fatalf("delete: err %v, stderr %q; want Forbidden by Portcullis", err, errOut)
	}
	const execBytes = 100_000
	out, errOut, err := s.as(ctx, alice, "", "-n", "demo", "exec", "web", "--", "head", "-c", strconv.Itoa(execBytes), "/dev/zero")
	if err != nil || len(out) != execBytes {
		t.Fatalf("exec: %d bytes out, %v\n%s", len(out), err, errOut)
	}

	// A client that names its own Audit-ID, to plant or collide with an
	// id in the cluster's audit log: the cluster records Portcullis's.
	forged := "11111111-2222-4333-8444-555555555555"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.routeURL+"/api/v1/namespaces/audited/configmaps?forged=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer Pomerium-"+s.token(t, "alice@example.com"))
	req.Header.Set("Audit-ID", forged)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS()}, Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Audit-Id") == forged || resp.Header.Get("Audit-Id") == "" {
		t.Fatalf("the request with a forged Audit-ID: got %d with Audit-Id %q, want 200 with Portcullis's", resp.StatusCode, resp.Header.Get("Audit-Id"))
	}

	const forwardBytes = 50_000
	portForward(t, s.cluster.KubectlCmd(ctx, "--kubeconfig", alice, "-n", "demo", "port-forward", "web", ":8080"), forwardBytes)

	// Portcullis writes its events as requests end; kube-apiserver its own.
	var mine, theirs []auditEvent
	waitFor(t, ctx, 30*time.Second, "both audit logs hold the exec", func() error {
		mine, theirs = readAuditLog(t, auditLog), readAuditLog(t, s.cluster.AuditLogPath)
		for _, ev := range mine {
			if ev.Stage == "ResponseComplete" && ev.ObjectRef != nil && ev.ObjectRef.Subresource == "exec" {
				return nil
			}
		}
		return fmt.Errorf("no exec event in Portcullis's audit log yet (%d events)", len(mine))
	})
	waitFor(t, ctx, 30*time.Second, "Portcullis's audit log holds the port-forward's end", func() error {
		mine = readAuditLog(t, auditLog)
		for _, ev := range mine {
			if ev.Stage == "ResponseComplete" && ev.ObjectRef != nil && ev.ObjectRef.Subresource == "portforward" {
				return nil
			}
		}
		return fmt.Errorf("no port-forward event yet (%d events)", len(mine))
	})
	theirs = readAuditLog(t, s.cluster.AuditLogPath)
	apiserver := map[string][]auditEvent{}
	for _, ev := range theirs {
		apiserver[ev.AuditID] = append(apiserver[ev.AuditID], ev)
	}
	if got := apiserver[forged]; len(got) != 0 {
		t.Errorf("kube-apiserver recorded the client's forged Audit-ID %s: %+v", forged, got)
	}
	forgedSeen := false
	for _, ev := range theirs {
		forgedSeen = forgedSeen || strings.HasSuffix(ev.RequestURI, "forged=1")
	}
	if !forgedSeen {
		t.Error("kube-apiserver has no event for the request that carried a forged Audit-ID")
	}

	var forwarded, denied, exec, forward int
	for _, ev := range mine {
		if ev.Stage != "ResponseComplete" || ev.User.Username != "alice@example.com" {
			continue
		}
		decision := ev.Annotations["authorization.k8s.io/decision"]
		switch {
		case decision == "forbid":
			denied++
			if ev.Verb != "delete" || ev.ObjectRef == nil || ev.ObjectRef.Name != "audit-me" || ev.ResponseStatus == nil || ev.ResponseStatus.Code != 403 ||
				ev.Annotations["portcullis.io/rule"] == "" {
				t.Errorf("the denied delete's event: %+v, want delete of audit-me, 403, with the rule", ev)
			}
			if got := apiserver[ev.AuditID]; len(got) != 0 {
				t.Errorf("kube-apiserver has %d events for the request Portcullis denied (Audit-ID %s)", len(got), ev.AuditID)
			}
			continue
		case decision != "allow":
			t.Errorf("an event with decision %q: %+v", decision, ev)
			continue
		}
		forwarded++
		theirs := apiserver[ev.AuditID]
		if len(theirs) == 0 {
			t.Errorf("no kube-apiserver event with Portcullis's Audit-ID %s (%s %s)", ev.AuditID, ev.Verb, objectOf(ev))
			continue
		}
		for _, a := range theirs {
			if a.ImpersonatedUser.Username != ev.User.Username || a.Verb != ev.Verb || !sameObject(a, ev) {
				t.Errorf("Audit-ID %s: kube-apiserver recorded %s as %v %s %s, Portcullis %s %s %s",
					ev.AuditID, a.User.Username, a.ImpersonatedUser, a.Verb, objectOf(a), ev.User.Username, ev.Verb, objectOf(ev))
			}
		}
		if ev.ObjectRef != nil && ev.ObjectRef.Subresource == "portforward" {
			forward++
			// The echo server sent back what it got: as many bytes each
			// way, and the stream's framing.
			from, _ := strconv.Atoi(ev.Annotations["portcullis.io/bytes-from-upstream"])
			to, _ := strconv.Atoi(ev.Annotations["portcullis.io/bytes-to-upstream"])
			if from < forwardBytes || to < forwardBytes || from > 2*forwardBytes || to > 2*forwardBytes {
				t.Errorf("the port-forward's event: %d bytes from the upstream and %d to it, want %d each and the framing", from, to, forwardBytes)
			}
		}
		if ev.ObjectRef != nil && ev.ObjectRef.Subresource == "exec" {
			exec++
			// The bytes on the wire from the pod: its output, and the
			// stream's framing.
			n, _ := strconv.Atoi(ev.Annotations["portcullis.io/bytes-from-upstream"])
			if n < execBytes || n > execBytes+execBytes/20 {
				t.Errorf("the exec's event: %d bytes from the upstream, want %d and the framing", n, execBytes)
			}
			if ev.Annotations["portcullis.io/command"] != "head -c "+strconv.Itoa(execBytes)+" /dev/zero" {
				t.Errorf("the exec's event: command %q", ev.Annotations["portcullis.io/command"])
			}
		}
	}
	if denied != 1 || exec != 1 || forward != 1 || forwarded < 4 {
		t.Errorf("Portcullis's audit log: %d forwarded (want the get, the create, the exec, the port-forward and kubectl's discovery), %d denied (want 1), %d exec (want 1), %d port-forward (want 1)",
			forwarded, denied, exec, forward)
	}
	started := 0
	for _, ev := range mine {
		if ev.Stage == "ResponseStarted" && ev.Annotations["portcullis.io/stream"] == "exec" {
			started++
		}
	}
	if started != 1 {
		t.Errorf("ResponseStarted events of the exec: got %d, want 1", started)
	}
	checkSessionMetrics(t, ctx, metrics, auditLog, s.routeURL)
}

// checkSessionMetrics scrapes Portcullis's metrics after TestAuditTrail's
// session and checks them against what happened, as its audit log
// records it: one denial, by the rule that denied the delete; as many
// allow decisions as allowed requests; every audit event written counted
// and none dropped; the exec and the port-forward closed, none ended by
// Portcullis; no upstream error; tokens answered from the cache.
func checkSessionMetrics(t *testing.T, ctx context.Context, metrics, auditLog, route string) {
	t.Helper()
	routeLabel := `route="` + route + `"`
	// The events are written after their requests end: wait until every
	// one that is counted is in the file.
	var events []auditEvent
	waitFor(t, ctx, 10*time.Second, "every audit event counted in the metrics to be in the file", func() error {
		events = readAuditLog(t, auditLog)
		if n := metricValue(t, metrics, `portcullis_audit_events_total{sink="log"}`); int(n) != len(events) {
			return fmt.Errorf("portcullis_audit_events_total{sink=\"log\"} is %v, the file has %d events", n, len(events))
		}
		return nil
	})
	var allowed, denied int
	var deniedBy string
	for _, ev := range events {
		if ev.Stage != "ResponseComplete" {
			continue
		}
		switch ev.Annotations["authorization.k8s.io/decision"] {
		case "allow":
			allowed++
		case "forbid":
			denied++
			deniedBy = ev.Annotations["portcullis.io/rule"]
		}
	}
	for _, c := range []struct {
		what string
		got  float64
		want float64
	}{
		{"allow decisions", metricSum(t, metrics, "portcullis_policy_decisions_total{", routeLabel, `result="allow"`), float64(allowed)},
		{"deny decisions", metricSum(t, metrics, "portcullis_policy_decisions_total{", routeLabel, `result="deny"`), float64(denied)},
		{"deny decisions by the rule that denied", metricSum(t, metrics, "portcullis_policy_decisions_total{", routeLabel, `result="deny"`, `rule="`+deniedBy+`"`), 1},
		{"403s to a DELETE", metricSum(t, metrics, "portcullis_http_requests_total{", routeLabel, `code="403"`, `method="DELETE"`), 1},
		{"audit events dropped", metricSum(t, metrics, "portcullis_audit_events_dropped_total{"), 0},
		{"streams open", metricSum(t, metrics, "portcullis_streams_open{"), 0},
		{"streams Portcullis ended", metricSum(t, metrics, "portcullis_streams_ended_total{"), 0},
		{"upstream errors", metricSum(t, metrics, "portcullis_upstream_errors_total{"), 0},
		{"sign-ins (the session's tokens were minted)", metricSum(t, metrics, "portcullis_sign_ins_total{"), 0},
		{"latency observations against requests counted",
			metricSum(t, metrics, "portcullis_http_request_duration_seconds_count{", routeLabel),
			metricSum(t, metrics, "portcullis_http_requests_total{", routeLabel)},
	} {
		if c.got != c.want {
			t.Errorf("metrics: %s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	if denied != 1 || allowed < 5 {
		t.Errorf("the audit log has %d allowed and %d denied requests, want the session's", allowed, denied)
	}
	// kubectl sends the same token with each request of a command: all but
	// the first of each token are answered from the cache.
	if hits, misses := metricValue(t, metrics, "portcullis_token_cache_hits_total"), metricValue(t, metrics, "portcullis_token_cache_misses_total"); hits == 0 || misses == 0 {
		t.Errorf("metrics: token cache hits %v, misses %v; want both", hits, misses)
	}
}

// sameObject reports whether kube-apiserver's event a and Portcullis's ev
// are about the same object. A create names its object in the body, which
// Portcullis does not read: kube-apiserver's event has the name, and
// Portcullis's may not.
func sameObject(a, ev auditEvent) bool {
	if a.ObjectRef == nil || ev.ObjectRef == nil {
		return a.ObjectRef == nil && ev.ObjectRef == nil
	}
	x, y := *a.ObjectRef, *ev.ObjectRef
	if y.Name == "" && ev.Verb == "create" {
		x.Name = ""
	}
	return x == y
}

// objectOf names an event's object for messages.
func objectOf(ev auditEvent) string {
	if ev.ObjectRef == nil {
		return "(no object)"
	}
	o := ev.ObjectRef
	return fmt.Sprintf("%s/%s %s/%s", o.Resource, o.Subresource, o.Namespace, o.Name)
}

// TestAuditWebhook sends Portcullis's audit events to a webhook that is
// down for part of the run: no kubectl command fails meanwhile, the events
// held while it was down and those after arrive once it is back, and none
// is counted as dropped.
func TestAuditWebhook(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ca, err := testenv.NewCA("audit webhook")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("audit webhook", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		down     bool
		received = map[string]bool{} // requestURI of each event received
		refused  int
	)
	hook := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			refused++
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Authorization") != "Bearer webhook-token" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		var list struct {
			Kind  string       `json:"kind"`
			Items []auditEvent `json:"items"`
		}
		if err := json.NewDecoder(r.Body).Decode(&list); err != nil || list.Kind != "EventList" {
			http.Error(w, "not an EventList", http.StatusBadRequest)
			return
		}
		for _, ev := range list.Items {
			received[ev.RequestURI] = true
		}
	}))
	hook.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	hook.StartTLS()
	defer hook.Close()
	kubeconfig := filepath.Join(t.TempDir(), "webhook.kubeconfig")
	writeFile(t, kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: audit
    cluster:
      server: %s/audit
      certificate-authority-data: %s
users:
  - name: portcullis
    user:
      token: webhook-token
contexts:
  - name: audit
    context: {cluster: audit, user: portcullis}
current-context: audit
`, hook.URL, b64(ca.CertPEM)))
	metricsPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	s := startStackWith(t, ctx, stackOptions{env: []string{"AUDIT_WEBHOOK_CONFIG_FILE=" + kubeconfig,
		"METRICS_ADDRESS=127.0.0.1:" + strconv.Itoa(metricsPort)}})
	if _, _, err := s.cluster.Kubectl(ctx, nil, "create", "clusterrolebinding", "e2e-webhook", "--clusterrole=cluster-admin", "--user=alice@example.com"); err != nil {
		t.Fatal(err)
	}
	alice := s.kubeconfig(t, s.token(t, "alice@example.com"))
	get := func(namespace string) {
		t.Helper()
		if _, errOut, err := s.as(ctx, alice, "", "-n", namespace, "get", "configmaps"); err != nil {
			t.Fatalf("kubectl get in %s: %v\n%s", namespace, err, errOut)
		}
	}
	arrived := func(namespace string) error {
		mu.Lock()
		defer mu.Unlock()
		if !received["/api/v1/namespaces/"+namespace+"/configmaps?limit=500"] {
			return fmt.Errorf("no event for the get in %s among %d received", namespace, len(received))
		}
		return nil
	}

	get("before")
	waitFor(t, ctx, 30*time.Second, "the webhook receives the first event", func() error { return arrived("before") })

	mu.Lock()
	down = true
	mu.Unlock()
	for i := range 10 {
		get(fmt.Sprintf("while-down-%d", i)) // fails the test if kubectl fails
	}
	waitFor(t, ctx, 30*time.Second, "Portcullis tries the webhook while it is down", func() error {
		mu.Lock()
		defer mu.Unlock()
		if refused == 0 {
			return fmt.Errorf("no POST refused yet")
		}
		return nil
	})
	mu.Lock()
	down = false
	mu.Unlock()
	get("after")
	// The batch held while the webhook was down is retried with back-off
	// (at most 30 s apart), then what followed.
	waitFor(t, ctx, 90*time.Second, "every event arrives after the webhook is back", func() error {
		for i := range 10 {
			if err := arrived(fmt.Sprintf("while-down-%d", i)); err != nil {
				return err
			}
		}
		return arrived("after")
	})
	if n := metricValue(t, metrics, `portcullis_audit_events_dropped_total{reason="queue_full",sink="webhook"}`); n != 0 {
		t.Errorf("portcullis_audit_events_dropped_total: got %v, want 0: the queue held every event", n)
	}
	if n := metricValue(t, metrics, `portcullis_audit_events_total{sink="webhook"}`); n < 12 {
		t.Errorf("portcullis_audit_events_total{sink=webhook}: got %v, want at least the 12 gets", n)
	}
}
