package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestKubernetesStreams holds a watch open through Portcullis for more
// than two idle minutes, then takes kube-apiserver away under it and brings
// it back: the watch ends cleanly, requests in the outage get a Status
// naming the upstream and the cause, and requests work again after.
func TestKubernetesStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := startStack(t, ctx, false)
	admin := s.kubeconfig(t, s.token(t, "someuser@example.com"))
	if err := s.cluster.EnsureNamespace(ctx, "watched"); err != nil {
		t.Fatal(err)
	}

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch := s.cluster.KubectlCmd(wctx, "--kubeconfig", admin, "-n", "watched", "get", "configmaps", "--watch-only", "-o", "name")
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	watch.Stderr = &stderr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	events := make(chan string)
	watchDone := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			events <- sc.Text()
		}
		close(events)
		watchDone <- watch.Wait()
	}()
	expect := func(name string) {
		t.Helper()
		select {
		case got, ok := <-events:
			if !ok || got != "configmap/"+name {
				t.Fatalf("watch: got %q (open %v), want configmap/%s; kubectl stderr %q", got, ok, name, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("watch: no event for configmap/%s within 30s; kubectl stderr %q", name, stderr.String())
		}
	}
	create := func(name string) {
		t.Helper()
		if _, _, err := s.cluster.Kubectl(ctx, nil, "-n", "watched", "create", "configmap", name); err != nil {
			t.Fatal(err)
		}
	}

	// Give kubectl a moment to open its watch, then see it work.
	time.Sleep(2 * time.Second)
	create("before-idle")
	expect("before-idle")

	// Idle for longer than any timeout a proxy commonly puts on a request
	// (30 s, 60 s, 2 min): the watch must still deliver.
	const idle = 2*time.Minute + 10*time.Second
	t.Logf("watch is idle for %s", idle)
	time.Sleep(idle)
	create("after-idle")
	expect("after-idle")

	// kube-apiserver goes away under the open watch. A graceful apiserver
	// says goodbye with an ERROR watch event (kubectl prints it as
	// "status/…"), which must pass through; then the stream must end.
	s.cluster.StopAPIServer()
	deadline := time.After(30 * time.Second)
	for ended := false; !ended; {
		select {
		case got, ok := <-events:
			if ok && !strings.HasPrefix(got, "status/") {
				t.Errorf("watch: got %q after the apiserver stopped, want its status event and the end of the stream", got)
			}
			ended = !ok
		case <-deadline:
			t.Fatalf("watch: still open 30 s after the apiserver stopped")
		}
	}
	if err := <-watchDone; err != nil {
		t.Logf("kubectl watch ended with %v; stderr %q", err, stderr.String())
	}

	// During the outage: a Status that names the upstream and the cause.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS()}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	resp := do(t, client, "GET", s.routeURL+"/api/v1/namespaces", http.Header{"Authorization": {"Bearer Pomerium-" + s.token(t, "someuser@example.com")}}, "")
	var st struct {
		Kind, Message string
		Code          int
	}
	json.Unmarshal([]byte(resp.body), &st)
	wantMsg := fmt.Sprintf("upstream %s: connection refused", s.cluster.URL)
	if (resp.code != http.StatusBadGateway && resp.code != http.StatusServiceUnavailable) || st.Kind != "Status" || !strings.Contains(st.Message, wantMsg) {
		t.Errorf("during the outage: got %d %q, want 502 or 503 Status containing %q", resp.code, resp.body, wantMsg)
	}
	_, kerr, err := s.as(ctx, admin, "", "get", "namespaces")
	if err == nil || !strings.Contains(kerr, "connection refused") {
		t.Errorf("kubectl during the outage: got err %v, stderr %q; want it to say connection refused", err, kerr)
	}

	// Back again: the same kubeconfig works, no restart of anything else.
	if err := s.cluster.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if out, _, err := s.as(ctx, admin, "", "-n", "watched", "get", "configmaps", "-o", "name"); err != nil || !strings.Contains(out, "configmap/after-idle") {
		t.Errorf("after the apiserver came back: got %q, %v", out, err)
	}
}
