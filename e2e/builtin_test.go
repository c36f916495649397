package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestSignInBuiltinProvider signs in with the provider built into
// Portcullis (IDP_PROVIDER=builtin): users and groups from a file, and the
// groups reach the apiserver.
func TestSignInBuiltinProvider(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	users := builtinUsersFile(t, "someuser@example.com", "a long demo password", "dev", "oncall")
	st := startBuiltinStack(t, ctx, users)
	ca, routeURL, srv := st.ca, st.routeURL, st.srv

	browser := testenv.NewBrowser(ca.ClientTLS())
	if _, _, err := browser.SignIn(ctx, routeURL+"/.pomerium/", "someuser@example.com", "wrong password", ""); err == nil || !strings.Contains(err.Error(), "sign-in refused") {
		t.Errorf("wrong password: got %v, want the login form back", err)
	}
	browser = testenv.NewBrowser(ca.ClientTLS())
	final, page, err := browser.SignIn(ctx, routeURL+"/.pomerium/", "someuser@example.com", "a long demo password", "")
	if err != nil || final.String() != routeURL+"/.pomerium/" || !strings.Contains(page, "someuser@example.com") {
		t.Fatalf("sign-in: ended at %v with %v; visited %v", final, err, browser.Visited)
	}
	var who struct {
		Email  string   `json:"email"`
		Groups []string `json:"groups"`
	}
	resp := get(t, browser.Client, routeURL+"/.pomerium/", "application/json", "")
	if json.Unmarshal([]byte(resp.body), &who); strings.Join(who.Groups, ",") != "dev,oncall" {
		t.Errorf("who am I: got %q, want groups dev and oncall", resp.body)
	}
	// kubectl's token, from the same browser (signed in already).
	tok := programmaticLogin(t, ctx, browser, routeURL, st.authURL, "someuser@example.com", "a long demo password")
	got := selfSubjectReview(t, browser.Client, routeURL, http.Header{"Authorization": {"Bearer Pomerium-" + tok}})
	groups, code := got.groups, got.code
	if code != http.StatusCreated || !contains(groups, "dev") || !contains(groups, "oncall") {
		t.Errorf("apiserver saw groups %v (status %d), want dev and oncall", groups, code)
	}
	logs, _ := os.ReadFile(srv.LogPath)
	if !strings.Contains(string(logs), "built-in") {
		t.Errorf("the log does not warn that the built-in provider is for development")
	}
}
