package idp_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/internal/idp"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// The generic OIDC provider against a real OpenID provider this project did
// not write (zitadel's example OP, see testenv.OIDCProvider), signing in
// through its login form. That provider puts email and name only in
// userinfo, not in the ID token.

const (
	callback = "http://127.0.0.1:1/oauth2/callback" // never requested: SignIn stops there
	email    = "someuser@example.com"
	password = "correct horse"
)

var users = []testenv.OIDCUser{{Email: email, Password: password, FirstName: "Some", LastName: "User"}}

func newOIDC(t *testing.T, op *testenv.OIDCProvider) idp.Provider {
	t.Helper()
	p, err := idp.New(idp.Options{
		Provider: "oidc", ProviderURL: op.Issuer, ClientID: op.ClientID, ClientSecret: op.ClientSecret,
		RedirectURL: callback, RequestParams: map[string]string{"login_hint": email},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// login signs in through the provider's form and returns the code.
func login(t *testing.T, ctx context.Context, p idp.Provider, nonce, verifier string) string {
	t.Helper()
	authURL, err := p.AuthCodeURL(ctx, "the-state", nonce, verifier)
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	final, _, err := testenv.NewBrowser(nil).SignIn(ctx, authURL, email, password, callback)
	if err != nil {
		t.Fatalf("signing in: %v", err)
	}
	if got := final.Query().Get("state"); got != "the-state" {
		t.Fatalf("state on the callback: got %q, want %q", got, "the-state")
	}
	return final.Query().Get("code")
}

func TestOIDCSignInAndRefresh(t *testing.T) {
	op := testenv.NewOIDCProvider(t, []string{callback}, users)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := newOIDC(t, op)

	verifier := oauth2.GenerateVerifier()
	t.Run("sign-in URL", func(t *testing.T) {
		raw, err := p.AuthCodeURL(ctx, "the-state", "the-nonce", verifier)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(raw)
		sum := sha256.Sum256([]byte(verifier))
		for k, want := range map[string]string{
			"state": "the-state", "nonce": "the-nonce", "login_hint": email,
			"code_challenge_method": "S256", "code_challenge": base64.RawURLEncoding.EncodeToString(sum[:]),
			"scope": "openid email profile offline_access", "redirect_uri": callback,
		} {
			if got := u.Query().Get(k); got != want {
				t.Errorf("%s: got %q, want %q", k, got, want)
			}
		}
	})

	code := login(t, ctx, p, "the-nonce", verifier)
	id, toks, err := p.Exchange(ctx, code, verifier, "the-nonce")
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if id.Subject != "user-1" || id.Email != email || id.Name != "Some User" || len(id.Groups) != 0 {
		t.Errorf("identity: got %+v, want user-1, %s (from userinfo), Some User, no groups", id, email)
	}
	if toks.RefreshToken == "" || strings.Count(toks.IDToken, ".") != 2 || time.Until(toks.Expiry) <= 0 {
		t.Errorf("tokens: got refresh %t, ID token %t, expiry %s: want both and a future expiry",
			toks.RefreshToken != "", toks.IDToken != "", toks.Expiry)
	}

	t.Run("code reuse is refused", func(t *testing.T) {
		_, _, err := p.Exchange(ctx, code, verifier, "the-nonce")
		if err == nil || errors.Is(err, idp.ErrProviderUnavailable) {
			t.Fatalf("got %v, want a refusal", err)
		}
	})

	var refreshed *idp.Tokens
	t.Run("refresh", func(t *testing.T) {
		id2, toks2, err := p.Refresh(ctx, toks.RefreshToken)
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if id2.Subject != id.Subject || id2.Email != email {
			t.Errorf("identity after refresh: got %+v, want %+v", id2, id)
		}
		// This provider rotates refresh tokens on every use.
		if toks2.RefreshToken == "" || toks2.RefreshToken == toks.RefreshToken || time.Until(toks2.Expiry) <= 0 {
			t.Errorf("tokens after refresh: got a new refresh token %t, expiry %s: want a new one and a future expiry",
				toks2.RefreshToken != toks.RefreshToken, toks2.Expiry)
		}
		refreshed = toks2
	})

	t.Run("a used refresh token is refused", func(t *testing.T) {
		if refreshed == nil {
			t.Fatal("the refresh above failed")
		}
		_, _, err := p.Refresh(ctx, toks.RefreshToken)
		if err == nil || errors.Is(err, idp.ErrProviderUnavailable) {
			t.Fatalf("got %v, want a refusal", err)
		}
	})
}

func TestOIDCRefusals(t *testing.T) {
	op := testenv.NewOIDCProvider(t, []string{callback}, users)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := newOIDC(t, op)

	t.Run("nonce mismatch", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := login(t, ctx, p, "nonce-of-this-sign-in", verifier)
		_, _, err := p.Exchange(ctx, code, verifier, "nonce-of-another-sign-in")
		if err == nil || errors.Is(err, idp.ErrProviderUnavailable) || !strings.Contains(err.Error(), "nonce does not match") {
			t.Fatalf("got %v, want the nonce refused", err)
		}
	})
	t.Run("wrong PKCE verifier", func(t *testing.T) {
		code := login(t, ctx, p, "n", oauth2.GenerateVerifier())
		_, _, err := p.Exchange(ctx, code, oauth2.GenerateVerifier(), "n")
		if err == nil || errors.Is(err, idp.ErrProviderUnavailable) || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("got %v, want the provider's refusal", err)
		}
	})
	t.Run("no nonce", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := login(t, ctx, p, "n", verifier)
		if _, _, err := p.Exchange(ctx, code, verifier, ""); err == nil {
			t.Fatal("got no error for an exchange without a nonce")
		}
	})
	t.Run("unknown refresh token", func(t *testing.T) {
		_, _, err := p.Refresh(ctx, "not-a-refresh-token")
		if err == nil || errors.Is(err, idp.ErrProviderUnavailable) {
			t.Fatalf("got %v, want a refusal", err)
		}
	})
	t.Run("issuer that does not match", func(t *testing.T) {
		other, err := idp.New(idp.Options{Provider: "oidc", ProviderURL: strings.TrimSuffix(op.Issuer, "/"), ClientID: op.ClientID, RedirectURL: callback})
		if err != nil {
			t.Fatal(err)
		}
		_, err = other.AuthCodeURL(ctx, "s", "n", oauth2.GenerateVerifier())
		if err == nil || errors.Is(err, idp.ErrProviderUnavailable) || !strings.Contains(err.Error(), "set IDP_PROVIDER_URL to exactly that") {
			t.Fatalf("got %v, want a configuration error naming the issuer", err)
		}
	})
}

