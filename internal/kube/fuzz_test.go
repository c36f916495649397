package kube

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzStripAndSet builds a header map from raw ("Key: value" lines, keys
// used as written, so in any case and with any bytes), strips it and sets
// impersonation, and checks that nothing the client sent survives as an
// identity: the only Authorization is the service account token, the only
// Impersonate-* headers are the ones set, there is no X-Remote-* header and
// no session cookie; and that no control character reaches a header value.
func FuzzStripAndSet(f *testing.F) {
	const tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzYSJ9.c2ln"
	seeds := []struct{ raw, token, user, groups string }{
		{"Authorization: Bearer Pomerium-x\nAccept: application/json", tok, "alice@example.com", "dev,sre"},
		{"authorization: Bearer x\nimpersonate-user: system:admin\nIMPERSONATE-GROUP: system:masters", tok, "alice@example.com", "dev,,dev"},
		{"Impersonate-Extra-Scopes: all\nimpersonate-extra-foo: bar\nImpersonate-Uid: 0", tok, "bob", ""},
		{"X-Remote-User: admin\nx-remote-group: system:masters\nX-REMOTE-EXTRA-A: b", tok, "bob", "a"},
		{"X-Pomerium-Authorization: jwt\nProxy-Authorization: Basic x", tok, "bob", "a"},
		{"X-Pomerium-Jwt-Assertion: jwt\nx-pomerium-claim-email: admin@example.com", tok, "bob", "a"},
		{"Accept: */*", tok, "bob", "dev,system:masters"},
		{"Accept: */*", tok, "system:admin", "dev"},
		{"Cookie: a=1; _pomerium=x; b=2\ncookie: _pomerium=y\nCookie: _pomerium=z", tok, "bob", "a"},
		{"Cookie:  _pomerium =x;c=3", tok, "bob", "a"},
		{"Accept: */*", tok, "alice@example.com\r\nImpersonate-Group: system:masters", "dev"},
		{"Accept: */*", tok, "alice", "sre\x00system:masters"},
		{"Accept: */*", "", "alice", "dev"},
		{"Accept: */*", tok, "", "dev"},
		{"Accept: */*", "tok\nen", "alice", "dev"},
		{"", tok, "zoë", "Équipe"},
	}
	for _, s := range seeds {
		f.Add(s.raw, s.token, s.user, s.groups)
	}
	f.Fuzz(func(t *testing.T, raw, token, user, groupList string) {
		h := http.Header{}
		for line := range strings.SplitSeq(raw, "\n") {
			k, v, _ := strings.Cut(line, ":")
			h[k] = append(h[k], strings.TrimPrefix(v, " "))
		}
		groups := strings.Split(groupList, ",")

		StripCredentials(h, testCookie)
		checkNoClientIdentity(t, h, "after StripCredentials")

		err := Impersonator{}.Set(h, token, user, groups)
		if err != nil {
			checkNoClientIdentity(t, h, "after Set failed")
			if simple(token) && simple(user) && allSimple(groups) {
				t.Fatalf("Set(%q, %q, %q) failed on plain input: %v", token, user, groups, err)
			}
			return
		}
		if token == "" || user == "" {
			t.Fatalf("Set accepted token %q, user %q", token, user)
		}

		want := map[string][]string{
			"Authorization":    {"Bearer " + token},
			"Impersonate-User": {user},
		}
		if g := dedupe(groups); len(g) > 0 {
			want["Impersonate-Group"] = g
		}
		got := map[string][]string{}
		for k, vv := range h {
			if strings.EqualFold(k, "Authorization") || hasPrefixFold(k, "Impersonate-") {
				got[k] = vv
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("identity headers after Set (-want +got):\n%s", diff)
		}
		for k, vv := range got {
			for _, v := range vv {
				if i := strings.IndexFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }); i >= 0 {
					t.Fatalf("%s: %q has a control character at byte %d", k, v, i)
				}
			}
		}
	})
}

// checkNoClientIdentity fails unless h has no credential or identity
// header in any letter case and no session cookie as net/http reads it.
func checkNoClientIdentity(t *testing.T, h http.Header, when string) {
	t.Helper()
	for k, vv := range h {
		switch {
		case strings.EqualFold(k, "Authorization"), strings.EqualFold(k, "Proxy-Authorization"),
			hasPrefixFold(k, "X-Pomerium-"),
			hasPrefixFold(k, "Impersonate-"), hasPrefixFold(k, "X-Remote-"):
			t.Fatalf("%s: header %q is still there", when, k)
		case strings.EqualFold(k, "Cookie"):
			r := &http.Request{Header: http.Header{"Cookie": vv}}
			if c, err := r.Cookie(testCookie); err == nil {
				t.Fatalf("%s: cookie %q still in %q", when, c.Name, vv)
			}
			for _, v := range vv {
				if v == "" {
					t.Fatalf("%s: empty Cookie value left in %q", when, vv)
				}
			}
		}
	}
}

// dedupe is uniqueGroups written the obvious way.
func dedupe(groups []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range groups {
		if g != "" && !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out
}

// simple reports whether s is a non-empty string of letters, digits and
// @.:_- only, not beginning with "system:" (which Kubernetes reserves):
// something Impersonator{}.Set must always accept.
func simple(s string) bool {
	if s == "" || hasPrefixFold(s, "system:") {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("@.:_-", r)) {
			return false
		}
	}
	return true
}

func allSimple(groups []string) bool {
	for _, g := range groups {
		if g != "" && !simple(g) {
			return false
		}
	}
	return true
}

// FuzzStripSetCookie: whatever Set-Cookie headers an upstream sends, none
// that a browser would store under Portcullis's cookie names survives,
// and every other one does, byte for byte and in order.
func FuzzStripSetCookie(f *testing.F) {
	for _, seed := range []string{
		"_pomerium=x; Path=/",
		"_pomerium_signin=x\napp=1",
		" _pomerium =x\n_pomeriumx=1\nx_pomerium=2",
		"=\n;\n_pomerium",
		"_Pomerium=1\n_pomerium_=2",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		values := strings.Split(raw, "\n")
		h := http.Header{"Set-Cookie": append([]string(nil), values...), "set-cookie": {testCookie + "=lower-case key"}}
		StripSetCookie(h, testCookie)
		var want []string
		for _, v := range values {
			name, _, _ := strings.Cut(v, "=")
			name = strings.Trim(name, asciiSpace)
			if name != testCookie && !strings.HasPrefix(name, testCookie+"_") {
				want = append(want, v)
			}
		}
		if diff := cmp.Diff(want, h["Set-Cookie"]); diff != "" {
			t.Fatalf("Set-Cookie after StripSetCookie (-want +got):\n%s", diff)
		}
		//lint:ignore SA1008 checks that a non-canonical key put in the map directly does not survive
		if _, ok := h["set-cookie"]; ok {
			t.Fatal("a Set-Cookie under a lower-case key survived")
		}
		// As a browser reads them: none sets one of Portcullis's cookies.
		resp := &http.Response{Header: http.Header{"Set-Cookie": h["Set-Cookie"]}}
		for _, c := range resp.Cookies() {
			if c.Name == testCookie || strings.HasPrefix(c.Name, testCookie+"_") {
				t.Fatalf("cookie %q survived", c.Name)
			}
		}
	})
}
