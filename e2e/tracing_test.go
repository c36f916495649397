package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestTracing sends Portcullis's traces over OTLP (the SDK's default,
// http/protobuf) to a collector that kube-apiserver sends its own to (over
// gRPC), and follows one kubectl-style request: Portcullis's span of the
// request has its authenticate, authorize and upstream spans; the request
// reached kube-apiserver with the upstream span's traceparent, which
// kube-apiserver's span joins or links to; the audit event names the trace.
// A client's own traceparent is only a link: no span, Portcullis's or the
// cluster's, is recorded under the trace id the client chose.
func TestTracing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	collector, err := testenv.StartTraceCollector()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(collector.Close) // after Portcullis has stopped: it exports its last spans then
	dir := t.TempDir()
	// kube-apiserver traces every request it serves (a million per
	// million), so that its span of the forwarded request is there to find.
	tracingConfig := filepath.Join(dir, "tracing.yaml")
	writeFile(t, tracingConfig, fmt.Sprintf("apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\nendpoint: %s\nsamplingRatePerMillion: 1000000\n", collector.GRPCAddr))
	auditLog := filepath.Join(dir, "audit.log")
	s := startStackWith(t, ctx, stackOptions{
		apiserverArgs: []string{"--tracing-config-file", tracingConfig},
		env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.HTTPURL, "OTEL_SERVICE_NAME=portcullis-e2e",
			"OTEL_BSP_SCHEDULE_DELAY=100", "AUDIT_LOG_PATH=" + auditLog},
	})

	if _, _, err := s.cluster.Kubectl(ctx, nil, "create", "clusterrolebinding", "e2e-traced", "--clusterrole=cluster-admin", "--user=alice@example.com"); err != nil {
		t.Fatal(err)
	}
	// kubectl, which sends no trace context; once RBAC has the binding.
	alice := s.kubeconfig(t, s.token(t, "alice@example.com"))
	waitFor(t, ctx, 30*time.Second, "alice may list configmaps", func() error {
		if _, errOut, err := s.as(ctx, alice, "", "get", "configmaps"); err != nil {
			return fmt.Errorf("kubectl get configmaps: %v\n%s", err, errOut)
		}
		return nil
	})

	// A client that traces itself, or wants to choose the cluster's
	// trace ids and force sampling: its trace context is sampled.
	const clientTrace, clientSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.routeURL+"/api/v1/namespaces/default/configmaps", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer Pomerium-"+s.token(t, "alice@example.com"))
	req.Header.Set("Traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
	req.Header.Set("Tracestate", "client=chosen")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS()}, Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	auditID := resp.Header.Get("Audit-Id")
	if resp.StatusCode != http.StatusOK || auditID == "" {
		t.Fatalf("GET configmaps: %d, Audit-Id %q; want 200 with Portcullis's audit id", resp.StatusCode, auditID)
	}

	var server testenv.Span
	byName := map[string]testenv.Span{}
	var apiserverSpan *testenv.Span
	spans, err := collector.WaitForSpans(ctx, "Portcullis's spans of the request and kube-apiserver's", func(spans []testenv.Span) bool {
		server, byName, apiserverSpan = testenv.Span{}, map[string]testenv.Span{}, nil
		for _, sp := range spans {
			if sp.Service == "portcullis-e2e" && sp.Attributes["portcullis.audit_id"] == auditID {
				server = sp
			}
		}
		if server.SpanID == "" {
			return false
		}
		for _, sp := range spans {
			if sp.Service == "portcullis-e2e" && sp.TraceID == server.TraceID && sp.ParentSpanID == server.SpanID {
				byName[sp.Name] = sp
			}
		}
		up, ok := byName["upstream"]
		if !ok {
			return false
		}
		for i, sp := range spans {
			if sp.Service == "portcullis-e2e" {
				continue
			}
			// kube-apiserver trusts the trace context of a few privileged
			// groups only: of others, it links to it.
			joined := sp.TraceID == up.TraceID && sp.ParentSpanID == up.SpanID
			linked := false
			for _, l := range sp.Links {
				linked = linked || (l.TraceID == up.TraceID && l.SpanID == up.SpanID)
			}
			if joined || linked {
				apiserverSpan = &spans[i]
			}
		}
		return apiserverSpan != nil
	})
	if err != nil {
		services := map[string]int{}
		for _, sp := range spans {
			services[sp.Service]++
		}
		t.Fatalf("%v; spans by service: %v; Portcullis's span of the request: %+v; its children: %v\nkube-apiserver's log:\n%s",
			err, services, server, byName, s.cluster.APIServerLogTail(30))
	}
	if server.TraceID == clientTrace || server.ParentSpanID != "" {
		t.Errorf("Portcullis's request span is in trace %s under parent %q: the client chose it", server.TraceID, server.ParentSpanID)
	}
	if len(server.Links) != 1 || server.Links[0] != (testenv.SpanLink{TraceID: clientTrace, SpanID: clientSpan}) {
		t.Errorf("Portcullis's request span links %v, want the client's span %s/%s", server.Links, clientTrace, clientSpan)
	}
	if server.Attributes["http.response.status_code"] != "200" || server.Attributes["url.path"] != "/api/v1/namespaces/default/configmaps" ||
		!strings.HasPrefix(server.Name, "GET ") {
		t.Errorf("Portcullis's request span: %s %v", server.Name, server.Attributes)
	}
	for _, name := range []string{"authenticate", "authorize", "upstream"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("no %s span under the request's span; its children: %v", name, byName)
		}
	}
	if a := byName["authorize"].Attributes; a["portcullis.decision"] != "allow" || a["k8s.verb"] != "list" || a["k8s.resource"] != "configmaps" {
		t.Errorf("the authorize span: %v, want allow, list, configmaps", a)
	}
	if a := byName["authenticate"].Attributes; a["portcullis.authenticated"] != "true" || a["portcullis.credential"] != "token" {
		t.Errorf("the authenticate span: %v", a)
	}
	for _, sp := range spans {
		// Nothing here carries personal data: the audit trail does.
		for k, v := range sp.Attributes {
			if sp.Service == "portcullis-e2e" && strings.Contains(v, "alice@example.com") {
				t.Errorf("span %s: attribute %s carries the person's email", sp.Name, k)
			}
		}
		if sp.TraceID == clientTrace {
			t.Errorf("a span of %s under the client's trace id: %s %v", sp.Service, sp.Name, sp.Attributes)
		}
		if sp.Service != "portcullis-e2e" {
			for _, l := range sp.Links {
				if l.TraceID == clientTrace {
					t.Errorf("kube-apiserver's span %s links to the client's trace: the client's traceparent reached it", sp.Name)
				}
			}
		}
	}
	t.Logf("kube-apiserver's span %q (service %s, trace %s, parent %q, links %v) joins or links Portcullis's upstream span %s/%s",
		apiserverSpan.Name, apiserverSpan.Service, apiserverSpan.TraceID, apiserverSpan.ParentSpanID, apiserverSpan.Links, server.TraceID, byName["upstream"].SpanID)

	// The audit event names the trace.
	waitFor(t, ctx, 10*time.Second, "the audit event of the request", func() error {
		for _, ev := range readAuditLog(t, auditLog) {
			if ev.AuditID == auditID && ev.Stage == "ResponseComplete" {
				if got := ev.Annotations["portcullis.io/trace-id"]; got != server.TraceID {
					t.Errorf("the audit event's portcullis.io/trace-id is %q, want %s", got, server.TraceID)
				}
				return nil
			}
		}
		return fmt.Errorf("no event with audit id %s", auditID)
	})
	// The access log names the trace too.
	logText, err := os.ReadFile(s.portcullis.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logText), `"trace_id":"`+server.TraceID+`"`) {
		t.Errorf("the access log has no line with trace_id %s", server.TraceID)
	}
}