// TestOIDCProviderDown: every failure to reach the provider wraps
// ErrProviderUnavailable, before discovery and after it.
func TestOIDCProviderDown(t *testing.T) {
	op := testenv.NewOIDCProvider(t, []string{callback}, users)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := newOIDC(t, op)
	verifier := oauth2.GenerateVerifier()
	code := login(t, ctx, p, "n", verifier)
	_, toks, err := p.Exchange(ctx, code, verifier, "n")
	if err != nil {
		t.Fatal(err)
	}
	verifier2 := oauth2.GenerateVerifier()
	code2 := login(t, ctx, p, "n2", verifier2)
	fresh := newOIDC(t, op) // has not run discovery yet

	op.Close()

	if _, err := fresh.AuthCodeURL(ctx, "s", "n", verifier); !errors.Is(err, idp.ErrProviderUnavailable) {
		t.Errorf("AuthCodeURL (discovery): got %v, want ErrProviderUnavailable", err)
	}
	if _, _, err := p.Exchange(ctx, code2, verifier2, "n2"); !errors.Is(err, idp.ErrProviderUnavailable) {
		t.Errorf("Exchange: got %v, want ErrProviderUnavailable", err)
	}
	if _, _, err := p.Refresh(ctx, toks.RefreshToken); !errors.Is(err, idp.ErrProviderUnavailable) {
		t.Errorf("Refresh: got %v, want ErrProviderUnavailable", err)
	}
	if u := fresh.EndSessionURL(ctx, toks.IDToken, ""); u != "" {
		t.Errorf("EndSessionURL without discovery: got %q, want \"\"", u)
	}
}
