package builtin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// newTestStorage returns a storage with one user and one client on a clock
// the test moves.
func newTestStorage(t *testing.T) (*storage, *time.Time) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := newSigningKey(k)
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := makeAccounts([]User{{Email: "alice@example.com", PasswordHash: testHash}})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{Client: Client{ID: "c", Secret: "s", RedirectURIs: []string{"https://app.example/cb"}}, idTokenTTL: time.Hour}
	s := newStorage(accounts, []*client{c}, key, time.Hour, 24*time.Hour)
	now := time.Unix(1_000_000_000, 0)
	s.now = func() time.Time { return now }
	return s, &now
}

func testAuthRequest() *oidc.AuthRequest {
	return &oidc.AuthRequest{
		ClientID:            "c",
		RedirectURI:         "https://app.example/cb",
		Scopes:              []string{"openid", "email", "offline_access"},
		ResponseType:        oidc.ResponseTypeCode,
		CodeChallenge:       "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: oidc.CodeChallengeMethodS256,
	}
}

// signedIn runs a request through the login and code issue.
func signedIn(t *testing.T, s *storage, code string) *authRequest {
	t.Helper()
	ctx := context.Background()
	r, err := s.CreateAuthRequest(ctx, testAuthRequest(), "")
	if err != nil {
		t.Fatal(err)
	}
	var browser [32]byte
	if _, err := s.bindLogin(r.GetID(), browser); err != nil {
		t.Fatal(err)
	}
	if err := s.completeLogin(r.GetID(), browser, subjectOf("alice@example.com")); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAuthCode(ctx, r.GetID(), code); err != nil {
		t.Fatal(err)
	}
	a, err := s.AuthRequestByCode(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	return a.(*authRequest)
}

func TestStorageBoundsAuthRequests(t *testing.T) {
	s, now := newTestStorage(t)
	ctx := context.Background()
	for i := 0; i < maxAuthRequests; i++ {
		if _, err := s.CreateAuthRequest(ctx, testAuthRequest(), ""); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	_, err := s.CreateAuthRequest(ctx, testAuthRequest(), "")
	var oerr *oidc.Error
	if !errors.As(err, &oerr) || oerr.ErrorType != oidc.ServerError {
		t.Fatalf("request past the bound: got %v, want a server_error", err)
	}
	// Once they expire, they are swept and there is room again.
	*now = now.Add(authRequestTTL)
	if _, err := s.CreateAuthRequest(ctx, testAuthRequest(), ""); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if got := len(s.authRequests); got != 1 {
		t.Errorf("auth requests after the sweep: got %d, want 1", got)
	}
}

func TestStorageSweepsExpired(t *testing.T) {
	s, now := newTestStorage(t)
	ctx := context.Background()
	a := signedIn(t, s, "code-1")
	if _, _, _, err := s.CreateAccessAndRefreshTokens(ctx, a, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAuthRequest(ctx, a.id); err != nil {
		t.Fatal(err)
	}
	if len(s.accessTokens) != 1 || len(s.refreshTokens) != 1 || len(s.spentCodes) != 1 {
		t.Fatalf("got %d access, %d refresh, %d spent codes; want 1 each", len(s.accessTokens), len(s.refreshTokens), len(s.spentCodes))
	}
	*now = now.Add(24*time.Hour + sweepInterval)
	if _, err := s.CreateAuthRequest(ctx, testAuthRequest(), ""); err != nil { // a write sweeps
		t.Fatal(err)
	}
	if len(s.accessTokens)+len(s.refreshTokens)+len(s.spentCodes)+len(s.codes) != 0 {
		t.Errorf("after expiry: %d access, %d refresh, %d spent, %d codes left; want none",
			len(s.accessTokens), len(s.refreshTokens), len(s.spentCodes), len(s.codes))
	}
}

func TestStorageCodes(t *testing.T) {
	ctx := context.Background()

	t.Run("expires after a minute", func(t *testing.T) {
		s, now := newTestStorage(t)
		signedIn(t, s, "code-1")
		*now = now.Add(codeTTL)
		if _, err := s.AuthRequestByCode(ctx, "code-1"); err == nil {
			t.Error("an expired code was accepted")
		}
	})
	t.Run("one code per sign-in", func(t *testing.T) {
		s, _ := newTestStorage(t)
		a := signedIn(t, s, "code-1")
		if err := s.SaveAuthCode(ctx, a.id, "code-2"); err == nil {
			t.Error("a second code was issued for one sign-in")
		}
	})
	t.Run("no new code once redeemed", func(t *testing.T) {
		s, _ := newTestStorage(t)
		a := signedIn(t, s, "code-1")
		if _, _, err := s.CreateAccessToken(ctx, a); err != nil {
			t.Fatal(err)
		}
		// op deletes the request next; were that to fail, the callback
		// URL must still not yield another code.
		if err := s.SaveAuthCode(ctx, a.id, "code-2"); err == nil {
			t.Error("a redeemed sign-in issued another code")
		}
	})
	t.Run("not before the login", func(t *testing.T) {
		s, _ := newTestStorage(t)
		r, err := s.CreateAuthRequest(ctx, testAuthRequest(), "")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SaveAuthCode(ctx, r.GetID(), "code-1"); err == nil {
			t.Error("a code was issued before the person signed in")
		}
	})
	t.Run("racing exchanges", func(t *testing.T) {
		s, _ := newTestStorage(t)
		a := signedIn(t, s, "code-1")
		b, err := s.AuthRequestByCode(ctx, "code-1") // the second exchange, looked up before the first redeems
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := s.CreateAccessAndRefreshTokens(ctx, a, ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.CreateAccessToken(ctx, b.(*authRequest)); err == nil {
			t.Fatal("the code was redeemed twice")
		}
		if len(s.accessTokens)+len(s.refreshTokens) != 0 {
			t.Error("the first exchange's tokens survived the replay")
		}
	})
}

func TestStorageRefusesRequests(t *testing.T) {
	s, _ := newTestStorage(t)
	ctx := context.Background()
	for name, mod := range map[string]func(*oidc.AuthRequest){
		"prompt none":     func(r *oidc.AuthRequest) { r.Prompt = []string{"none"} },
		"no openid scope": func(r *oidc.AuthRequest) { r.Scopes = []string{"email"} },
		"no PKCE":         func(r *oidc.AuthRequest) { r.CodeChallenge, r.CodeChallengeMethod = "", "" },
		"plain PKCE":      func(r *oidc.AuthRequest) { r.CodeChallengeMethod = oidc.CodeChallengeMethodPlain },
		"PKCE w/o method": func(r *oidc.AuthRequest) { r.CodeChallengeMethod = "" },
	} {
		r := testAuthRequest()
		mod(r)
		if _, err := s.CreateAuthRequest(ctx, r, ""); err == nil {
			t.Errorf("%s: the request was accepted", name)
		}
	}
}
