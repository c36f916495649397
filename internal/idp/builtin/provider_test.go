package builtin_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

func TestDiscoveryAndJWKS(t *testing.T) {
	for _, path := range []string{"", "/.portcullis/idp"} {
		t.Run("issuer path "+path, func(t *testing.T) {
			d := startIdP(t, options{path: path})
			resp, body := get(t, d.issuer+"/.well-known/openid-configuration")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("discovery: %s: %s", resp.Status, body)
			}
			var disc struct {
				Issuer        string   `json:"issuer"`
				Authorization string   `json:"authorization_endpoint"`
				Token         string   `json:"token_endpoint"`
				Userinfo      string   `json:"userinfo_endpoint"`
				JWKS          string   `json:"jwks_uri"`
				EndSession    string   `json:"end_session_endpoint"`
				Revocation    string   `json:"revocation_endpoint"`
				Scopes        []string `json:"scopes_supported"`
				Claims        []string `json:"claims_supported"`
				PKCE          []string `json:"code_challenge_methods_supported"`
				SigningAlgs   []string `json:"id_token_signing_alg_values_supported"`
			}
			if err := json.Unmarshal([]byte(body), &disc); err != nil {
				t.Fatalf("discovery document: %v", err)
			}
			if disc.Issuer != d.issuer {
				t.Errorf("issuer: got %q, want %q", disc.Issuer, d.issuer)
			}
			for name, ep := range map[string]string{"authorization": disc.Authorization, "token": disc.Token, "userinfo": disc.Userinfo, "jwks": disc.JWKS, "end_session": disc.EndSession, "revocation": disc.Revocation} {
				if !strings.HasPrefix(ep, d.issuer+"/") {
					t.Errorf("%s endpoint %q is not under the issuer %q", name, ep, d.issuer)
				}
			}
			if diff := cmp.Diff([]string{"S256"}, disc.PKCE); diff != "" {
				t.Errorf("code_challenge_methods_supported (-want +got):\n%s", diff)
			}
			for _, s := range []string{"openid", "email", "profile", "offline_access", "groups"} {
				if !slices.Contains(disc.Scopes, s) {
					t.Errorf("scopes_supported %v lacks %q", disc.Scopes, s)
				}
			}
			for _, c := range []string{"email", "email_verified", "name", "groups"} {
				if !slices.Contains(disc.Claims, c) {
					t.Errorf("claims_supported %v lacks %q", disc.Claims, c)
				}
			}
			if diff := cmp.Diff([]string{"RS256"}, disc.SigningAlgs); diff != "" {
				t.Errorf("id_token_signing_alg_values_supported (-want +got):\n%s", diff)
			}

			resp, body = get(t, disc.JWKS)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("JWKS: %s: %s", resp.Status, body)
			}
			var jwks struct {
				Keys []struct {
					Kty, Kid, Alg, Use, N, E string
					D                        string `json:"d"`
				} `json:"keys"`
			}
			if err := json.Unmarshal([]byte(body), &jwks); err != nil {
				t.Fatalf("JWKS document: %v", err)
			}
			if len(jwks.Keys) != 1 {
				t.Fatalf("JWKS has %d keys, want 1: %s", len(jwks.Keys), body)
			}
			k := jwks.Keys[0]
			if k.Kty != "RSA" || k.Alg != "RS256" || k.Use != "sig" || k.Kid == "" || k.N == "" || k.E == "" {
				t.Errorf("JWKS key: got %+v, want an RSA RS256 signing key with a kid", k)
			}
			if k.D != "" || strings.Contains(body, `"d"`) {
				t.Errorf("JWKS leaks the private key: %s", body)
			}

			// Outside the issuer's path there is nothing.
			if path != "" {
				resp, _ := get(t, "http://"+d.srv.Listener.Addr().String()+"/.well-known/openid-configuration")
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("discovery outside the issuer path: got %s, want 404", resp.Status)
				}
			}
		})
	}
}

