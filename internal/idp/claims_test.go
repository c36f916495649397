package idp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// claimsOP is a minimal OpenID provider whose answers a test sets: what
// the ID token and userinfo say, and whether the token endpoint and
// userinfo work. The real provider of the other OIDC tests cannot be made
// to send groups, a foreign userinfo, or a refresh without an ID token.
type claimsOP struct {
	srv    *httptest.Server
	signer jose.Signer

	mu              sync.Mutex     // guards the fields below
	idClaims        map[string]any // nil: no ID token in the token response
	userinfo        map[string]any
	userinfoStatus  int
	tokenStatus     int
	refreshIDClaims map[string]any // the ID token of a refresh response; nil: none
}

func newClaimsOP(t *testing.T) *claimsOP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	op := &claimsOP{signer: signer}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"issuer": op.srv.URL, "authorization_endpoint": op.srv.URL + "/authorize", "token_endpoint": op.srv.URL + "/token",
			"userinfo_endpoint": op.srv.URL + "/userinfo", "jwks_uri": op.srv.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		defer op.mu.Unlock()
		if op.tokenStatus != 0 {
			http.Error(w, "unavailable", op.tokenStatus)
			return
		}
		claims := op.idClaims
		if r.PostFormValue("grant_type") == "refresh_token" {
			claims = op.refreshIDClaims
		}
		resp := map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt"}
		if claims != nil {
			resp["id_token"] = op.sign(t, claims)
		}
		writeJSON(w, resp)
	})
	mux.HandleFunc("GET /userinfo", func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		defer op.mu.Unlock()
		if op.userinfoStatus != 0 {
			http.Error(w, "unavailable", op.userinfoStatus)
			return
		}
		writeJSON(w, op.userinfo)
	})
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	return op
}

// set changes the provider's answers.
func (op *claimsOP) set(f func()) {
	op.mu.Lock()
	defer op.mu.Unlock()
	f()
}

