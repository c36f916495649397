package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

func TestRequestID(t *testing.T) {
	var seen string // RequestID(ctx) as the route handler saw it
	forRoute := func(*config.Route) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = RequestID(r.Context())
		})
	}
	logger, _ := testLogger(t)
	s, err := newServer(insecureOptions(t, "https://k8s.example.com"), logger, infallible(forRoute))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		incoming []string // X-Request-Id values sent
		wantKept bool     // the first incoming value is honoured
	}{
		{name: "none: generated"},
		{name: "well formed: honoured", incoming: []string{"abc-DEF_123.456"}, wantKept: true},
		{name: "64 characters: honoured", incoming: []string{strings.Repeat("a", 64)}, wantKept: true},
		{name: "65 characters: replaced", incoming: []string{strings.Repeat("a", 65)}},
		{name: "empty: replaced", incoming: []string{""}},
		{name: "log injection: replaced", incoming: []string{"x\n{\"level\":\"ERROR\"}"}},
		{name: "markup: replaced", incoming: []string{"<script>alert(1)</script>"}},
		{name: "space: replaced", incoming: []string{"a b"}},
		{name: "non-ASCII: replaced", incoming: []string{"ïd"}},
		{name: "several: first honoured", incoming: []string{"first", "second"}, wantKept: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen = ""
			req := httptest.NewRequest("GET", "/", nil)
			req.Host = "k8s.example.com"
			for _, v := range tt.incoming {
				req.Header.Add("X-Request-Id", v)
			}
			rec := httptest.NewRecorder()
			s.handler.ServeHTTP(rec, req)

			got := rec.Header().Get("X-Request-Id")
			if got != seen {
				t.Errorf("response X-Request-Id %q differs from RequestID(ctx) %q", got, seen)
			}
			if tt.wantKept {
				if got != tt.incoming[0] {
					t.Errorf("X-Request-Id: got %q, want the incoming %q", got, tt.incoming[0])
				}
				return
			}
			if len(tt.incoming) > 0 && got == tt.incoming[0] {
				t.Errorf("X-Request-Id: got the incoming %q, want it replaced", got)
			}
			if !validRequestID(got) || len(got) < 16 {
				t.Errorf("X-Request-Id: generated %q, want 16 to 64 characters of [A-Za-z0-9._-]", got)
			}
		})
	}

	// Two generated ids differ.
	ids := map[string]bool{}
	for range 2 {
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/ping", nil))
		ids[rec.Header().Get("X-Request-Id")] = true
	}
	if len(ids) != 2 {
		t.Errorf("two requests got the same generated id: %v", ids)
	}
}

func TestAccessLogOmitsCredentials(t *testing.T) {
	logger, logs := testLogger(t)
	s, err := newServer(insecureOptions(t, "https://k8s.example.com"), logger, infallible(namedRoute))
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/api/v1/pods?pomerium_jwt=SECRET-IN-QUERY", nil)
	req.Host = "k8s.example.com"
	req.Header.Set("Authorization", "Bearer Pomerium-SECRET-IN-AUTHORIZATION")
	req.Header.Set("X-Pomerium-Authorization", "SECRET-IN-X-POMERIUM")
	req.Header.Set("Cookie", "_pomerium=SECRET-IN-COOKIE")
	req.Header.Set("X-Request-Id", "req-1")
	s.handler.ServeHTTP(httptest.NewRecorder(), req)

	if strings.Contains(logs.String(), "SECRET") {
		t.Errorf("a credential was logged:\n%s", logs.String())
	}
	var entry map[string]any
	for line := range strings.Lines(logs.String()) {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if e["msg"] == "request" {
			entry = e
		}
	}
	if entry == nil {
		t.Fatalf("no access log line in:\n%s", logs.String())
	}
	// The fields the brief promises; duration and remote address vary.
	delete(entry, "time")
	delete(entry, "duration")
	delete(entry, "remote_addr")
	// The audit id is Portcullis's own, random, and a UUID.
	if id, _ := entry["audit_id"].(string); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("audit_id: got %q, want a version 4 UUID", id)
	}
	delete(entry, "audit_id")
	want := map[string]any{
		"level":      "INFO",
		"msg":        "request",
		"request_id": "req-1",
		"method":     "GET",
		"host":       "k8s.example.com",
		"path":       "/api/v1/pods",
		"proto":      "HTTP/1.1",
		"status":     float64(200),
		"bytes":      float64(len("route https://k8s.example.com")),
	}
	if diff := cmp.Diff(want, entry); diff != "" {
		t.Errorf("access log entry (-want +got):\n%s", diff)
	}
}

func TestProbesLogAtDebug(t *testing.T) {
	logger, logs := testLogger(t)
	s, err := New(insecureOptions(t), logger)
	if err != nil {
		t.Fatal(err)
	}
	s.handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	if !strings.Contains(logs.String(), `"level":"DEBUG","msg":"request"`) {
		t.Errorf("want the /healthz access log at debug level, got:\n%s", logs.String())
	}
}

