package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestSessionRefreshBuiltinProvider: with the built-in provider issuing
// five-second tokens (IDP_BUILTIN_TOKEN_TTL), a session keeps working past
// the provider's expiry through a refresh, takes the groups of the users
// file at the next refresh after an edit, and ends, with every token of
// it, once the person is removed from the file and the provider refuses
// the refresh.
func TestSessionRefreshBuiltinProvider(t *testing.T) {
	const (
		ttl      = 5 * time.Second
		email    = "someuser@example.com"
		password = "a long demo password"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	hash, err := builtin.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users.yaml")
	// writeUsers writes the users file: someuser in groups (left out if
	// groups is nil), and another person, since the file may not be empty.
	writeUsers := func(groups []string) {
		var b strings.Builder
		if groups != nil {
			fmt.Fprintf(&b, "- email: %s\n  groups: [%s]\n  password_hash: %q\n", email, strings.Join(groups, ", "), hash)
		}
		fmt.Fprintf(&b, "- email: other@example.com\n  groups: [dev]\n  password_hash: %q\n", hash)
		// As an editor saves: a new file renamed over the old one.
		writeFile(t, users+".new", b.String())
		if err := os.Rename(users+".new", users); err != nil {
			t.Fatal(err)
		}
	}
	writeUsers([]string{"dev"})

	st := startBuiltinStack(t, ctx, users, "IDP_BUILTIN_TOKEN_TTL="+ttl.String())
	ca, routeURL, srv := st.ca, st.routeURL, st.srv
	logs := func() string {
		b, _ := os.ReadFile(srv.LogPath)
		return string(b)
	}

	// Signed in with the browser: its cookie is the session.
	browser := testenv.NewBrowser(ca.ClientTLS())
	final, page, err := browser.SignIn(ctx, routeURL+"/.pomerium/", email, password, "")
	if err != nil || final.String() != routeURL+"/.pomerium/" || !strings.Contains(page, email) {
		t.Fatalf("sign-in: ended at %v with %v; visited %v", final, err, browser.Visited)
	}
	// A programmatic token of the same session, as portcullis-cli gets
	// it: the browser is signed in on the authenticate host already.
	cliToken := programmaticLogin(t, ctx, browser, routeURL, st.authURL, email, password)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS()}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	bearer := http.Header{"Authorization": {"Bearer Pomerium-" + cliToken}}

	// review says who the session is: for the token (token true), who the
	// apiserver sees its request as; for the browser's cookie, which does
	// not open the API, who the who-am-I page says. The code is 200 for a
	// live session, 401 for an ended one.
	review := func(token bool) (user string, groups []string, code int) {
		t.Helper()
		if token {
			got := selfSubjectReview(t, client, routeURL, bearer.Clone())
			user, groups, code = got.user, got.groups, got.code
			if code == http.StatusCreated {
				code = http.StatusOK
			}
			return user, groups, code
		}
		resp := get(t, browser.Client, routeURL+"/.pomerium/", "application/json", "")
		var who struct {
			Email  string   `json:"email"`
			Groups []string `json:"groups"`
		}
		json.Unmarshal([]byte(resp.body), &who)
		return who.Email, who.Groups, resp.code
	}
	wantSeen := func(when string, wantGroup, notGroup string) {
		t.Helper()
		for _, token := range []bool{false, true} {
			user, groups, code := review(token)
			if code != http.StatusOK || user != email || !contains(groups, wantGroup) || notGroup != "" && contains(groups, notGroup) {
				t.Errorf("%s (token %v): apiserver saw %q in %v (status %d), want %s in %s and not %q", when, token, user, groups, code, email, wantGroup, notGroup)
			}
		}
	}
	// poll repeats a request until cond holds, for several token lives.
	poll := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(6 * ttl)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logs())
			}
			time.Sleep(time.Second)
		}
	}
	wantSeen("after sign-in", "dev", "sre")

	t.Run("the session outlives the provider's token through a refresh", func(t *testing.T) {
		time.Sleep(ttl + 3*time.Second)
		wantSeen("past the provider's expiry", "dev", "sre")
		if !strings.Contains(logs(), "refreshed the session with the identity provider") {
			t.Errorf("Portcullis's log does not say the session was refreshed:\n%s", logs())
		}
	})

	t.Run("new groups in the users file reach the apiserver at the next refresh", func(t *testing.T) {
		writeUsers([]string{"dev", "sre"})
		poll("the session to have group sre", func() bool {
			_, groups, code := review(false)
			return code == http.StatusOK && contains(groups, "sre")
		})
		// The token of the session carries the groups of sign-in, but the
		// session's current ones count.
		wantSeen("after the edit", "sre", "")
	})

	t.Run("removal from the users file ends the session and its tokens", func(t *testing.T) {
		writeUsers(nil)
		poll("the session to end", func() bool {
			_, _, code := review(false)
			return code == http.StatusUnauthorized
		})
		if _, _, code := review(true); code != http.StatusUnauthorized {
			t.Errorf("the session's token after the refresh was refused: status %d, want 401", code)
		}
		who := get(t, client, routeURL+"/.pomerium/", "application/json", "Bearer Pomerium-"+cliToken)
		if who.code != http.StatusUnauthorized {
			t.Errorf("who am I with the token: got %d %q, want 401", who.code, who.body)
		}
		l := logs()
		if !strings.Contains(l, "the identity provider refused to refresh the session; ending it") {
			t.Errorf("Portcullis's log does not say the provider refused the refresh:\n%s", l)
		}
		if !strings.Contains(l, "the users file changed") {
			t.Errorf("the provider's log does not say the users file changed:\n%s", l)
		}
		for _, secret := range []string{cliToken, hash} {
			if strings.Contains(l, secret) {
				t.Errorf("the log shows a secret")
			}
		}
	})
}
