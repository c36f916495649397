package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCLIExpiringCredential: a credential whose session has ended is
// replaced by a new sign-in before kubectl uses it, so no kubectl command
// fails. Sessions here last 75 s; portcullis-cli's tokens end with their
// session however often they are renewed.
func TestCLIExpiringCredential(t *testing.T) {
	// Mostly waiting for tokens to age: run beside the other waiting tests.
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := startSigninStack(t, ctx, "COOKIE_EXPIRE=75s")
	u := newCLIUser(t, ctx, s.cluster.KubectlPath, s.routeURL, s.ca.CertPEM)
	u.setup()
	u.firstSignIn(ctx)
	exp := u.credentialExpiry()
	// Renewed on the way (less than half its life left), it still ends
	// with the session.
	time.Sleep(time.Until(exp.Add(-20 * time.Second)))
	if user, errOut := u.whoami(ctx); user != signinEmail || u.browserRuns() != 1 {
		t.Fatalf("whoami 20 s before the session ends: got %q after %d sign-ins\n%s", user, u.browserRuns(), errOut)
	}
	if got := u.credentialExpiry(); got.After(exp) {
		t.Errorf("a renewal outlived the session: the credential expires at %s, the session at %s", got, exp)
	}
	time.Sleep(time.Until(exp) + 2*time.Second)
	if user, errOut := u.whoami(ctx); user != signinEmail {
		t.Fatalf("whoami after the session ended: got %q\n%s", user, errOut)
	}
	if n := u.browserRuns(); n != 2 {
		t.Errorf("sign-ins: got %d, want 2 (the ended session replaced before use)", n)
	}
	if !u.credentialExpiry().After(exp) {
		t.Errorf("the cached credential was not replaced: expiry still %s", exp)
	}
}

// credentialExpiry is the exp of the credential portcullis-cli cached.
func (u *cliUser) credentialExpiry() time.Time {
	u.t.Helper()
	parts := strings.Split(strings.TrimPrefix(u.cachedToken(u.routeURL), "Pomerium-"), ".")
	if len(parts) != 3 {
		u.t.Fatalf("cached credential is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err != nil || json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		u.t.Fatalf("cached credential has no readable exp: %v", err)
	}
	return time.Unix(claims.Exp, 0)
}