// panicky serves /ok, and panics on /panic (before writing), /panic-late
// (after the headers went out) and /abort (http.ErrAbortHandler).
func panicky(*config.Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			w.Header().Set("X-Half-Done", "yes")
			panic("boom")
		case "/panic-late":
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("partial"))
			http.NewResponseController(w).Flush()
			panic("late boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		}
		w.Write([]byte("ok"))
	})
}

func TestPanicRecovery(t *testing.T) {
	logger, logs := testLogger(t)
	s, err := newServer(insecureOptions(t, "http://route.test"), logger, infallible(panicky))
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s, false)
	client := newClient(t, nil)
	get := func(path string) (*http.Response, string, error) {
		req, err := http.NewRequest("GET", ts.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "route.test"
		req.Header.Set("X-Request-Id", "panic-test")
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, string(body), err
	}
	wantOK := func() {
		t.Helper()
		resp, body, err := get("/ok")
		if err != nil || resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("GET /ok after a panic: %v %v %q; want 200 ok", err, resp, body)
		}
	}

	resp, body, err := get("/panic")
	if err != nil {
		t.Fatalf("GET /panic: %v", err)
	}
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("GET /panic: status %d, want 500", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "panic-test" {
		t.Errorf("GET /panic: X-Request-Id %q, want panic-test", got)
	}
	if got := resp.Header.Get("X-Half-Done"); got != "" {
		t.Errorf("GET /panic: the panicking handler's header X-Half-Done=%q leaked into the 500", got)
	}
	var st kubeStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /panic body %q: %v", body, err)
	}
	wantStatus := kubeStatus{Kind: "Status", APIVersion: "v1", Status: "Failure", Reason: "InternalError", Code: 500,
		Message: "portcullis: internal error (request id panic-test)"}
	if diff := cmp.Diff(wantStatus, st); diff != "" {
		t.Errorf("GET /panic Status (-want +got):\n%s", diff)
	}
	wantOK()

	// After the headers are out, the response can only be cut short; the
	// client must see an error, not a complete-looking "partial".
	if _, body, err := get("/panic-late"); err == nil {
		t.Errorf("GET /panic-late: got a complete response %q, want a broken one", body)
	}
	wantOK()

	if _, _, err := get("/abort"); err == nil {
		t.Errorf("GET /abort: got a response, want the connection aborted")
	}
	wantOK()

	out := logs.String()
	for _, want := range []string{`"msg":"panic serving request"`, `"panic":"boom"`, `"panic":"late boom"`, `"stack":"goroutine `, `"request_id":"panic-test"`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	if n := strings.Count(out, `"msg":"panic serving request"`); n != 2 {
		t.Errorf("got %d panic log entries, want 2 (http.ErrAbortHandler is not a bug)", n)
	}
	var logged bool
	for line := range strings.Lines(out) {
		if strings.Contains(line, `"msg":"request"`) && strings.Contains(line, `"path":"/panic"`) {
			logged = true
			if !strings.Contains(line, `"status":500`) {
				t.Errorf("access log for /panic: got %s, want status 500", line)
			}
		}
	}
	if !logged {
		t.Error("no access log line for /panic")
	}
}

func TestResponseWriterUnwraps(t *testing.T) {
	// http.ResponseController must reach the real writer through the
	// middleware's wrapper: ReverseProxy relies on it for flushing and
	// for upgrades.
	rec := httptest.NewRecorder()
	rw := wrapResponseWriter(rec, newConnTracker())
	if err := http.NewResponseController(rw).Flush(); err != nil {
		t.Errorf("Flush through the wrapper: %v", err)
	}
	if !rec.Flushed {
		t.Error("the recorder was not flushed")
	}
	if rw.status != http.StatusOK {
		t.Errorf("status after a flush: got %d, want 200", rw.status)
	}
	// httptest.ResponseRecorder cannot be hijacked; the error must come
	// through, not a panic or a nil conn.
	if _, _, err := http.NewResponseController(rw).Hijack(); !errors.Is(err, http.ErrNotSupported) {
		t.Errorf("Hijack through the wrapper: got %v, want http.ErrNotSupported", err)
	}
	if rw.hijacked {
		t.Error("a failed hijack marked the response hijacked")
	}
	if got := wrapResponseWriter(rw, nil); got != rw {
		t.Error("wrapping a wrapper made a second wrapper")
	}
}

func TestWriteHeaderRecordsFinalStatus(t *testing.T) {
	rw := wrapResponseWriter(httptest.NewRecorder(), nil)
	rw.WriteHeader(http.StatusEarlyHints)
	rw.WriteHeader(http.StatusForbidden)
	rw.WriteHeader(http.StatusOK) // superfluous; net/http ignores it too
	if rw.status != http.StatusForbidden {
		t.Errorf("status: got %d, want 403", rw.status)
	}
}

func TestMethodLabel(t *testing.T) {
	for in, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "get": "OTHER", "BREW": "OTHER"} {
		if got := methodLabel(in); got != want {
			t.Errorf("methodLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