// sign makes an ID token for the test client with claims over the
// standard ones.
func (op *claimsOP) sign(t *testing.T, claims map[string]any) string {
	all := map[string]any{"iss": op.srv.URL, "aud": "client", "sub": "user-1", "nonce": "n",
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix()}
	for k, v := range claims {
		all[k] = v
	}
	payload, _ := json.Marshal(all)
	jws, err := op.signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func TestClaims(t *testing.T) {
	tests := []struct {
		name           string
		provider       string // default oidc
		idClaims       map[string]any
		userinfo       map[string]any
		userinfoStatus int
		want           *Identity
		wantErr        string
		wantUnavail    bool
	}{
		{
			name:     "everything in the ID token",
			idClaims: map[string]any{"email": "a@example.com", "email_verified": true, "name": "A", "groups": []string{"sre"}},
			userinfo: map[string]any{"sub": "user-1", "groups": []string{"not", "used"}},
			want:     &Identity{Subject: "user-1", Email: "a@example.com", Name: "A", Groups: []string{"sre"}},
		},
		{
			name:     "groups from userinfo when the ID token lacks them (GitLab)",
			provider: "gitlab",
			idClaims: map[string]any{"email": "a@example.com", "email_verified": true, "groups_direct": []string{"acme/sre"}},
			userinfo: map[string]any{"sub": "user-1", "groups": []string{"acme", "acme/sre"}},
			want:     &Identity{Subject: "user-1", Email: "a@example.com", Groups: []string{"acme", "acme/sre"}},
		},
		{
			name:     "groups in cognito:groups",
			provider: "cognito",
			idClaims: map[string]any{"email": "a@example.com", "email_verified": "true", "cognito:groups": []string{"admins"}},
			want:     &Identity{Subject: "user-1", Email: "a@example.com", Groups: []string{"admins"}},
		},
		{
			name:     "userinfo about another user is refused",
			idClaims: map[string]any{},
			userinfo: map[string]any{"sub": "user-2", "email": "boss@example.com"},
			wantErr:  "about another user than the ID token",
		},
		{
			name:     "ID token claims win over userinfo",
			idClaims: map[string]any{"email": "a@example.com", "email_verified": true},
			userinfo: map[string]any{"sub": "user-1", "email": "b@example.com", "email_verified": false, "groups": []string{"g"}},
			want:     &Identity{Subject: "user-1", Email: "a@example.com", Groups: []string{"g"}},
		},
		{
			name: "groups sent by reference are refused (Entra ID beyond 200 groups)",
			idClaims: map[string]any{"email": "a@example.com",
				"_claim_names":   map[string]any{"groups": "src1"},
				"_claim_sources": map[string]any{"src1": map[string]any{"endpoint": "https://graph.example.com/groups"}}},
			userinfo: map[string]any{"sub": "user-1"},
			wantErr:  `sent the "groups" claim by reference`,
		},
		{
			name:           "userinfo down, but the ID token has the email",
			idClaims:       map[string]any{"email": "a@example.com", "email_verified": true},
			userinfoStatus: http.StatusServiceUnavailable,
			want:           &Identity{Subject: "user-1", Email: "a@example.com"},
		},
		{
			name:           "userinfo down and no email",
			idClaims:       map[string]any{},
			userinfoStatus: http.StatusServiceUnavailable,
			wantUnavail:    true,
		},
		{
			name:     "email verified",
			idClaims: map[string]any{"email": "a@example.com", "email_verified": true},
			want:     &Identity{Subject: "user-1", Email: "a@example.com"},
		},
		{
			name:     "email verified, as a string (Cognito)",
			provider: "cognito",
			idClaims: map[string]any{"email": "a@example.com", "email_verified": "true"},
			want:     &Identity{Subject: "user-1", Email: "a@example.com"},
		},
		{
			// An address the person typed in and never confirmed would
			// become their Kubernetes user name.
			name:     "email not verified",
			idClaims: map[string]any{"email": "boss@example.com", "email_verified": false},
			wantErr:  `email address is not verified: "boss@example.com"`,
		},
		{
			name:     "email not verified, as a string",
			idClaims: map[string]any{"email": "boss@example.com", "email_verified": "false"},
			wantErr:  "not verified",
		},
		{
			name:     "email_verified of another type",
			idClaims: map[string]any{"email": "boss@example.com", "email_verified": 1},
			wantErr:  "not verified",
		},
		{
			// Some providers leave the claim out rather than send false.
			name:     "no email_verified at all",
			idClaims: map[string]any{"email": "boss@example.com"},
			userinfo: map[string]any{"sub": "user-1"},
			wantErr:  "sent no email_verified claim",
		},
		{
			name:     "azure: xms_edov says the tenant owns the domain",
			provider: "azure",
			idClaims: map[string]any{"email": "a@example.com", "xms_edov": true},
			want:     &Identity{Subject: "user-1", Email: "a@example.com"},
		},
		{
			// Entra ID's email claim is the user's mail attribute, which
			// many tenants let users and guests set (nOAuth).
			name:     "azure: no xms_edov",
			provider: "azure",
			idClaims: map[string]any{"email": "boss@example.com", "email_verified": true},
			userinfo: map[string]any{"sub": "user-1"},
			wantErr:  "add the optional claim xms_edov",
		},
		{
			name:     "azure: xms_edov false",
			provider: "azure",
			idClaims: map[string]any{"email": "boss@example.com", "xms_edov": false},
			wantErr:  "xms_edov is false",
		},
		{
			name:     "email not verified, in userinfo",
			idClaims: map[string]any{},
			userinfo: map[string]any{"sub": "user-1", "email": "boss@example.com", "email_verified": false},
			wantErr:  "not verified",
		},
		{
			name:     "no email anywhere",
			idClaims: map[string]any{},
			userinfo: map[string]any{"sub": "user-1"},
			wantErr:  "gave no email",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			op := newClaimsOP(t)
			op.set(func() { op.idClaims, op.userinfo, op.userinfoStatus = tc.idClaims, tc.userinfo, tc.userinfoStatus })
			if tc.provider == "" {
				tc.provider = "oidc"
			}
			provider := tc.provider
			if provider == "azure" {
				provider = "oidc" // azure's preset refuses the test's issuer URL
			}
			p, err := New(Options{Provider: provider, ProviderURL: op.srv.URL, ClientID: "client", ClientSecret: "secret"})
			if err != nil {
				t.Fatal(err)
			}
			if tc.provider == "azure" {
				p.(*OIDC).verifiedClaim, p.(*OIDC).verifiedHint = presets["azure"].verifiedClaim, presets["azure"].verifiedHint
			}
			id, _, err := p.Exchange(context.Background(), "code", "verifier", "n")
			switch {
			case tc.wantUnavail:
				if !errors.Is(err, ErrProviderUnavailable) {
					t.Fatalf("got %v, want ErrProviderUnavailable", err)
				}
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if diff := cmp.Diff(tc.want, id, ignoreClaims); diff != "" {
					t.Errorf("identity (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestRefreshWithoutIDToken: a refresh response need not carry an ID token
// (OpenID Connect Core 1.0 section 12.2); userinfo then says who it is.
func TestRefreshWithoutIDToken(t *testing.T) {
	op := newClaimsOP(t)
	op.set(func() {
		op.userinfo = map[string]any{"sub": "user-1", "email": "a@example.com", "email_verified": true, "groups": []string{"sre"}}
	})
	p, err := New(Options{Provider: "oidc", ProviderURL: op.srv.URL, ClientID: "client", ClientSecret: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	id, toks, err := p.Refresh(context.Background(), "rt")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&Identity{Subject: "user-1", Email: "a@example.com", Groups: []string{"sre"}}, id, ignoreClaims); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
	if toks.IDToken != "" || toks.RefreshToken != "rt" || time.Until(toks.Expiry) <= 0 {
		t.Errorf("tokens: got %+v, want no ID token, the refresh token, the access token's expiry", toks)
	}

	op.set(func() { op.userinfo = map[string]any{"email": "a@example.com"} })
	if _, _, err := p.Refresh(context.Background(), "rt"); err == nil || !strings.Contains(err.Error(), "no subject") {
		t.Errorf("userinfo without sub: got %v, want a refusal", err)
	}
}

// TestTokenEndpointErrors: a server error is an outage, an OAuth error a
// refusal.
func TestTokenEndpointErrors(t *testing.T) {
	op := newClaimsOP(t)
	p, err := New(Options{Provider: "oidc", ProviderURL: op.srv.URL, ClientID: "client", ClientSecret: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	op.set(func() { op.tokenStatus = http.StatusServiceUnavailable })
	if _, _, err := p.Exchange(context.Background(), "code", "v", "n"); !errors.Is(err, ErrProviderUnavailable) {
		t.Errorf("503: got %v, want ErrProviderUnavailable", err)
	}
	op.set(func() { op.tokenStatus = http.StatusBadRequest })
	if _, _, err := p.Exchange(context.Background(), "code", "v", "n"); err == nil || errors.Is(err, ErrProviderUnavailable) {
		t.Errorf("400: got %v, want a refusal", err)
	}
}

// TestForeignIDTokensRefused: an ID token that another issuer signed for,
// one for another client, an expired one, and one for another sign-in
// (nonce) are each refused, and no identity comes out.
func TestForeignIDTokensRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		claims  map[string]any
		wantErr string
	}{
		{"another issuer", map[string]any{"iss": "https://other-issuer.example"}, "issuer"},
		{"another audience", map[string]any{"aud": "someone-else"}, "audience"},
		{"expired", map[string]any{"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()}, "expired"},
		{"another sign-in's nonce", map[string]any{"nonce": "other"}, "nonce"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newClaimsOP(t)
			claims := map[string]any{"email": "a@example.com"}
			for k, v := range tc.claims {
				claims[k] = v
			}
			op.set(func() { op.idClaims = claims })
			p, err := New(Options{Provider: "oidc", ProviderURL: op.srv.URL, ClientID: "client", ClientSecret: "secret"})
			if err != nil {
				t.Fatal(err)
			}
			id, _, err := p.Exchange(context.Background(), "code", "verifier", "n")
			if err == nil || id != nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got identity %+v, error %v; want a refusal mentioning %q", id, err, tc.wantErr)
			}
		})
	}
}

// ignoreClaims leaves Identity.Claims out of a comparison: TestTextClaims
// and TestCustomClaimsReachTheIdentity cover them.
var ignoreClaims = cmpopts.IgnoreFields(Identity{}, "Claims")

// TestCustomClaimsReachTheIdentity: every text claim of the ID token and
// userinfo is in the identity for claim/<name> policies, the ID token's
// winning; others are left out.
func TestCustomClaimsReachTheIdentity(t *testing.T) {
	op := newClaimsOP(t)
	op.set(func() {
		op.idClaims = map[string]any{"email": "a@example.com", "email_verified": true, "department": "eng",
			"roles": []string{"admin", "dev"}, "employee_number": 1234, "address": map[string]any{"country": "NL"}}
		op.userinfo = map[string]any{"sub": "user-1", "department": "sales", "cost_center": "cc-7"}
	})
	p, err := New(Options{Provider: "oidc", ProviderURL: op.srv.URL, ClientID: "client", ClientSecret: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := p.Exchange(context.Background(), "code", "verifier", "n")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{"department": {"eng"}, "roles": {"admin", "dev"}, "cost_center": {"cc-7"}, "email": {"a@example.com"}} {
		if diff := cmp.Diff(want, id.Claims[name]); diff != "" {
			t.Errorf("claim %s (-want +got):\n%s", name, diff)
		}
	}
	for _, name := range []string{"employee_number", "address", "email_verified", "exp"} {
		if v, ok := id.Claims[name]; ok {
			t.Errorf("claim %s kept as %q: only text claims are", name, v)
		}
	}
}

func TestTextClaims(t *testing.T) {
	long := strings.Repeat("x", maxClaimBytes+1)
	many := make([]any, maxClaimValues+1)
	for i := range many {
		many[i] = "v"
	}
	got := textClaims(map[string]any{
		"a":                                 "1",
		"b":                                 []any{"x", "y"},
		"empty":                             []any{},
		"mixed":                             []any{"x", 1},
		"number":                            1.5,
		"bool":                              true,
		"too long":                          long,
		"too many":                          many,
		strings.Repeat("n", maxClaimName+1): "v",
	})
	want := map[string][]string{"a": {"1"}, "b": {"x", "y"}, "empty": {}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// The bounds hold whatever comes.
	flood := map[string]any{}
	for i := range 1000 {
		flood[fmt.Sprintf("claim-%04d", i)] = strings.Repeat("v", 1000)
	}
	got = textClaims(flood)
	total := 0
	for k, vv := range got {
		total += len(k)
		for _, v := range vv {
			total += len(v)
		}
	}
	if len(got) > maxClaims || total > maxClaimsTotal {
		t.Errorf("kept %d claims of %d bytes, want at most %d and %d", len(got), total, maxClaims, maxClaimsTotal)
	}
}
