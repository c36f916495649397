package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/policy"
)

// TestPassIdentityHeaders: a route with pass_identity_headers sends its
// upstream the signed identity assertion, as Pomerium does, which checks
// against the key set the route host publishes; a client's own assertion
// never gets through, and a route without the setting sends none.
func TestPassIdentityHeaders(t *testing.T) {
	var (
		mu   sync.Mutex
		seen = map[string][]string{} // route host → assertions received
	)
	opts := insecureOptions(t, "https://app.example.com", "https://plain.example.com")
	tlsUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Host] = append(seen[r.Host], r.Header.Values("X-Pomerium-Jwt-Assertion")...)
		mu.Unlock()
	}), &opts.Routes[0], &opts.Routes[1])
	for i := range opts.Routes {
		r := &opts.Routes[i]
		r.PreserveHostHeader = true
		r.AllowAnyAuthenticatedUser = true
	}
	opts.Routes[0].PassIdentityHeaders = true
	s := newUnservedServer(t, opts)
	do := func(host, path string, h http.Header) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "https://"+host+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req.WithContext(context.Background()))
		return rec
	}
	for i, host := range []string{"app.example.com", "plain.example.com"} {
		tok := benchToken(t, opts, &opts.Routes[i])
		rec := do(host, "/", http.Header{
			"Authorization":            {"Bearer Pomerium-" + tok},
			"X-Pomerium-Jwt-Assertion": {"eyJhbGciOiJub25lIn0.eyJlbWFpbCI6ImFkbWluQGV4YW1wbGUuY29tIn0."},
		})
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: got %d %s", host, rec.Code, rec.Body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got := seen["plain.example.com"]; len(got) != 0 {
		t.Errorf("a route without pass_identity_headers sent %q", got)
	}
	got := seen["app.example.com"]
	if len(got) != 1 {
		t.Fatalf("the upstream received %d assertions, want exactly 1: %q", len(got), got)
	}

	// As an upstream checks it: with the route host's published keys.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(do("app.example.com", "/.well-known/pomerium/jwks.json", nil).Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(got[0], []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatalf("the assertion is not a JWS: %v", err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("the assertion's key is not in the route's key set")
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("the assertion does not verify: %v", err)
	}
	var claims struct {
		Iss, Aud, Sub, User, Email string
		Groups                     []string
	}
	json.Unmarshal(payload, &claims)
	if claims.Iss != "app.example.com" || claims.Aud != "app.example.com" || claims.Email != "alice@example.com" ||
		claims.Sub != "alice-id" || claims.User != "alice-id" || len(claims.Groups) != 3 {
		t.Errorf("claims: got %+v, want alice for app.example.com", claims)
	}

	// The upstream holds a signed statement of who alice is, for its own
	// host: sent back to Portcullis as a credential, it opens nothing.
	mu.Unlock()
	for _, h := range []http.Header{
		{"Authorization": {"Bearer Pomerium-" + got[0]}},
		{"Authorization": {"Pomerium " + got[0]}},
		{"X-Pomerium-Authorization": {got[0]}},
	} {
		if rec := do("app.example.com", "/", h); rec.Code != http.StatusUnauthorized {
			t.Errorf("the assertion replayed as %v: got %d, want 401", h, rec.Code)
		}
	}
	mu.Lock()
	if n := len(seen["app.example.com"]); n != 1 {
		t.Errorf("a replayed assertion reached the upstream: it received %d requests, want 1", n)
	}
}

// TestPolicyClaimsCannotBeForged: a claim the provider passes on (which a
// person may be able to set there) cannot stand in for the identity a
// policy decides on: email, sub, name and groups are always those
// authentication established.
func TestPolicyClaimsCannotBeForged(t *testing.T) {
	id := &identity.Identity{User: "alice-id", Email: "alice@example.com", Name: "Alice", Groups: []string{"dev"},
		Claims: map[string][]string{"email": {"admin@example.com"}, "sub": {"admin-id"}, "name": {"Admin"},
			"groups": {"admins"}, "department": {"eng"}}}
	want := map[string][]string{"email": {"alice@example.com"}, "sub": {"alice-id"}, "name": {"Alice"},
		"groups": {"dev"}, "department": {"eng"}}
	var req policy.Request
	setPerson(&req, id)
	for name, w := range want {
		if got, ok := req.Claims.Claim(name); !ok || !slices.Equal(got, w) {
			t.Errorf("claim %q: got %q, %v; want %q", name, got, ok, w)
		}
	}
	if got, ok := req.Claims.Claim("role"); ok {
		t.Errorf("claim \"role\", which the provider did not give: got %q, want none", got)
	}
}
