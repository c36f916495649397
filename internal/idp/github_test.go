package idp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

// fakeGitHub serves the parts of GitHub's OAuth flow and REST API that the
// GitHub provider uses, as GitHub Enterprise Server lays them out (the API
// under /api/v3), and checks what it is sent.
type fakeGitHub struct {
	t   *testing.T
	srv *httptest.Server

	mu         sync.Mutex
	challenges map[string]string // authorization code → PKCE challenge
	access     map[string]bool   // valid access tokens
	refresh    map[string]bool   // valid refresh tokens
	expiring   bool              // issue refresh tokens, as a GitHub App with expiring tokens
	emails     []map[string]any
	teamsNext  string // when set, the Link of the last teams page (to test where it points)
	apiStatus  int    // when set, every API call answers this
	n          int
}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	f := &fakeGitHub{
		t:          t,
		challenges: map[string]string{},
		access:     map[string]bool{},
		refresh:    map[string]bool{},
		emails: []map[string]any{
			{"email": "octo@old.example.com", "primary": false, "verified": true},
			{"email": "octocat@example.com", "primary": true, "verified": true},
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login/oauth/access_token", f.token)
	mux.HandleFunc("GET /api/v3/user", f.api(func(r *http.Request) any {
		return map[string]any{"id": 583231, "login": "octocat", "name": "The Octocat"}
	}))
	mux.HandleFunc("GET /api/v3/user/emails", f.api(func(r *http.Request) any { return f.emails }))
	mux.HandleFunc("GET /api/v3/user/teams", f.teams)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// authorize is GitHub's consent: it issues a code bound to the challenge
// in the sign-in URL.
func (f *fakeGitHub) authorize(authURL string) string {
	u, err := url.Parse(authURL)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	code := fmt.Sprintf("code-%d", f.n)
	f.challenges[code] = u.Query().Get("code_challenge")
	return code
}

// token is the token endpoint. Like GitHub, it answers errors with 200 and
// an error member.
func (f *fakeGitHub) token(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("Accept"); got != "application/json" {
		f.t.Errorf("token request Accept: got %q, want application/json", got)
	}
	if r.PostFormValue("client_id") != "client" || r.PostFormValue("client_secret") != "secret" {
		writeJSON(w, map[string]string{"error": "incorrect_client_credentials"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.PostFormValue("grant_type") {
	case "authorization_code":
		challenge, ok := f.challenges[r.PostFormValue("code")]
		delete(f.challenges, r.PostFormValue("code"))
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		if !ok || challenge != base64.RawURLEncoding.EncodeToString(sum[:]) {
			writeJSON(w, map[string]string{"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."})
			return
		}
		if got := r.PostFormValue("redirect_uri"); got != "https://auth.example.com/oauth2/callback" {
			f.t.Errorf("redirect_uri: got %q", got)
		}
	case "refresh_token":
		rt := r.PostFormValue("refresh_token")
		if !f.refresh[rt] {
			writeJSON(w, map[string]string{"error": "bad_refresh_token"})
			return
		}
		delete(f.refresh, rt) // used once
	default:
		writeJSON(w, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	f.n++
	at := fmt.Sprintf("gho_%d", f.n)
	f.access[at] = true
	resp := map[string]any{"access_token": at, "token_type": "bearer", "scope": "read:org,user:email"}
	if f.expiring {
		rt := fmt.Sprintf("ghr_%d", f.n)
		f.refresh[rt] = true
		resp["refresh_token"], resp["expires_in"] = rt, 28800
	}
	writeJSON(w, resp)
}

func (f *fakeGitHub) api(answer func(*http.Request) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Accept"); got != "application/vnd.github+json" {
			f.t.Errorf("%s Accept: got %q", r.URL.Path, got)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case f.apiStatus != 0:
			http.Error(w, http.StatusText(f.apiStatus), f.apiStatus)
		case !f.access[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"message": "Bad credentials"})
		default:
			writeJSON(w, answer(r))
		}
	}
}

// teams answers in two pages, as GitHub paginates.
func (f *fakeGitHub) teams(w http.ResponseWriter, r *http.Request) {
	if got := r.URL.Query().Get("per_page"); got != "100" {
		f.t.Errorf("teams per_page: got %q, want 100", got)
	}
	team := func(org, slug string) map[string]any {
		return map[string]any{"slug": slug, "name": strings.ToUpper(slug), "organization": map[string]any{"login": org}}
	}
	f.api(func(r *http.Request) any {
		if r.URL.Query().Get("page") == "2" {
			if f.teamsNext != "" {
				w.Header().Set("Link", `<`+f.teamsNext+`>; rel="next"`)
			}
			return []any{team("other", "ops")}
		}
		next := f.srv.URL + "/api/v3/user/teams?per_page=100&page=2"
		w.Header().Set("Link", `<`+next+`>; rel="next", <`+next+`>; rel="last"`)
		return []any{team("acme", "sre"), team("acme", "dev")}
	})(w, r)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func newTestGitHub(t *testing.T, f *fakeGitHub, params map[string]string) Provider {
	t.Helper()
	p, err := New(Options{
		Provider: "github", ProviderURL: f.srv.URL + "/", ClientID: "client", ClientSecret: "secret",
		RedirectURL: "https://auth.example.com/oauth2/callback", RequestParams: params,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// signIn runs the flow up to Exchange.
func signIn(t *testing.T, f *fakeGitHub, p Provider) (*Identity, *Tokens) {
	t.Helper()
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	authURL, err := p.AuthCodeURL(ctx, "the-state", "the-nonce", verifier)
	if err != nil {
		t.Fatal(err)
	}
	id, toks, err := p.Exchange(ctx, f.authorize(authURL), verifier, "the-nonce")
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return id, toks
}

var octocat = &Identity{Subject: "583231", Email: "octocat@example.com", Name: "The Octocat", Groups: []string{"acme/sre", "acme/dev", "other/ops"}}

func TestGitHubAuthCodeURL(t *testing.T) {
	f := newFakeGitHub(t)
	p := newTestGitHub(t, f, map[string]string{"login": "octocat", "allow_signup": "false"})
	verifier := oauth2.GenerateVerifier()
	raw, err := p.AuthCodeURL(context.Background(), "the-state", "the-nonce", verifier)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(raw)
	if got, want := u.Scheme+"://"+u.Host+u.Path, f.srv.URL+"/login/oauth/authorize"; got != want {
		t.Errorf("authorize endpoint: got %q, want %q", got, want)
	}
	sum := sha256.Sum256([]byte(verifier))
	q := u.Query()
	for k, want := range map[string]string{
		"client_id":             "client",
		"redirect_uri":          "https://auth.example.com/oauth2/callback",
		"scope":                 "user:email read:org",
		"state":                 "the-state",
		"code_challenge_method": "S256",
		"code_challenge":        base64.RawURLEncoding.EncodeToString(sum[:]),
		"login":                 "octocat",
		"allow_signup":          "false",
		"nonce":                 "", // GitHub has no ID token to carry it
	} {
		if got := q.Get(k); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
}

func TestGitHubSignInAndRefresh(t *testing.T) {
	f := newFakeGitHub(t)
	p := newTestGitHub(t, f, nil)
	ctx := context.Background()

	id, toks := signIn(t, f, p)
	if diff := cmp.Diff(octocat, id); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(toks.RefreshToken, githubAccessMark) || toks.IDToken != "" {
		t.Errorf("tokens: got refresh %q, ID token %q: want the marked access token and no ID token", toks.RefreshToken, toks.IDToken)
	}
	if d := time.Until(toks.Expiry); d < 50*time.Minute || d > githubRecheck {
		t.Errorf("expiry: in %s, want about %s", d, githubRecheck)
	}

	t.Run("refresh reads the user again with the access token", func(t *testing.T) {
		f.mu.Lock()
		f.emails[1]["email"] = "octocat@new.example.com"
		f.mu.Unlock()
		id, toks2, err := p.Refresh(ctx, toks.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		if id.Email != "octocat@new.example.com" || toks2.RefreshToken != toks.RefreshToken {
			t.Errorf("got email %q, refresh %q: want the new email and the same token", id.Email, toks2.RefreshToken)
		}
	})

	t.Run("a revoked token ends the session, as a refusal", func(t *testing.T) {
		f.mu.Lock()
		clear(f.access)
		f.mu.Unlock()
		_, _, err := p.Refresh(ctx, toks.RefreshToken)
		if err == nil || errors.Is(err, ErrProviderUnavailable) || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("got %v, want a refusal saying the token may be revoked", err)
		}
	})
}

func TestGitHubExpiringTokens(t *testing.T) {
	f := newFakeGitHub(t)
	f.expiring = true
	p := newTestGitHub(t, f, nil)
	ctx := context.Background()

	_, toks := signIn(t, f, p)
	if !strings.HasPrefix(toks.RefreshToken, "ghr_") {
		t.Fatalf("refresh token: got %q, want GitHub's", toks.RefreshToken)
	}
	if d := time.Until(toks.Expiry); d < 7*time.Hour {
		t.Errorf("expiry: in %s, want the token's eight hours", d)
	}
	id, toks2, err := p.Refresh(ctx, toks.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(octocat, id); diff != "" {
		t.Errorf("identity after refresh (-want +got):\n%s", diff)
	}
	if toks2.RefreshToken == toks.RefreshToken {
		t.Error("the refresh token did not rotate")
	}
	_, _, err = p.Refresh(ctx, toks.RefreshToken)
	if err == nil || errors.Is(err, ErrProviderUnavailable) || !strings.Contains(err.Error(), "bad_refresh_token") {
		t.Errorf("reusing a refresh token: got %v, want GitHub's refusal", err)
	}
}

func TestGitHubRefusals(t *testing.T) {
	ctx := context.Background()
	t.Run("wrong PKCE verifier", func(t *testing.T) {
		f := newFakeGitHub(t)
		p := newTestGitHub(t, f, nil)
		authURL, _ := p.AuthCodeURL(ctx, "s", "n", oauth2.GenerateVerifier())
		_, _, err := p.Exchange(ctx, f.authorize(authURL), oauth2.GenerateVerifier(), "n")
		if err == nil || errors.Is(err, ErrProviderUnavailable) || !strings.Contains(err.Error(), "bad_verification_code") {
			t.Fatalf("got %v, want GitHub's refusal", err)
		}
	})
	t.Run("unverified primary email", func(t *testing.T) {
		f := newFakeGitHub(t)
		f.emails = []map[string]any{
			{"email": "verified@example.com", "primary": false, "verified": true},
			{"email": "ceo@example.com", "primary": true, "verified": false},
		}
		p := newTestGitHub(t, f, nil)
		verifier := oauth2.GenerateVerifier()
		authURL, _ := p.AuthCodeURL(ctx, "s", "n", verifier)
		_, _, err := p.Exchange(ctx, f.authorize(authURL), verifier, "n")
		if err == nil || !strings.Contains(err.Error(), "no verified primary email") {
			t.Fatalf("got %v, want a refusal for the unverified email", err)
		}
	})
	t.Run("a next page on another host is not followed", func(t *testing.T) {
		var leaked atomic.Bool
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "" {
				leaked.Store(true)
			}
			writeJSON(w, []any{})
		}))
		defer other.Close()
		f := newFakeGitHub(t)
		f.teamsNext = other.URL + "/api/v3/user/teams?page=3"
		p := newTestGitHub(t, f, nil)
		verifier := oauth2.GenerateVerifier()
		authURL, _ := p.AuthCodeURL(ctx, "s", "n", verifier)
		_, _, err := p.Exchange(ctx, f.authorize(authURL), verifier, "n")
		if err == nil || !strings.Contains(err.Error(), "is not on the API's host") {
			t.Errorf("got %v, want a refusal of the foreign next page", err)
		}
		if leaked.Load() {
			t.Error("the access token was sent to another host")
		}
	})
}

func TestGitHubUnavailable(t *testing.T) {
	ctx := context.Background()
	t.Run("API answers 502", func(t *testing.T) {
		f := newFakeGitHub(t)
		p := newTestGitHub(t, f, nil)
		_, toks := signIn(t, f, p)
		f.mu.Lock()
		f.apiStatus = http.StatusBadGateway
		f.mu.Unlock()
		if _, _, err := p.Refresh(ctx, toks.RefreshToken); !errors.Is(err, ErrProviderUnavailable) {
			t.Errorf("got %v, want ErrProviderUnavailable", err)
		}
	})
	t.Run("GitHub down", func(t *testing.T) {
		f := newFakeGitHub(t)
		p := newTestGitHub(t, f, nil)
		_, toks := signIn(t, f, p)
		verifier := oauth2.GenerateVerifier()
		authURL, _ := p.AuthCodeURL(ctx, "s", "n", verifier)
		code := f.authorize(authURL)
		f.srv.Close()
		if _, _, err := p.Exchange(ctx, code, verifier, "n"); !errors.Is(err, ErrProviderUnavailable) {
			t.Errorf("Exchange: got %v, want ErrProviderUnavailable", err)
		}
		if _, _, err := p.Refresh(ctx, toks.RefreshToken); !errors.Is(err, ErrProviderUnavailable) {
			t.Errorf("Refresh: got %v, want ErrProviderUnavailable", err)
		}
	})
}

func TestGitHubAPIURL(t *testing.T) {
	tests := []struct{ web, want string }{
		{"https://github.com", "https://api.github.com"},
		{"https://GitHub.com", "https://api.github.com"},
		{"https://octocorp.ghe.com", "https://api.octocorp.ghe.com"},
		{"https://github.example.com", "https://github.example.com/api/v3"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v3"},
	}
	for _, tc := range tests {
		web, _ := url.Parse(tc.web)
		if got := githubAPI(web).String(); got != tc.want {
			t.Errorf("githubAPI(%q): got %q, want %q", tc.web, got, tc.want)
		}
	}
}

func TestNextLink(t *testing.T) {
	tests := []struct{ header, want string }{
		{"", ""},
		{`<https://api.github.com/user/teams?page=2>; rel="next", <https://api.github.com/user/teams?page=5>; rel="last"`, "https://api.github.com/user/teams?page=2"},
		{`<https://api.github.com/user/teams?page=1>; rel="prev", <https://api.github.com/user/teams?page=1>; rel="first"`, ""},
		{`<https://api.github.com/x?page=3>;rel=next`, "https://api.github.com/x?page=3"},
		{`https://api.github.com/x?page=3; rel="next"`, ""},
	}
	for _, tc := range tests {
		if got := nextLink(tc.header); got != tc.want {
			t.Errorf("nextLink(%q): got %q, want %q", tc.header, got, tc.want)
		}
	}
}
