package builtin_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestUsersFileRevokesRefresh drives the provider over HTTP as Portcullis
// does: after an edit of the users file, a refresh gives the new groups;
// after the person is removed, the refresh is refused with invalid_grant,
// which is what ends the person's Portcullis session.
func TestUsersFileRevokesRefresh(t *testing.T) {
	aHash, bHash := hashes(t)
	path := filepath.Join(t.TempDir(), "users.yaml")
	write := func(aliceGroups string, alice bool) {
		var b strings.Builder
		if alice {
			fmt.Fprintf(&b, "- email: %s\n  name: Alice Liddell\n  groups: [%s]\n  password_hash: %q\n", aliceEmail, aliceGroups, aHash)
		}
		fmt.Fprintf(&b, "- email: %s\n  password_hash: %q\n", bobEmail, bHash)
		if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
		// The provider looks at the file at most once a second.
		time.Sleep(1100 * time.Millisecond)
	}
	write("dev, ops", true)
	d := startIdP(t, options{usersFile: path})
	f, code := d.signIn(t, aliceEmail, alicePassword)
	tok, err := d.exchange(t, code, f.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.verify(t, tok).Groups; !slices.Equal(got, []string{"dev", "ops"}) {
		t.Fatalf("groups at sign-in: got %v, want [dev ops]", got)
	}

	write("dev, sre", true)
	tok, err = d.refresh(t, tok.RefreshToken)
	if err != nil {
		t.Fatalf("refreshing after a group change: %v", err)
	}
	if got := d.verify(t, tok).Groups; !slices.Equal(got, []string{"dev", "sre"}) {
		t.Errorf("groups after the edit: got %v, want [dev sre]", got)
	}

	write("", false)
	_, err = d.refresh(t, tok.RefreshToken)
	if got := oauthErrorCode(t, err); got != "invalid_grant" {
		t.Errorf("refresh of a removed person: got %q, want invalid_grant", got)
	}
	if _, err := d.userinfo(t.Context(), tok); err == nil {
		t.Error("a removed person's access token still works at userinfo")
	}
	// Nor can they sign in again.
	c, loginURL, id := loginPage(t, d.newFlow().authURL)
	if _, body := postLogin(t, c, loginURL, loginForm(id, aliceEmail, alicePassword), nil); !strings.Contains(body, wrongCredentials) {
		t.Errorf("sign-in of a removed person: got %q, want %q", body, wrongCredentials)
	}
	if logs := d.logs.String(); !strings.Contains(logs, "removed=["+aliceEmail+"]") {
		t.Errorf("the provider's log does not say who was removed:\n%s", logs)
	}
}
