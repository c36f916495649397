package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestSilentRenewal: with one-minute tokens, kubectl goes on working for
// five minutes after one browser sign-in, portcullis-cli renewing its
// token without a browser; a renewal credential that someone copied and
// used ends the session for both; after a sign-out the next kubectl call
// signs in again. Real kubectl, portcullis-cli and provider.
func TestSilentRenewal(t *testing.T) {
	// Mostly waiting for tokens to age: run beside the other waiting tests.
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	s := startSigninStack(t, ctx, "ACCESS_TOKEN_LIFETIME=1m")
	u := newCLIUser(t, ctx, s.cluster.KubectlPath, s.routeURL, s.ca.CertPEM)
	u.setup()
	u.firstSignIn(ctx)
	if exp := u.credentialExpiry(); time.Until(exp) > time.Minute+5*time.Second {
		t.Fatalf("the credential expires at %s, want within ACCESS_TOKEN_LIFETIME (1m)", exp)
	}

	// Five minutes of kubectl, a command every 15 seconds.
	tokens := map[string]bool{}
	for end := time.Now().Add(5 * time.Minute); time.Now().Before(end); time.Sleep(15 * time.Second) {
		if user, errOut := u.whoami(ctx); user != signinEmail {
			t.Fatalf("whoami at %s: got %q\n%s", time.Now().Format(time.TimeOnly), user, errOut)
		}
		tokens[u.cachedToken(s.routeURL)] = true
	}
	if n := u.browserRuns(); n != 1 {
		t.Errorf("five minutes of one-minute tokens opened the browser %d times, want once", n)
	}
	if len(tokens) < 5 {
		t.Errorf("five minutes of one-minute tokens: %d tokens seen, want at least 5 (renewed without a browser)", len(tokens))
	}

	api := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS()}}
	renew := func(credential string) (code int, token, next string) {
		t.Helper()
		resp, err := api.PostForm(s.routeURL+"/.pomerium/api/v1/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {credential}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		}
		json.NewDecoder(resp.Body).Decode(&a)
		return resp.StatusCode, a.AccessToken, a.RefreshToken
	}
	works := func(token string) int {
		t.Helper()
		return selfSubjectReview(t, api, s.routeURL, http.Header{"Authorization": {"Bearer Pomerium-" + token}}).code
	}

	t.Run("a copied renewal credential, used, ends the session", func(t *testing.T) {
		// Someone copies the cache file and renews first: it works, once.
		_, stolen := u.cached(s.routeURL)
		code, attackerTok, _ := renew(stolen)
		if code != http.StatusOK || works(attackerTok) != http.StatusCreated {
			t.Fatalf("the copy's first renewal: %d, want 200 and a token that works", code)
		}
		// The person's portcullis-cli renews with its copy, spent now:
		// the server ends the session, and the CLI signs in again.
		time.Sleep(time.Until(u.credentialExpiry().Add(-25 * time.Second)))
		if user, errOut := u.whoami(ctx); user != signinEmail {
			t.Fatalf("whoami after the reuse: got %q\n%s", user, errOut)
		}
		if n := u.browserRuns(); n != 2 {
			t.Errorf("after the reuse: %d sign-ins, want 2 (the session ended, the person signed in again)", n)
		}
		if code := works(attackerTok); code != http.StatusUnauthorized {
			t.Errorf("the copy's token after the reuse: apiserver answered %d through Portcullis, want 401", code)
		}
	})

	t.Run("after a sign-out the next kubectl call signs in again", func(t *testing.T) {
		tok, rn := u.cached(s.routeURL)
		req, _ := http.NewRequestWithContext(ctx, "POST", s.routeURL+"/.pomerium/sign_out", nil)
		req.Header.Set("Authorization", "Pomerium "+tok)
		resp, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if works(tok) != http.StatusUnauthorized {
			t.Fatal("the token still works after the sign-out")
		}
		if code, _, _ := renew(rn); code != http.StatusBadRequest {
			t.Errorf("the renewal credential after the sign-out: %d, want 400 (invalid_grant)", code)
		}
		before := u.browserRuns()
		// kubectl is handed the cached token, gets 401, and runs the
		// plugin again: that run asks the server and signs in.
		_, errOut := u.whoami(ctx)
		t.Logf("the first kubectl call after the sign-out said:\n%s", errOut)
		if n := u.browserRuns(); n != before+1 {
			t.Errorf("the first kubectl call after the sign-out: %d sign-ins, want %d\n%s", n, before+1, errOut)
		}
		if user, errOut := u.whoami(ctx); user != signinEmail || u.browserRuns() != before+1 {
			t.Errorf("the next call: got %q after %d sign-ins, want %d\n%s", user, u.browserRuns(), before+1, errOut)
		}
	})
}
