package builtin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-proxy/portcullis/internal/identity"
)

// testHash is a well-formed bcrypt hash at cost 4.
const testHash = "$2a$04$fjUNwz/YX9MDZTA.NQcZp.7QCJr/YlWBA/4T0Dqr/nYjSK3Izbhgu"

func TestLoadUsers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.yaml")
	data := `# people who can sign in
- email: alice@example.com
  name: Alice Liddell
  groups: [dev, ops]
  password_hash: "` + testHash + `"
- email: bob@example.com
  groups:
  password_hash: '` + testHash + `'
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []User{
		{Email: "alice@example.com", Name: "Alice Liddell", Groups: []string{"dev", "ops"}, PasswordHash: testHash},
		{Email: "bob@example.com", PasswordHash: testHash},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadUsers (-want +got):\n%s", diff)
	}

	_, err = LoadUsers(filepath.Join(dir, "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "loading users") || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: got %v, want an error naming the file", err)
	}
}

func TestLoadUsersErrors(t *testing.T) {
	const plain = "s3cret-Passw0rd"
	tests := []struct {
		name string
		yaml string
		// want are substrings of the error, in order of the problems.
		want []string
		// wantNot must not appear in the error (values never quoted back).
		wantNot string
	}{
		{
			name: "empty file",
			yaml: "",
			want: []string{"users.yaml: the file has no users"},
		},
		{
			name: "empty list",
			yaml: "[]\n",
			want: []string{"users.yaml:1: the list of users is empty"},
		},
		{
			name: "not a list",
			yaml: "email: alice@example.com\n",
			want: []string{"users.yaml:1: want a list of users", "got a mapping"},
		},
		{
			name: "not YAML",
			yaml: "- email: [alice\n",
			want: []string{"users.yaml: not valid YAML", "line"},
		},
		{
			name: "item is not a mapping",
			yaml: "- alice@example.com\n",
			want: []string{"users.yaml:1: user 1: want a mapping with keys email, name, groups, password_hash, got a single value"},
		},
		{
			name: "missing email and hash",
			yaml: "- name: Alice\n",
			want: []string{"users.yaml:1: user 1: email is missing", "users.yaml:1: user 1: password_hash is missing", "htpasswd"},
		},
		{
			name:    "plain-text password key",
			yaml:    "- email: alice@example.com\n  password: " + plain + "\n",
			want:    []string{"users.yaml:2: user alice@example.com: password: plain-text passwords are not accepted", "htpasswd -nbBC 10"},
			wantNot: plain,
		},
		{
			name:    "plain-text password as the hash",
			yaml:    "- email: alice@example.com\n  password_hash: " + plain + "\n",
			want:    []string{"users.yaml:2: user alice@example.com: password_hash is not a bcrypt hash; it looks like a plain-text password", "htpasswd"},
			wantNot: plain,
		},
		{
			name:    "another hash format",
			yaml:    "- email: alice@example.com\n  password_hash: $6$salt$abcdefghijklmnop\n",
			want:    []string{"users.yaml:2: user alice@example.com: password_hash is not a bcrypt hash: want $2a$, $2b$ or $2y$"},
			wantNot: "abcdefghijklmnop",
		},
		{
			name: "bcrypt cost too high",
			yaml: "- email: alice@example.com\n  password_hash: '$2a$20$" + testHash[7:] + "'\n",
			want: []string{"users.yaml:2: user alice@example.com: password_hash has cost 20"},
		},
		{
			name: "bcrypt cost out of range",
			yaml: "- email: alice@example.com\n  password_hash: '$2a$99$" + testHash[7:] + "'\n",
			want: []string{"users.yaml:2: user alice@example.com: password_hash is not a bcrypt hash: its cost is out of range"},
		},
		{
			name: "duplicate email, other case",
			yaml: "- email: alice@example.com\n  password_hash: '" + testHash + "'\n" +
				"- email: Alice@Example.com\n  password_hash: '" + testHash + "'\n",
			want: []string{"users.yaml:3: user Alice@Example.com: the email is already used by the user at line 1"},
		},
		{
			name: "bad email",
			yaml: "- email: Alice <alice@example.com>\n  password_hash: '" + testHash + "'\n",
			want: []string{"users.yaml:1: user 1: email contains spaces"},
		},
		{
			name: "email without a domain",
			yaml: "- email: alice\n  password_hash: '" + testHash + "'\n",
			want: []string{"users.yaml:1: user 1: email is not an email address"},
		},
		{
			name: "email is a list",
			yaml: "- email: [a@example.com]\n  password_hash: '" + testHash + "'\n",
			want: []string{"users.yaml:1: user 1: email: want a string, got a list"},
		},
		{
			name: "null email is reported once",
			yaml: "- email:\n  password_hash: '" + testHash + "'\n",
			want: []string{"users.yaml:1: user 1: email: want a string, got nothing (null)"},
		},
		{
			name: "groups not a list",
			yaml: "- email: alice@example.com\n  groups: dev\n  password_hash: '" + testHash + "'\n",
			want: []string{"users.yaml:2: user alice@example.com: groups: want a list such as [dev, ops], got a single value"},
		},
		{
			name: "bad groups",
			yaml: "- email: alice@example.com\n  groups: ['', ' dev', ops, ops, \"a\\nb\"]\n  password_hash: '" + testHash + "'\n",
			want: []string{
				"users.yaml:2: user alice@example.com: groups: group 1 is empty",
				"group 2 begins or ends with a space",
				`group "ops" is listed twice`,
				"group 5 contains control characters",
			},
		},
		{
			name: "unknown and repeated keys",
			yaml: "- email: alice@example.com\n  emial: x\n  email: alice@example.com\n  password_hash: '" + testHash + "'\n",
			want: []string{
				`users.yaml:2: user alice@example.com: unknown key "emial": want email, name, groups, password_hash`,
				"users.yaml:3: user alice@example.com: email is given twice (first at line 1)",
			},
		},
		{
			name: "aliases",
			yaml: "- email: &e alice@example.com\n  name: *e\n  password_hash: '" + testHash + "'\n",
			want: []string{"users.yaml:2: user alice@example.com: name: anchors and aliases are not supported"},
		},
		{
			name: "every problem is reported",
			yaml: "- email: a@example.com\n- email: b@example.com\n  password_hash: nope\n",
			want: []string{"users.yaml:1: user a@example.com: password_hash is missing", "users.yaml:3: user b@example.com: password_hash is not a bcrypt hash"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users, err := parseUsers("users.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("got users %+v, want an error", users)
			}
			msg := err.Error()
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("error lacks %q (in order):\n%s", w, msg)
					continue
				}
				rest = rest[i+len(w):]
			}
			if tt.wantNot != "" && strings.Contains(msg, tt.wantNot) {
				t.Errorf("error quotes %q back:\n%s", tt.wantNot, msg)
			}
			if !strings.HasPrefix(msg, "loading users: ") {
				t.Errorf("error %q: want it to begin with what was being done", msg)
			}
		})
	}
}

func TestLoadUsersTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	if err := os.WriteFile(path, make([]byte, maxUsersFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadUsers(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("got %v, want a too-large error", err)
	}
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if msg := checkHash(h); msg != "" {
		t.Errorf("HashPassword's hash fails the users file check: %s", msg)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")); err != nil {
		t.Errorf("hash does not match its password: %v", err)
	}
	if cost, _ := bcrypt.Cost([]byte(h)); cost != bcrypt.DefaultCost {
		t.Errorf("cost: got %d, want %d", cost, bcrypt.DefaultCost)
	}
	for _, pw := range []string{"", strings.Repeat("x", 73)} {
		if _, err := HashPassword(pw); err == nil {
			t.Errorf("HashPassword of %d bytes succeeded, want an error", len(pw))
		}
	}
}

func FuzzLoadUsers(f *testing.F) {
	f.Add([]byte("- email: alice@example.com\n  name: Alice\n  groups: [dev, ops]\n  password_hash: '" + testHash + "'\n"))
	f.Add([]byte("- email: a@b.c\n  password_hash: '" + testHash + "'\n- email: A@B.C\n  password_hash: x\n"))
	f.Add([]byte("- {email: a@b.c, groups: [a, a], password: x}\n"))
	f.Add([]byte("- email: &a a@b.c\n  name: *a\n"))
	f.Add([]byte("users:\n  - email: a@b.c\n"))
	f.Add([]byte("- email: \"\\u0000@b.c\"\n  password_hash: !!binary aGk=\n"))
	f.Add([]byte("[[[[[[[[[[]]]]]]]]]]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseUsers("fuzz.yaml", data)
		if err != nil {
			if users != nil {
				t.Fatal("users returned along with an error")
			}
			return
		}
		if len(users) == 0 {
			t.Fatal("no users and no error")
		}
		seen := map[string]bool{}
		for _, u := range users {
			if probs := checkUser(u); len(probs) > 0 {
				t.Fatalf("accepted user %+v has problems: %v", u, probs)
			}
			key := identity.EmailKey(u.Email)
			if seen[key] {
				t.Fatalf("duplicate email %q accepted", u.Email)
			}
			seen[key] = true
		}
		// What the file accepts, New accepts.
		if _, err := makeAccounts(users); err != nil {
			t.Fatalf("makeAccounts refuses users the file accepted: %v", err)
		}
	})
}
