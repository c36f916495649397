package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
)

// The server verifies a token once and answers its next requests from the
// verified-token cache, which all routes share; a cached token is still
// refused on a route it was not issued for, and a refused one is not
// remembered.
func TestAuthenticateCachesVerifiedTokens(t *testing.T) {
	opts := insecureOptions(t, benchFrom, "https://other.example.com")
	s, err := newServer(opts, nil, infallible(namedRoute))
	if err != nil {
		t.Fatal(err)
	}
	if s.tokens == nil {
		t.Fatal("the server has no verified-token cache")
	}
	k8s, other := &opts.Routes[0], &opts.Routes[1]
	tok := benchToken(t, opts, k8s)

	serve := func(route *config.Route, token string) (int, *identity.Identity, string) {
		t.Helper()
		var got *identity.Identity
		h := s.authenticate(route, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			got = identity.FromContext(r.Context())
		}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, kubectlRequest(token))
		return rec.Code, got, rec.Body.String()
	}

	var first *identity.Identity
	for i := range 3 {
		code, id, body := serve(k8s, tok)
		if code != http.StatusOK || id == nil || id.Email != "alice@example.com" {
			t.Fatalf("request %d: got %d, identity %+v, body %s; want alice", i, code, id, body)
		}
		if first == nil {
			first = id
		} else if !slicesShareArray(first.Groups, id.Groups) {
			t.Errorf("request %d: groups were decoded again: the token was verified again, not taken from the cache", i)
		}
	}
	if n := s.tokens.Len(); n != 1 {
		t.Errorf("cache holds %d tokens, want 1", n)
	}

	// The cached token on the other route: refused for its audience.
	code, id, body := serve(other, tok)
	if code != http.StatusUnauthorized || id != nil || !strings.Contains(body, "token is for another audience") {
		t.Errorf("token of %s on %s: got %d, identity %+v, body %s; want 401 for another audience", k8s.From, other.From, code, id, body)
	}

	// A forged token (another signature) is refused and not remembered.
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	if code, _, body := serve(k8s, forged); code != http.StatusUnauthorized {
		t.Errorf("forged token: got %d %s, want 401", code, body)
	}
	if n := s.tokens.Len(); n != 1 {
		t.Errorf("cache holds %d tokens after a refusal, want 1", n)
	}
}

// slicesShareArray reports whether a and b are the same non-empty slice.
func slicesShareArray(a, b []string) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}
