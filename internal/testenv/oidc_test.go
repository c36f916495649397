package testenv

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestOIDCProviderLogin runs the authorization-code flow with PKCE against
// the test provider, signing in through its login form with Browser.
func TestOIDCProviderLogin(t *testing.T) {
	const redirect = "http://127.0.0.1:1/callback" // never requested: SignIn stops there
	p := NewOIDCProvider(t, []string{redirect}, []OIDCUser{{Email: "someuser@example.com", Password: "correct horse", FirstName: "Some", LastName: "User"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var disco struct {
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
		UserinfoEndpoint      string `json:"userinfo_endpoint"`
		Issuer                string `json:"issuer"`
	}
	getJSON(t, ctx, p.Issuer+".well-known/openid-configuration", "", &disco)
	if disco.Issuer != p.Issuer {
		t.Fatalf("discovery issuer: got %q, want %q", disco.Issuer, p.Issuer)
	}
	cfg := oauth2.Config{
		ClientID: p.ClientID, ClientSecret: p.ClientSecret, RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{AuthURL: disco.AuthorizationEndpoint, TokenURL: disco.TokenEndpoint},
		Scopes:   []string{"openid", "email", "profile"},
	}
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("state-123", oauth2.S256ChallengeOption(verifier))

	t.Run("wrong password is refused", func(t *testing.T) {
		_, _, err := NewBrowser(nil).SignIn(ctx, authURL, "someuser@example.com", "wrong", redirect)
		if err == nil || !strings.Contains(err.Error(), "sign-in refused") {
			t.Fatalf("got %v, want a sign-in refused error", err)
		}
	})

	final, _, err := NewBrowser(nil).SignIn(ctx, authURL, "someuser@example.com", "correct horse", redirect)
	if err != nil {
		t.Fatal(err)
	}
	if got := final.Query().Get("state"); got != "state-123" {
		t.Errorf("state: got %q, want %q", got, "state-123")
	}
	tok, err := cfg.Exchange(ctx, final.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchanging the code: %v", err)
	}
	if id, _ := tok.Extra("id_token").(string); strings.Count(id, ".") != 2 {
		t.Errorf("id_token: got %q, want a JWT", id)
	}
	var info struct {
		Email string `json:"email"`
	}
	getJSON(t, ctx, disco.UserinfoEndpoint, tok.AccessToken, &info)
	if info.Email != "someuser@example.com" {
		t.Errorf("userinfo email: got %q, want %q", info.Email, "someuser@example.com")
	}
}

func getJSON(t *testing.T, ctx context.Context, url, bearer string, v any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decoding: %v", url, err)
	}
}
