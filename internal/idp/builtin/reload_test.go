package builtin

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// writeUsers writes a users file with bob and, unless aliceGroups is nil,
// alice in those groups.
func writeUsers(t *testing.T, path string, aliceGroups []string) {
	t.Helper()
	var b strings.Builder
	if aliceGroups != nil {
		fmt.Fprintf(&b, "- email: alice@example.com\n  groups: [%s]\n  password_hash: %q\n", strings.Join(aliceGroups, ", "), testHash)
	}
	fmt.Fprintf(&b, "- email: bob@example.com\n  password_hash: %q\n", testHash)
	writeRenamed(t, path, b.String())
}

// writeRenamed replaces the file at path through a rename, as editors
// save, so that every version is a new file whatever the resolution of
// modification times.
func writeRenamed(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestUsersFileFollowed: the storage follows the users file on a clock the
// test moves: groups change in the next claims, a broken file keeps the
// users before, and a removed person loses every token at once and for
// good.
func TestUsersFileFollowed(t *testing.T) {
	s, now := newTestStorage(t)
	path := filepath.Join(t.TempDir(), "users.yaml")
	writeUsers(t, path, []string{"dev"})
	users, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := makeAccounts(users)
	if err != nil {
		t.Fatal(err)
	}
	s.setAccounts(accounts)
	logs := &logbuf.Buffer{}
	clock := func() time.Time { return *now }
	uf := &usersFile{path: path, logger: slog.New(slog.NewTextHandler(logs, nil)), now: clock, apply: s.setAccounts}
	uf.checked.Store(clock().UnixNano())
	s.reload = uf.check
	tick := func() { *now = now.Add(usersRecheck) }
	alice := subjectOf("alice@example.com")
	ctx := context.Background()

	groups := func() []string {
		t.Helper()
		info := new(oidc.UserInfo)
		if err := s.setClaims(info, alice, []string{"openid"}); err != nil {
			return nil
		}
		g, _ := info.Claims[claimGroups].([]string)
		return g
	}
	a := signedIn(t, s, "code-1")
	_, refresh, _, err := s.CreateAccessAndRefreshTokens(ctx, a, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := groups(); !slices.Equal(got, []string{"dev"}) {
		t.Fatalf("groups at start: got %v, want [dev]", got)
	}

	t.Run("groups change, within a second", func(t *testing.T) {
		writeUsers(t, path, []string{"dev", "sre"})
		if got := groups(); !slices.Equal(got, []string{"dev"}) {
			t.Errorf("groups before a second passed: got %v, want the old [dev] (the file is looked at once a second)", got)
		}
		tick()
		if got := groups(); !slices.Equal(got, []string{"dev", "sre"}) {
			t.Errorf("groups a second after the edit: got %v, want [dev sre]", got)
		}
		if _, err := s.TokenRequestByRefreshToken(ctx, refresh); err != nil {
			t.Errorf("alice's refresh token after a group change: %v", err)
		}
		if !strings.Contains(logs.String(), "the users file changed") {
			t.Errorf("no log of the change: %s", logs)
		}
	})

	t.Run("a broken file keeps the users read before", func(t *testing.T) {
		writeRenamed(t, path, "- email: alice@example.com\n  password: hunter2-typed-here\n")
		for range 3 {
			tick()
			if got := groups(); !slices.Equal(got, []string{"dev", "sre"}) {
				t.Errorf("groups with a broken file: got %v, want [dev sre]", got)
			}
		}
		if n := strings.Count(logs.String(), "re-reading the users file failed"); n != 1 {
			t.Errorf("warnings about the broken file: got %d, want 1 per streak:\n%s", n, logs)
		}
		if strings.Contains(logs.String(), "hunter2") {
			t.Errorf("the log quotes the file: %s", logs)
		}
		writeUsers(t, path, []string{"dev", "sre"})
		tick()
		groups()
		if !strings.Contains(logs.String(), "loads again") {
			t.Errorf("no log that the file loads again: %s", logs)
		}
	})

	t.Run("removal revokes at once and for good", func(t *testing.T) {
		// A second sign-in's tokens, and a third sign-in whose code is not
		// yet exchanged.
		access2, refresh2, _, err := s.CreateAccessAndRefreshTokens(ctx, signedIn(t, s, "code-2"), "")
		if err != nil {
			t.Fatal(err)
		}
		pending := signedIn(t, s, "code-3")

		writeUsers(t, path, nil)
		tick()
		if _, err := s.TokenRequestByRefreshToken(ctx, refresh); err == nil {
			t.Error("a removed person's refresh token still works")
		}
		s.mu.Lock()
		_, accessLive := s.accessTokens[access2]
		_, refreshLive := s.refreshTokens[refresh2]
		s.mu.Unlock()
		if accessLive || refreshLive {
			t.Errorf("a removed person's tokens are still stored: access %v, refresh %v", accessLive, refreshLive)
		}
		if _, _, _, err := s.CreateAccessAndRefreshTokens(ctx, pending, ""); err == nil {
			t.Error("tokens were issued for a sign-in completed before the removal")
		}
		if s.currentUsers().byEmailAddress("alice@example.com") != nil {
			t.Error("a removed person can still be found to sign in")
		}
		if got := groups(); got != nil {
			t.Errorf("claims are still given for a removed person: groups %v", got)
		}
		if !strings.Contains(logs.String(), "removed=[alice@example.com]") {
			t.Errorf("the log does not name who was removed: %s", logs)
		}

		// Back in the file: the old tokens stay revoked.
		writeUsers(t, path, []string{"dev"})
		tick()
		if got := groups(); !slices.Equal(got, []string{"dev"}) {
			t.Fatalf("groups after adding alice back: got %v, want [dev]", got)
		}
		for _, rt := range []string{refresh, refresh2} {
			if _, err := s.TokenRequestByRefreshToken(ctx, rt); err == nil {
				t.Error("a refresh token from before the removal works again after the person came back")
			}
		}
	})
}
