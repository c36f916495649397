package builtin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
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

// createFrom makes a sign-in request the way an authorize call from addr
// does: serveAuthorize holds room for it, then op calls CreateAuthRequest.
func createFrom(s *storage, addr netip.Addr) (op.AuthRequest, error) {
	adm, err := s.admit(addr)
	if err != nil {
		return nil, err
	}
	defer s.release(adm)
	return s.CreateAuthRequest(context.WithValue(context.Background(), admissionKey{}, adm), testAuthRequest(), "")
}

// testAddr is the i-th of many client addresses.
func testAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestStorageBoundsAuthRequests(t *testing.T) {
	s, now := newTestStorage(t)
	// The table fills only from many addresses, each at its own limit.
	for i := 0; i < maxAuthRequests; i++ {
		if _, err := createFrom(s, testAddr(i/maxSignInsPerAddr)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := createFrom(s, testAddr(1<<20)); !errors.Is(err, errSignInsFull) {
		t.Fatalf("request past the bound: got %v, want %v", err, errSignInsFull)
	}
	// Without an admission (not through serveAuthorize), op is refused
	// with a server_error.
	_, err := s.CreateAuthRequest(context.Background(), testAuthRequest(), "")
	var oerr *oidc.Error
	if !errors.As(err, &oerr) || oerr.ErrorType != oidc.ServerError {
		t.Fatalf("request past the bound without an admission: got %v, want a server_error", err)
	}
	// Once they expire, they are swept and there is room again.
	*now = now.Add(unboundTTL)
	if _, err := createFrom(s, testAddr(1<<20)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if got := len(s.authRequests); got != 1 {
		t.Errorf("auth requests after the sweep: got %d, want 1", got)
	}
	if got := len(s.byAddr); got != 1 {
		t.Errorf("addresses counted after the sweep: got %d, want 1", got)
	}
}

// TestStorageSignInsPerAddress: one client address cannot take more than
// its share of the table; its unbound requests go after a minute.
func TestStorageSignInsPerAddress(t *testing.T) {
	s, now := newTestStorage(t)
	a, b := testAddr(1), testAddr(2)
	var first op.AuthRequest
	for i := 0; i < maxSignInsPerAddr; i++ {
		r, err := createFrom(s, a)
		if err != nil {
			t.Fatalf("request %d from %v: %v", i, a, err)
		}
		if i == 0 {
			first = r
		}
	}
	if _, err := createFrom(s, a); !errors.Is(err, errTooManySignIns) {
		t.Fatalf("request %d from %v: got %v, want %v", maxSignInsPerAddr+1, a, err, errTooManySignIns)
	}
	if _, err := createFrom(s, b); err != nil {
		t.Fatalf("request from another address: %v", err)
	}
	// An admission not used gives its room back.
	if err := s.DeleteAuthRequest(context.Background(), first.GetID()); err != nil {
		t.Fatal(err)
	}
	adm, err := s.admit(a)
	if err != nil {
		t.Fatalf("admission after a request ended: %v", err)
	}
	if _, err := s.admit(a); !errors.Is(err, errTooManySignIns) {
		t.Fatalf("second admission: got %v, want %v", err, errTooManySignIns)
	}
	s.release(adm)
	s.release(adm) // a second release changes nothing
	bound, err := createFrom(s, a)
	if err != nil {
		t.Fatalf("request after a released admission: %v", err)
	}
	if _, err := s.bindLogin(bound.GetID(), [32]byte{1}); err != nil {
		t.Fatal(err)
	}
	if s.reserved != 0 {
		t.Errorf("room held after every admission ended: got %d, want 0", s.reserved)
	}

	// Unbound, the requests last a minute, and then make room at once;
	// the one a browser opened lasts the full ten minutes.
	*now = now.Add(unboundTTL)
	if _, err := createFrom(s, a); err != nil {
		t.Fatalf("request after the unbound ones expired: %v", err)
	}
	if _, err := s.AuthRequestByID(context.Background(), bound.GetID()); err != nil {
		t.Errorf("the bound request after %v: %v", unboundTTL, err)
	}
	if got, want := len(s.byAddr[a].ids), 2; got != want {
		t.Errorf("requests counted for %v: got %d, want %d", a, got, want)
	}
	*now = now.Add(authRequestTTL - unboundTTL)
	if _, err := s.AuthRequestByID(context.Background(), bound.GetID()); err == nil {
		t.Errorf("the bound request is alive after %v", authRequestTTL)
	}
	s.mu.Lock()
	s.sweepLocked(*now, true)
	s.mu.Unlock()
	if len(s.authRequests) != 0 || len(s.byAddr) != 0 {
		t.Errorf("after everything expired: %d requests, %d addresses left; want none", len(s.authRequests), len(s.byAddr))
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