// TestSignIn is the whole flow as Portcullis runs it: browser sign-in,
// code exchange with PKCE, ID token verified by go-oidc, userinfo.
func TestSignIn(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts options
	}{
		{name: "issuer at the root", opts: options{}},
		{name: "issuer with a path prefix", opts: options{path: "/.portcullis/idp"}},
		{name: "issuer with a trailing slash", opts: options{path: "/idp/"}},
		{name: "ECDSA signing key", opts: options{signingKey: ecKey}},
		{name: "Ed25519 signing key", opts: options{signingKey: edKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startIdP(t, tt.opts)
			f, code := d.signIn(t, aliceEmail, alicePassword)
			tok, err := d.exchange(t, code, f.verifier)
			if err != nil {
				t.Fatalf("exchanging the code: %v", err)
			}
			if tok.RefreshToken == "" {
				t.Error("no refresh token, though offline_access was asked for")
			}
			got := d.verify(t, tok)
			verified := true
			want := claims{
				Issuer:        d.issuer,
				Subject:       got.Subject,
				Email:         aliceEmail,
				EmailVerified: &verified,
				Name:          "Alice Liddell",
				Groups:        []string{"dev", "ops"},
				Nonce:         f.nonce,
				AMR:           []string{"pwd"},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ID token claims (-want +got):\n%s", diff)
			}
			if got.Subject == "" || strings.Contains(got.Subject, "@") {
				t.Errorf("sub %q: want an opaque, non-empty subject", got.Subject)
			}

			ui, err := d.userinfo(t.Context(), tok)
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			want.Issuer, want.Nonce, want.AMR = "", "", nil
			if diff := cmp.Diff(want, ui); diff != "" {
				t.Errorf("userinfo claims (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSignInClaims checks the claims of a person without groups or name,
// who types the email in another case.
func TestSignInClaims(t *testing.T) {
	d := startIdP(t, options{})
	f, code := d.signIn(t, strings.ToUpper(bobEmail), bobPassword)
	tok, err := d.exchange(t, code, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	got := d.verify(t, tok)
	if got.Email != bobEmail || got.Name != bobEmail || got.Groups == nil || len(got.Groups) != 0 {
		t.Errorf("claims: got email %q, name %q, groups %#v; want the email as written in the users file, as name too, and groups []", got.Email, got.Name, got.Groups)
	}
	raw, _ := tok.Extra("id_token").(string)
	if payload := mustPayload(t, raw); !strings.Contains(string(payload), `"groups":[]`) {
		t.Errorf("ID token: want \"groups\":[] for a person without groups, got %s", payload)
	}
}

func mustPayload(t *testing.T, jwt string) []byte {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWrongPasswordRefused(t *testing.T) {
	d := startIdP(t, options{})

	// The browser submits the form, and gets it back with the message.
	_, page, err := testenv.NewBrowser(nil).SignIn(t.Context(), d.newFlow().authURL, aliceEmail, "wrong password", redirectURI)
	if err == nil || !strings.Contains(err.Error(), "login form came back") {
		t.Fatalf("sign-in with a wrong password: got error %v, want the login form back", err)
	}
	if !strings.Contains(page, wrongCredentials) {
		t.Errorf("page after a wrong password lacks %q:\n%s", wrongCredentials, page)
	}

	// A wrong password and an unknown email get the same answer, byte for
	// byte but for the request id and the email typed.
	answer := func(email, password string) (int, string) {
		c, loginURL, id := loginPage(t, d.newFlow().authURL)
		resp, body := postLogin(t, c, loginURL, loginForm(id, email, password), nil)
		body = strings.ReplaceAll(body, id, "ID")
		return resp.StatusCode, strings.ReplaceAll(body, email, "EMAIL")
	}
	wrongStatus, wrongBody := answer(aliceEmail, "not her password")
	unknownStatus, unknownBody := answer("mallory@example.com", alicePassword)
	if wrongStatus != http.StatusUnauthorized || unknownStatus != http.StatusUnauthorized {
		t.Errorf("status: got %d (wrong password) and %d (unknown email), want 401 for both", wrongStatus, unknownStatus)
	}
	if diff := cmp.Diff(wrongBody, unknownBody); diff != "" {
		t.Errorf("the answers to a wrong password and to an unknown email differ (-wrong password +unknown email):\n%s", diff)
	}
	for _, leak := range []string{"unknown", "not found", "no such", "does not exist", "incorrect password"} {
		if strings.Contains(strings.ToLower(wrongBody), leak) {
			t.Errorf("the answer says %q", leak)
		}
	}
	// Empty and over-long passwords are refused the same way.
	for _, pw := range []string{"", alicePassword + strings.Repeat("x", 80)} {
		if status, body := answer(aliceEmail, pw); status != http.StatusUnauthorized || !strings.Contains(body, wrongCredentials) {
			t.Errorf("password of %d bytes: got %d, want 401 with %q", len(pw), status, wrongCredentials)
		}
	}
	// The log names the person, never the password.
	if logs := d.logs.String(); strings.Contains(logs, "not her password") || strings.Contains(logs, alicePassword) {
		t.Errorf("a password reached the log:\n%s", logs)
	}
}

func TestTooManyWrongPasswords(t *testing.T) {
	d := startIdP(t, options{})
	c, loginURL, id := loginPage(t, d.newFlow().authURL)
	for i := 1; i < 5; i++ {
		if resp, _ := postLogin(t, c, loginURL, loginForm(id, aliceEmail, "guess"), nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: got %s, want 401", i, resp.Status)
		}
	}
	if resp, _ := postLogin(t, c, loginURL, loginForm(id, aliceEmail, "guess"), nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("wrong password 5: got %s, want 429", resp.Status)
	}
	// The sign-in request is over: even the right password is refused.
	if resp, body := postLogin(t, c, loginURL, loginForm(id, aliceEmail, alicePassword), nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "expired") {
		t.Fatalf("right password after too many wrong ones: got %s, want 400 (sign-in expired)", resp.Status)
	}
}

// TestLoginForm checks the form's binding to the request and the browser.
func TestLoginForm(t *testing.T) {
	d := startIdP(t, options{})

	t.Run("success redirects to op's callback with 303", func(t *testing.T) {
		c, loginURL, id := loginPage(t, d.newFlow().authURL)
		resp, _ := postLogin(t, c, loginURL, loginForm(id, aliceEmail, alicePassword), nil)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, d.issuer+"/authorize/callback?id=") {
			t.Fatalf("got %s to %q, want 303 to %s/authorize/callback?id=…", resp.Status, loc, d.issuer)
		}
		// The request is used: posting again is refused.
		if resp, _ := postLogin(t, c, loginURL, loginForm(id, aliceEmail, alicePassword), nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("second post: got %s, want 400", resp.Status)
		}
	})
	t.Run("without the login cookie", func(t *testing.T) {
		_, loginURL, id := loginPage(t, d.newFlow().authURL)
		resp, body := postLogin(t, &http.Client{}, loginURL, loginForm(id, aliceEmail, alicePassword), nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "another browser") {
			t.Errorf("got %s, want 403 (another browser)", resp.Status)
		}
	})
	t.Run("from another browser", func(t *testing.T) {
		_, loginURL, id := loginPage(t, d.newFlow().authURL)
		other, _, _ := loginPage(t, d.newFlow().authURL) // has a login cookie of its own
		resp, _ := postLogin(t, other, loginURL, loginForm(id, aliceEmail, alicePassword), nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("got %s, want 403", resp.Status)
		}
		// Nor may the other browser open that request's page.
		r, err := other.Get(loginURL.String())
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("opening another browser's login page: got %s, want 403", r.Status)
		}
	})
	t.Run("cross-site post", func(t *testing.T) {
		c, loginURL, id := loginPage(t, d.newFlow().authURL)
		for _, h := range []http.Header{
			{"Sec-Fetch-Site": {"cross-site"}},
			{"Origin": {"https://evil.example"}},
		} {
			if resp, _ := postLogin(t, c, loginURL, loginForm(id, aliceEmail, alicePassword), h); resp.StatusCode != http.StatusForbidden {
				t.Errorf("post with %v: got %s, want 403", h, resp.Status)
			}
		}
	})
	t.Run("credentials in the query string are ignored", func(t *testing.T) {
		c, loginURL, id := loginPage(t, d.newFlow().authURL)
		u := *loginURL
		u.RawQuery = loginForm(id, aliceEmail, alicePassword).Encode()
		resp, _ := postLogin(t, c, &u, url.Values{"authRequestID": {id}}, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("got %s, want 401", resp.Status)
		}
	})
	t.Run("unknown request", func(t *testing.T) {
		c, loginURL, _ := loginPage(t, d.newFlow().authURL)
		if resp, _ := postLogin(t, c, loginURL, loginForm("no-such-request", aliceEmail, alicePassword), nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("got %s, want 400", resp.Status)
		}
		if resp, _ := get(t, d.issuer+"/login"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /login without a request: got %s, want 400", resp.Status)
		}
	})
	t.Run("other methods", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, d.issuer+"/login", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
			t.Errorf("PUT: got %s (Allow %q), want 405 with Allow", resp.Status, resp.Header.Get("Allow"))
		}
	})
	t.Run("page headers and accessibility", func(t *testing.T) {
		c, loginURL, _ := loginPage(t, d.newFlow(oauth2.SetAuthURLParam("login_hint", aliceEmail)).authURL)
		resp, err := c.Get(loginURL.String())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for h, want := range map[string]string{
			"Cache-Control":   "no-store",
			"X-Frame-Options": "DENY",
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s: got %q, want %q", h, got, want)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("Content-Security-Policy %q lacks frame-ancestors 'none'", csp)
		}
		page := string(body)
		for _, want := range []string{`<html lang="en">`, `<label for="email">`, `<label for="password">`, `autocomplete="current-password"`, `method="post"`, `value="` + aliceEmail + `"`} {
			if !strings.Contains(page, want) {
				t.Errorf("login page lacks %s", want)
			}
		}
	})
}

func TestLoginCookie(t *testing.T) {
	d := startIdP(t, options{path: "/.portcullis/idp"})
	f := d.newFlow()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(f.authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login page set %d cookies, want 1", len(cookies))
	}
	ck := cookies[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/.portcullis/idp/login" {
		t.Errorf("login cookie: got HttpOnly=%v SameSite=%v Path=%q, want HttpOnly, Lax, Path=/.portcullis/idp/login", ck.HttpOnly, ck.SameSite, ck.Path)
	}
	if ck.Secure {
		t.Error("login cookie is Secure on an http issuer: the browser would drop it")
	}
}

func TestCodeReuseRefused(t *testing.T) {
	d := startIdP(t, options{})
	f, code := d.signIn(t, aliceEmail, alicePassword)
	tok, err := d.exchange(t, code, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.exchange(t, code, f.verifier)
	if got := oauthErrorCode(t, err); got != "invalid_grant" {
		t.Errorf("second exchange of a code: got %q, want invalid_grant", got)
	}
	// The replay revokes what the code gave (RFC 6749 section 10.5).
	if _, err := d.refresh(t, tok.RefreshToken); err == nil {
		t.Error("the refresh token of a replayed code still works")
	}
	if _, err := d.userinfo(t.Context(), tok); err == nil {
		t.Error("the access token of a replayed code still works at userinfo")
	}
}

func TestPKCE(t *testing.T) {
	d := startIdP(t, options{})

	t.Run("verifier mismatch", func(t *testing.T) {
		f, code := d.signIn(t, aliceEmail, alicePassword)
		_, err := d.exchange(t, code, oauth2.GenerateVerifier())
		if got := oauthErrorCode(t, err); got != "invalid_grant" {
			t.Errorf("wrong verifier: got %q, want invalid_grant", got)
		}
		// A refused exchange does not use the code up: the client may
		// retry (x/oauth2 does, with its credentials in the form).
		if _, err := d.exchange(t, code, f.verifier); err != nil {
			t.Errorf("exchange with the right verifier after a wrong one: %v", err)
		}
	})
	t.Run("verifier missing", func(t *testing.T) {
		_, code := d.signIn(t, aliceEmail, alicePassword)
		_, err := d.exchange(t, code, "")
		if got := oauthErrorCode(t, err); got != "invalid_request" {
			t.Errorf("no verifier: got %q, want invalid_request", got)
		}
	})
	for name, opts := range map[string][]oauth2.AuthCodeOption{
		"no challenge":    nil,
		"plain challenge": {oauth2.SetAuthURLParam("code_challenge", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrs"), oauth2.SetAuthURLParam("code_challenge_method", "plain")},
	} {
		t.Run(name+" is refused at the authorize endpoint", func(t *testing.T) {
			authURL := d.oauth.AuthCodeURL("st", opts...)
			final, page, err := testenv.NewBrowser(nil).SignIn(t.Context(), authURL, aliceEmail, alicePassword, redirectURI)
			if err != nil {
				t.Fatalf("%v\n%s", err, page)
			}
			q := final.Query()
			if q.Get("error") != "invalid_request" || q.Get("code") != "" || q.Get("state") != "st" {
				t.Errorf("got redirect to %s, want error=invalid_request with the state and no code", final.Redacted())
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	d := startIdP(t, options{})
	f, code := d.signIn(t, aliceEmail, alicePassword)
	first, err := d.exchange(t, code, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	firstClaims := d.verify(t, first)

	second, err := d.refresh(t, first.RefreshToken)
	if err != nil {
		t.Fatalf("refreshing: %v", err)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh token not rotated: got %q after %q", second.RefreshToken, first.RefreshToken)
	}
	if second.AccessToken == first.AccessToken {
		t.Error("refresh returned the same access token")
	}
	got := d.verify(t, second)
	if got.Subject != firstClaims.Subject || got.Email != aliceEmail || !slices.Equal(got.Groups, []string{"dev", "ops"}) || got.Name != "Alice Liddell" {
		t.Errorf("refreshed ID token claims: got %+v, want alice's", got)
	}
	if got.Nonce != "" {
		t.Errorf("refreshed ID token carries nonce %q", got.Nonce)
	}
	// The rotated-out access token no longer works; the new one does.
	if _, err := d.userinfo(t.Context(), first); err == nil {
		t.Error("the access token issued with the old refresh token still works")
	}
	if _, err := d.userinfo(t.Context(), second); err != nil {
		t.Errorf("userinfo with the refreshed access token: %v", err)
	}

	third, err := d.refresh(t, second.RefreshToken)
	if err != nil {
		t.Fatalf("refreshing again: %v", err)
	}
	// Replaying a used refresh token is refused and revokes the chain
	// (RFC 9700 section 4.14.2).
	_, err = d.refresh(t, first.RefreshToken)
	if got := oauthErrorCode(t, err); got != "invalid_grant" {
		t.Errorf("reused refresh token: got %q, want invalid_grant", got)
	}
	if _, err := d.refresh(t, third.RefreshToken); err == nil {
		t.Error("the chain survived the replay of one of its refresh tokens")
	}
}

func TestRefreshNeedsOfflineAccess(t *testing.T) {
	d := startIdP(t, options{})
	d.oauth.Scopes = []string{"openid", "email"}
	f, code := d.signIn(t, aliceEmail, alicePassword)
	tok, err := d.exchange(t, code, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Error("a refresh token was issued without offline_access")
	}
	got := d.verify(t, tok)
	if got.Email != aliceEmail || got.Name != "" || !slices.Equal(got.Groups, []string{"dev", "ops"}) {
		t.Errorf("claims for scopes openid email: got %+v, want email and groups, no name", got)
	}
}

func TestRevocation(t *testing.T) {
	d := startIdP(t, options{})
	f, code := d.signIn(t, aliceEmail, alicePassword)
	tok, err := d.exchange(t, code, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	var disc struct {
		Revocation    string `json:"revocation_endpoint"`
		Introspection string `json:"introspection_endpoint"`
	}
	if err := d.oidc.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	// introspect asks the introspection endpoint (RFC 7662) about an
	// access token, as the client.
	introspect := func(accessToken string) (active bool, sub, client string) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, disc.Introspection,
			strings.NewReader(url.Values{"token": {accessToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, clientSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Active   bool   `json:"active"`
			Subject  string `json:"sub"`
			ClientID string `json:"client_id"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatalf("introspection: %s: %v", resp.Status, err)
		}
		return r.Active, r.Subject, r.ClientID
	}
	if active, sub, client := introspect(tok.AccessToken); !active || sub == "" || client != clientID {
		t.Errorf("introspection of a live token: got active=%v sub=%q client_id=%q, want active, a subject and %q", active, sub, client, clientID)
	}
	if active, _, _ := introspect("not-a-token"); active {
		t.Error("introspection of garbage: active")
	}
	revoke := func(user, pass string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, disc.Revocation,
			strings.NewReader(url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := revoke(clientID, "wrong secret"); got != http.StatusUnauthorized {
		t.Errorf("revocation with a wrong client secret: got %d, want 401", got)
	}
	if _, err := d.refresh(t, tok.RefreshToken); err != nil {
		t.Fatalf("the refresh token stopped working after a refused revocation: %v", err)
	}
	// That refresh rotated the token; sign in again for a fresh one.
	f, code = d.signIn(t, aliceEmail, alicePassword)
	if tok, err = d.exchange(t, code, f.verifier); err != nil {
		t.Fatal(err)
	}
	if got := revoke(clientID, clientSecret); got != http.StatusOK {
		t.Fatalf("revocation: got %d, want 200", got)
	}
	if _, err := d.refresh(t, tok.RefreshToken); err == nil {
		t.Error("a revoked refresh token still works")
	}
	if _, err := d.userinfo(t.Context(), tok); err == nil {
		t.Error("the access token of a revoked refresh token still works")
	}
	if active, _, _ := introspect(tok.AccessToken); active {
		t.Error("introspection says a revoked access token is active")
	}
}

func TestEndSession(t *testing.T) {
	d := startIdP(t, options{path: "/.portcullis/idp"})
	f, code := d.signIn(t, aliceEmail, alicePassword)
	tok, err := d.exchange(t, code, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	var disc struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := d.oidc.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	q := url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {postLogoutURI}, "state": {"bye"}}
	resp, body := get(t, disc.EndSession+"?"+q.Encode())
	if want := postLogoutURI + "?state=bye"; resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Fatalf("end_session: got %s to %q, want 302 to %q\n%s", resp.Status, resp.Header.Get("Location"), want, body)
	}
	if _, err := d.refresh(t, tok.RefreshToken); err == nil {
		t.Error("the refresh token still works after end_session")
	}

	// An unregistered post-logout URI is refused; none at all shows the
	// provider's own page.
	q.Set("post_logout_redirect_uri", "https://evil.example/")
	if resp, _ := get(t, disc.EndSession+"?"+q.Encode()); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("end_session to an unregistered URI: got %s, want 400", resp.Status)
	}
	resp, _ = get(t, disc.EndSession)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || loc != "/.portcullis/idp/signed-out" {
		t.Fatalf("end_session without a redirect: got %s to %q, want 302 to /.portcullis/idp/signed-out", resp.Status, loc)
	}
	resp, body = get(t, "http://"+d.srv.Listener.Addr().String()+loc)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "signed out") {
		t.Errorf("signed-out page: got %s: %s", resp.Status, body)
	}
}

// TestClientAuthentication checks that the token endpoint wants the
// client's secret, and that a public client must use PKCE alone.
func TestClientAuthentication(t *testing.T) {
	d := startIdP(t, options{})
	f, code := d.signIn(t, aliceEmail, alicePassword)
	bad := *d.oauth
	bad.ClientSecret = "not the secret"
	_, err := bad.Exchange(t.Context(), code, oauth2.VerifierOption(f.verifier))
	if got := oauthErrorCode(t, err); got != "invalid_client" {
		t.Errorf("wrong client secret: got %q, want invalid_client", got)
	}
}

// TestPublicClient signs in with a client that has no secret, as a CLI
// does: PKCE alone authenticates the exchange, and the redirect URI may use
// any loopback port (RFC 8252 section 7.3).
func TestPublicClient(t *testing.T) {
	d := startIdP(t, options{})
	const cliRedirect = "http://127.0.0.1:54321/callback"
	cli := &oauth2.Config{ClientID: publicClientID, Endpoint: d.oauth.Endpoint, RedirectURL: cliRedirect, Scopes: testScopes}
	verifier := oauth2.GenerateVerifier()
	authURL := cli.AuthCodeURL("cli-state", oauth2.S256ChallengeOption(verifier))
	final, page, err := testenv.NewBrowser(nil).SignIn(t.Context(), authURL, aliceEmail, alicePassword, cliRedirect)
	if err != nil {
		t.Fatalf("%v\n%s", err, page)
	}
	code := final.Query().Get("code")
	if code == "" {
		t.Fatalf("no code at %s", final.Redacted())
	}
	if _, err := cli.Exchange(t.Context(), code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Error("a public client exchanged a code with a wrong verifier")
	}
	tok, err := cli.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("public client exchange: %v", err)
	}
	idt, err := d.oidc.Verifier(&oidc.Config{ClientID: publicClientID}).Verify(t.Context(), tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	var c claims
	if err := idt.Claims(&c); err != nil || c.Email != aliceEmail {
		t.Errorf("public client ID token: email %q, error %v", c.Email, err)
	}
	// Another host than loopback is not a registered redirect.
	bad := *cli
	bad.RedirectURL = "http://evil.example:54321/callback"
	if resp, _ := get(t, bad.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("authorize with an unregistered redirect URI: got %s, want 400 (never a redirect to it)", resp.Status)
	}
}

func TestNewWarnsAndChecksConfig(t *testing.T) {
	aHash, _ := hashes(t)
	var logs logbuf.Buffer
	_, err := builtin.New(builtin.Config{
		Issuer:  "https://localhost:8443/.portcullis/idp",
		Users:   []builtin.User{{Email: aliceEmail, PasswordHash: aHash}},
		Clients: []builtin.Client{{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURI}}},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "development and demos") {
		t.Errorf("New did not warn that the provider is for development:\n%s", logs.String())
	}

	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  builtin.Config
		want []string // each must appear in the error
	}{
		{
			name: "everything missing",
			cfg:  builtin.Config{},
			want: []string{"the issuer is missing", "no users", "no clients"},
		},
		{
			name: "bad issuer, users and clients",
			cfg: builtin.Config{
				Issuer: "ftp://localhost/idp?x=1",
				Users: []builtin.User{
					{Email: "alice", PasswordHash: "secret"},
					{Email: aliceEmail, PasswordHash: aHash},
					{Email: strings.ToUpper(aliceEmail), PasswordHash: aHash},
				},
				Clients: []builtin.Client{
					{ID: "a", RedirectURIs: []string{"/relative"}},
					{ID: "a"},
				},
				AccessTokenTTL: time.Millisecond,
				SigningKey:     short,
			},
			want: []string{
				"want an https (or, for a laptop, http) URL",
				"email is not an email address",
				"plain-text password",
				"already used by user 2",
				`redirect URI "/relative"`,
				`ID "a" is registered twice`,
				"no redirect URIs",
				"the access token TTL is 1ms",
				"1024 bits is too short",
			},
		},
		{
			name: "issuer path with dot segments",
			cfg:  builtin.Config{Issuer: "https://localhost/a/../b"},
			want: []string{". or .. segments"},
		},
		{
			name: "issuer path with odd characters",
			cfg:  builtin.Config{Issuer: "https://localhost/{x}"},
			want: []string{"its path may hold only"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := builtin.New(tt.cfg)
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "secret") && tt.name != "everything missing" {
				// The plain-text "secret" typed as a hash must not be quoted.
				if regexp.MustCompile(`"secret"`).MatchString(err.Error()) {
					t.Errorf("error quotes the password typed as a hash:\n%v", err)
				}
			}
		})
	}
}
