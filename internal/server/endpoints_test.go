package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestPomeriumPathsStayHere: /.pomerium/ belongs to Portcullis on every
// route, as it does to Pomerium. A path there that is no endpoint is not
// found, and never reaches the upstream; a body larger than
// LIMIT_SIGN_IN_BODY_BYTES is refused there with 413.
func TestPomeriumPathsStayHere(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	opts := insecureOptions(t, "https://app.example.com")
	r := &opts.Routes[0]
	tlsUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
	}), r)
	r.AllowPublicUnauthenticatedAccess = true
	opts.Limits.SignInBodyBytes = 1024
	s := newUnservedServer(t, opts)
	do := func(method, path string, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "https://app.example.com"+path, strings.NewReader(body))
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req.WithContext(context.Background()))
		return rec
	}
	for _, path := range []string{"/.pomerium/jwt", "/.pomerium/unknown/x", "/.pomerium/api/v1/other"} {
		if rec := do("GET", path, ""); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "not a Portcullis endpoint") {
			t.Errorf("GET %s: got %d %q, want 404 not a Portcullis endpoint", path, rec.Code, rec.Body.String())
		}
	}
	if rec := do("POST", "/.pomerium/sign_out", strings.Repeat("x", 1025)); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /.pomerium/sign_out with 1025 bytes: got %d %q, want 413", rec.Code, rec.Body.String())
	}
	// Paths that only begin alike are the upstream's.
	for _, path := range []string{"/.pomeriumx", "/api/.pomerium/jwt"} {
		if rec := do("GET", path, ""); rec.Code != http.StatusOK {
			t.Errorf("GET %s: got %d %q, want the upstream's 200", path, rec.Code, rec.Body.String())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := "/.pomeriumx /api/.pomerium/jwt"; strings.Join(seen, " ") != want {
		t.Errorf("upstream saw %q, want %q", strings.Join(seen, " "), want)
	}
}
