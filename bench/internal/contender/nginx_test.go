package contender

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// nginxTest is nginx started in front of a recording upstream.
type nginxTest struct {
	contenderTest
}

// startNginx starts the upstream and nginx in front of it. A missing nginx
// fails the test: skipping would hide that the benchmark cannot run.
func startNginx(t *testing.T) *nginxTest {
	t.Helper()
	c := &NginxContender{}
	if err := c.Prepare(t.Context(), io.Discard); err != nil {
		t.Fatal(err)
	}
	nt := &nginxTest{contenderTest{recordingUpstream: startRecordingUpstream(t)}}
	// The quotes check that values are escaped in nginx.conf.
	inst, err := c.Start(t.Context(), nt.env(t, "nginx", "alice@example.com", []string{"developers", `team "blue"`}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	nt.inst = inst
	return nt
}

func TestNginx(t *testing.T) {
	nt := startNginx(t)
	t.Run("credentials", nt.testCredentials)
	t.Run("keepalive", nt.testKeepalive)
	t.Run("streaming", nt.testStreaming)
	t.Run("upgrade", nt.testUpgrade)
	t.Run("idle stream", nt.testIdleStream)
}

// An idle watch's response headers reach an HTTP/1.1 client before any
// event, as kubectl and informers need. Over HTTP/2, nginx 1.22 holds them
// until the first body byte, so an idle watch never starts; the harness
// runs nginx's watches over HTTP/1.1 for that reason, and this test says
// when an nginx release changes it.
func (nt *nginxTest) testIdleStream(t *testing.T) {
	for _, tt := range []struct {
		name        string
		http2       bool
		wantHeaders bool
	}{
		{"http/1.1", false, true},
		{"http2", true, false},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		req := nt.request(t, http.MethodGet, "/idle").WithContext(ctx)
		resp, err := nt.client(t, tt.http2).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		if got := err == nil; got != tt.wantHeaders {
			t.Errorf("%s: response headers of an idle stream arrived: got %v (%v), want %v", tt.name, got, err, tt.wantHeaders)
		}
	}
}

// The client's credential and identity headers are replaced, and each
// group arrives as its own Impersonate-Group line.
func (nt *nginxTest) testCredentials(t *testing.T) {
	req := nt.request(t, http.MethodGet, "/credentials")
	req.Header.Set("Impersonate-User", "evil")
	req.Header.Set("Impersonate-Group", "system:masters")
	req.Header.Set("Impersonate-Uid", "0")
	// Lower case as HTTP/2 sends it anyway; nginx matches names in any case.
	req.Header["x-remote-user"] = []string{"evil"}
	req.Header["x-remote-group"] = []string{"system:masters"}
	req.Header.Set("Accept", "application/json")
	resp, err := nt.client(t, true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("got %s over %s, want 200 OK over HTTP/2.0", resp.Status, resp.Proto)
	}
	nt.mu.Lock()
	got := nt.headers["/credentials"]
	nt.mu.Unlock()

	for _, tt := range []struct {
		name string
		want []string
	}{
		{name: "Authorization", want: []string{"Bearer upstream-token"}},
		{name: "Impersonate-User", want: []string{"alice@example.com"}},
		{name: "Impersonate-Group", want: []string{"developers", `team "blue"`}},
		{name: "Impersonate-Uid"},
		{name: "X-Remote-User"},
		{name: "X-Remote-Group"},
		// Empty for a request that does not upgrade, so the upstream
		// connection stays alive.
		{name: "Connection"},
		{name: "Upgrade"},
		// Headers nginx does not touch still pass.
		{name: "Accept", want: []string{"application/json"}},
	} {
		if g := got.Values(tt.name); !slices.Equal(g, tt.want) {
			t.Errorf("upstream got %s: %q, want %q", tt.name, g, tt.want)
		}
	}
}

// Requests in a row reuse upstream connections rather than dialling anew.
func (nt *nginxTest) testKeepalive(t *testing.T) {
	const requests, maxNew = 200, 2
	for _, tt := range []struct {
		name  string
		http2 bool
	}{
		{name: "http2", http2: true},
		{name: "http1.1", http2: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client := nt.client(t, tt.http2)
			before := nt.newConns.Load()
			for i := range requests {
				resp, err := client.Do(nt.request(t, http.MethodGet, ReadyPath))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: got %s, want 200 OK", i, resp.Status)
				}
			}
			if n := nt.newConns.Load() - before; n > maxNew {
				t.Errorf("%d requests opened %d upstream connections, want at most %d", requests, n, maxNew)
			}
		})
	}
}

// An SPDY upgrade (kubectl exec) gets 101 and then carries bytes both ways.
func (nt *nginxTest) testUpgrade(t *testing.T) {
	req := nt.request(t, http.MethodPost, "/spdy")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	req.Header.Set("X-Stream-Protocol-Version", "v4.channel.k8s.io")
	resp, err := nt.client(t, false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("got %s: %s, want 101 Switching Protocols", resp.Status, body)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("got body %T, want an io.ReadWriteCloser for a 101", resp.Body)
	}
	nt.mu.Lock()
	if got := nt.headers["/spdy"].Get("X-Stream-Protocol-Version"); got != "v4.channel.k8s.io" {
		t.Errorf("upstream got X-Stream-Protocol-Version %q, want %q", got, "v4.channel.k8s.io")
	}
	nt.mu.Unlock()
	br := bufio.NewReader(rw)
	for _, msg := range []string{"ping\n", "a longer second message\n"} {
		if _, err := io.WriteString(rw, msg); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the echo of %q: %v", msg, err)
		}
		if got != msg {
			t.Errorf("got echo %q, want %q", got, msg)
		}
	}
}
