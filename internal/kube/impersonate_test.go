package kube

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const testCookie = "_pomerium"

// kept are headers a kubectl request carries that must survive
// StripCredentials untouched.
func kept() http.Header {
	return http.Header{
		"Accept":          {"application/json"},
		"User-Agent":      {"kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef0"},
		"Kubectl-Command": {"kubectl get"},
		// Look-alikes that are not credentials.
		"Impersonated-By":   {"nobody"},
		"X-Remote":          {"not a prefix match"},
		"X-Authorization-X": {"kept"},
		"X-Pomerium":        {"not a prefix match"},
		"X-Pomeriumish-Foo": {"kept"},
		"Authorization-Foo": {"kept"},
		"Audit-Ids":         {"kept"},
		"X-Audit-Id":        {"kept"},
	}
}

// with returns kept() plus extra.
func with(extra http.Header) http.Header {
	h := kept()
	for k, v := range extra {
		h[k] = v
	}
	return h
}

func TestStripCredentials(t *testing.T) {
	tests := []struct {
		name       string
		in         http.Header // keys used exactly as written, as after direct map assignment
		cookieName string
		want       http.Header
	}{
		{
			name: "every header, canonical",
			in: with(http.Header{
				"Authorization":                     {"Bearer Pomerium-client.jwt", "Basic YWRtaW46YWRtaW4="},
				"Proxy-Authorization":               {"Basic cHJveHk6cHJveHk="},
				"Impersonate-User":                  {"system:admin"},
				"Impersonate-Group":                 {"system:masters", "admins"},
				"Impersonate-Uid":                   {"0"},
				"Impersonate-Extra-Scopes":          {"view", "development"},
				"Impersonate-Extra-Acme.com%2fteam": {"sre"},
				"X-Pomerium-Authorization":          {"client.jwt"},
				"X-Remote-User":                     {"system:admin"},
				"X-Remote-Group":                    {"system:masters"},
				"X-Remote-Uid":                      {"0"},
				"X-Remote-Extra-Scopes":             {"all"},
				"Audit-Id":                          {"chosen-by-the-client"},
			}),
			cookieName: testCookie,
			want:       kept(),
		},
		{
			name: "every header, not canonical",
			in: with(http.Header{
				"audit-ID":                 {"chosen-by-the-client"},
				"authorization":            {"Bearer Pomerium-client.jwt"},
				"AUTHORIZATION":            {"Bearer other"},
				"proxy-authorization":      {"Basic x"},
				"impersonate-user":         {"system:admin"},
				"IMPERSONATE-GROUP":        {"system:masters"},
				"iMpErSoNaTe-UiD":          {"0"},
				"impersonate-extra-scopes": {"all"},
				"IMPERSONATE-EXTRA-FOO":    {"bar"},
				"x-pomerium-authorization": {"client.jwt"},
				"x-remote-user":            {"system:admin"},
				"X-REMOTE-GROUP":           {"system:masters"},
				"x-Remote-extra-scopes":    {"all"},
			}),
			cookieName: testCookie,
			want:       kept(),
		},
		{
			name: "canonical and non-canonical of the same header",
			in: with(http.Header{
				"Impersonate-User": {"a"},
				"impersonate-user": {"b"},
				"Authorization":    {"Bearer a"},
				"authorization":    {"Bearer b"},
			}),
			cookieName: testCookie,
			want:       kept(),
		},
		{
			// An upstream written for Pomerium believes these; a client
			// must not be able to send its own (the proxy's namespace).
			name: "Pomerium identity headers",
			in: with(http.Header{
				"X-Pomerium-Jwt-Assertion":     {"eyJhbGciOiJub25lIn0.e30."},
				"X-Pomerium-Jwt-Assertion-For": {"admin@example.com"},
				"X-Pomerium-Claim-Email":       {"admin@example.com"},
				"x-pomerium-claim-groups":      {"admins"},
				"X-POMERIUM-CLAIM-SUB":         {"0"},
				"X-Pomerium-Reproxy-Policy":    {"x"},
			}),
			cookieName: testCookie,
			want:       kept(),
		},
		{
			name: "future impersonation header",
			in: with(http.Header{
				"Impersonate-Something-New": {"x"},
			}),
			cookieName: testCookie,
			want:       kept(),
		},
		{
			name:       "session cookie among others",
			in:         with(http.Header{"Cookie": {"theme=dark; _pomerium=c2Vzc2lvbg; lang=en"}}),
			cookieName: testCookie,
			want:       with(http.Header{"Cookie": {"theme=dark; lang=en"}}),
		},
		{
			name:       "session cookie only: header dropped",
			in:         with(http.Header{"Cookie": {"_pomerium=c2Vzc2lvbg"}}),
			cookieName: testCookie,
			want:       kept(),
		},
		{
			name:       "session cookie twice, spaces around its name",
			in:         with(http.Header{"Cookie": {"_pomerium=a;a=1; _pomerium =b ;\t_pomerium\t= c;b=2"}}),
			cookieName: testCookie,
			want:       with(http.Header{"Cookie": {"a=1; b=2"}}),
		},
		{
			name: "several Cookie values, as HTTP/2 sends them",
			in: with(http.Header{"Cookie": {
				"_pomerium=x", "a=1", "c=3; _pomerium=y", "d=4",
			}}),
			cookieName: testCookie,
			want:       with(http.Header{"Cookie": {"a=1", "c=3", "d=4"}}),
		},
		{
			name:       "non-canonical cookie key",
			in:         with(http.Header{"cookie": {"a=1; _pomerium=x"}}),
			cookieName: testCookie,
			want:       with(http.Header{"cookie": {"a=1"}}),
		},
		{
			name: "cookies with similar names kept byte for byte",
			in: with(http.Header{"Cookie": {
				"_pomerium_csrf=1;x_pomerium=2;  _Pomerium=3; _pomerium_0=4",
			}}),
			cookieName: testCookie,
			want: with(http.Header{"Cookie": {
				"_pomerium_csrf=1;x_pomerium=2;  _Pomerium=3; _pomerium_0=4",
			}}),
		},
		{
			name:       "no cookie name: cookies untouched",
			in:         with(http.Header{"Cookie": {"_pomerium=x", "=y"}, "Authorization": {"Bearer x"}}),
			cookieName: "",
			want:       with(http.Header{"Cookie": {"_pomerium=x", "=y"}}),
		},
		{
			name:       "nothing to strip",
			in:         kept(),
			cookieName: testCookie,
			want:       kept(),
		},
		{
			name:       "empty header",
			in:         http.Header{},
			cookieName: testCookie,
			want:       http.Header{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The Cookie slices may be shared with the incoming request:
			// StripCredentials must not write into them.
			orig := cloneDeep(tt.in)
			in := shallowClone(tt.in)
			StripCredentials(in, tt.cookieName)
			if diff := cmp.Diff(tt.want, in); diff != "" {
				t.Errorf("StripCredentials (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(orig, tt.in); diff != "" {
				t.Errorf("StripCredentials modified the caller's value slices (-before +after):\n%s", diff)
			}
		})
	}
}

func TestStripCredentialsNil(t *testing.T) {
	StripCredentials(nil, testCookie) // must not panic
}

func TestImpersonatorSet(t *testing.T) {
	const tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln"
	many := make([]string, 0, 80)
	wantMany := make([]string, 0, 40)
	for i := range 40 {
		g := "group-" + string(rune('A'+i%26)) + strings.Repeat("x", i/26)
		many = append(many, g, "", g)
		wantMany = append(wantMany, g)
	}
	tests := []struct {
		name    string
		in      http.Header
		token   string
		user    string
		groups  []string
		want    http.Header
		wantErr string // a substring of the error; "" for none
	}{
		{
			name:   "user and groups",
			in:     http.Header{"Accept": {"application/json"}},
			token:  tok,
			user:   "alice@example.com",
			groups: []string{"sre", "dev"},
			want: http.Header{
				"Accept":            {"application/json"},
				"Authorization":     {"Bearer " + tok},
				"Impersonate-User":  {"alice@example.com"},
				"Impersonate-Group": {"sre", "dev"},
			},
		},
		{
			name:   "order kept, empty skipped, duplicates dropped",
			in:     http.Header{},
			token:  tok,
			user:   "alice@example.com",
			groups: []string{"b", "a", "", "b", "c", "a", ""},
			want: http.Header{
				"Authorization":     {"Bearer " + tok},
				"Impersonate-User":  {"alice@example.com"},
				"Impersonate-Group": {"b", "a", "c"},
			},
		},
		{
			name:   "many groups",
			in:     http.Header{},
			token:  tok,
			user:   "alice@example.com",
			groups: many,
			want: http.Header{
				"Authorization":     {"Bearer " + tok},
				"Impersonate-User":  {"alice@example.com"},
				"Impersonate-Group": wantMany,
			},
		},
		{
			name:  "no groups",
			in:    http.Header{},
			token: tok,
			user:  "alice@example.com",
			want: http.Header{
				"Authorization":    {"Bearer " + tok},
				"Impersonate-User": {"alice@example.com"},
			},
		},
		{
			name:   "only empty groups",
			in:     http.Header{},
			token:  tok,
			user:   "alice@example.com",
			groups: []string{"", ""},
			want: http.Header{
				"Authorization":    {"Bearer " + tok},
				"Impersonate-User": {"alice@example.com"},
			},
		},
		{
			name:   "unicode group names accepted",
			in:     http.Header{},
			token:  tok,
			user:   "zoë@example.com",
			groups: []string{"Équipe sécurité", "運用"},
			want: http.Header{
				"Authorization":     {"Bearer " + tok},
				"Impersonate-User":  {"zoë@example.com"},
				"Impersonate-Group": {"Équipe sécurité", "運用"},
			},
		},
		{
			name: "replaces what is there, in any case",
			in: http.Header{
				"authorization":     {"Bearer client"},
				"Authorization":     {"Bearer client2"},
				"impersonate-user":  {"system:admin"},
				"Impersonate-Group": {"system:masters"},
				"IMPERSONATE-GROUP": {"system:masters"},
				"Impersonate-Uid":   {"0"},
			},
			token:  tok,
			user:   "alice@example.com",
			groups: []string{"dev"},
			want: http.Header{
				"Authorization":     {"Bearer " + tok},
				"Impersonate-User":  {"alice@example.com"},
				"Impersonate-Group": {"dev"},
			},
		},
		{
			name:    "empty user refused",
			in:      http.Header{"Authorization": {"Bearer client"}, "Impersonate-User": {"x"}, "Accept": {"*/*"}},
			token:   tok,
			user:    "",
			groups:  []string{"dev"},
			want:    http.Header{"Accept": {"*/*"}},
			wantErr: "no user",
		},
		{
			name:    "empty token refused",
			in:      http.Header{"Authorization": {"Bearer client"}},
			token:   "",
			user:    "alice@example.com",
			want:    http.Header{},
			wantErr: "token is empty",
		},
		{
			name:    "CR LF in user",
			in:      http.Header{},
			token:   tok,
			user:    "alice@example.com\r\nImpersonate-Group: system:masters",
			want:    http.Header{},
			wantErr: "non-printable character U+000D",
		},
		{
			name:    "bare LF in user",
			in:      http.Header{},
			token:   tok,
			user:    "alice@example.com\nX: y",
			want:    http.Header{},
			wantErr: "non-printable character U+000A",
		},
		{
			name:    "NUL in group",
			in:      http.Header{},
			token:   tok,
			user:    "alice@example.com",
			groups:  []string{"dev", "sre\x00system:masters"},
			want:    http.Header{},
			wantErr: `group "sre\x00system:masters": non-printable character U+0000`,
		},
		{
			name:    "tab in group",
			in:      http.Header{},
			token:   tok,
			user:    "alice@example.com",
			groups:  []string{"dev\tops"},
			want:    http.Header{},
			wantErr: "non-printable character U+0009",
		},
		{
			name:    "DEL in user",
			in:      http.Header{},
			token:   tok,
			user:    "alice\x7f@example.com",
			want:    http.Header{},
			wantErr: "non-printable character U+007F",
		},
		{
			name:    "unicode line separator in group",
			in:      http.Header{},
			token:   tok,
			user:    "alice@example.com",
			groups:  []string{"dev\u2028sre"},
			want:    http.Header{},
			wantErr: "non-printable character U+2028",
		},
		{
			name:    "invalid UTF-8 in user",
			in:      http.Header{},
			token:   tok,
			user:    "alice\xff@example.com",
			want:    http.Header{},
			wantErr: "invalid UTF-8 at byte 5",
		},
		{
			name:    "trailing space in user",
			in:      http.Header{},
			token:   tok,
			user:    "system:admin ",
			want:    http.Header{},
			wantErr: "leading or trailing space",
		},
		{
			name:    "leading space in group",
			in:      http.Header{},
			token:   tok,
			user:    "alice@example.com",
			groups:  []string{" system:masters"},
			want:    http.Header{},
			wantErr: "leading or trailing space",
		},
		{
			name:    "newline in token",
			in:      http.Header{},
			token:   "secret-part-one\r\nImpersonate-User: system:admin",
			user:    "alice@example.com",
			want:    http.Header{},
			wantErr: "character at byte 15",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in
			groups := slices.Clone(tt.groups)
			err := Impersonator{}.Set(h, tt.token, tt.user, groups)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Set: %v", err)
			}
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Set: got no error, want one containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Set: got error %q, want it to contain %q", err, tt.wantErr)
				}
				if tt.token != "" && strings.Contains(err.Error(), tt.token) {
					t.Errorf("Set: error %q quotes the token", err)
				}
			}
			if diff := cmp.Diff(tt.want, h, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("header after Set (-want +got):\n%s", diff)
			}
			if !slices.Equal(groups, tt.groups) {
				t.Errorf("Set changed the caller's groups: got %q, want %q", groups, tt.groups)
			}
		})
	}
}

// TestImpersonatorSetDoesNotAliasGroups guards the header's group slice:
// appending to it must not write into the caller's (the session's) slice.
func TestImpersonatorSetDoesNotAliasGroups(t *testing.T) {
	groups := make([]string, 2, 4)
	groups[0], groups[1] = "a", "b"
	h := http.Header{}
	if err := (Impersonator{}).Set(h, "tok", "alice", groups); err != nil {
		t.Fatal(err)
	}
	h["Impersonate-Group"][0] = "changed"
	if groups[0] != "a" {
		t.Errorf("got groups[0] = %q after changing the header, want %q", groups[0], "a")
	}
}

func TestImpersonatorCheck(t *testing.T) {
	tests := []struct {
		name        string
		user        string
		groups      []string
		allowSystem bool
		wantErr     bool
	}{
		{name: "ok", user: "alice@example.com", groups: []string{"dev", ""}},
		{name: "no user", user: "", wantErr: true},
		{name: "bad group", user: "alice", groups: []string{"a\nb"}, wantErr: true},
		// Kubernetes's reserved names: with the guide's impersonation
		// role, a provider group named system:masters is cluster-admin.
		{name: "system:masters group", user: "alice", groups: []string{"dev", "system:masters"}, wantErr: true},
		{name: "system user", user: "system:admin", wantErr: true},
		{name: "service account user", user: "system:serviceaccount:kube-system:default", wantErr: true},
		{name: "node user", user: "system:node:worker-1", wantErr: true},
		{name: "system prefix in another case", user: "alice", groups: []string{"SYSTEM:masters"}, wantErr: true},
		{name: "system group allowed", user: "alice", groups: []string{"system:masters"}, allowSystem: true},
		{name: "system user allowed", user: "system:admin", allowSystem: true},
		{name: "allowed still checks the value", user: "system:admin\n", allowSystem: true, wantErr: true},
		// Look-alikes that are not the prefix.
		{name: "system without colon", user: "system", groups: []string{"systems:x", "my-system:x", "x system:y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			im := Impersonator{AllowSystemNames: tt.allowSystem}
			err := im.Check(tt.user, tt.groups)
			if got := err != nil; got != tt.wantErr {
				t.Errorf("Check(%q, %q) with AllowSystemNames %v = %v, want error: %v", tt.user, tt.groups, tt.allowSystem, err, tt.wantErr)
			}
			// Set decides alike, and leaves no credential when it refuses.
			h := http.Header{"Impersonate-User": {"x"}}
			setErr := im.Set(h, "tok", tt.user, tt.groups)
			if (setErr != nil) != tt.wantErr {
				t.Errorf("Set(%q, %q) = %v, want error: %v", tt.user, tt.groups, setErr, tt.wantErr)
			}
			if setErr != nil && (h.Get("Authorization") != "" || h.Get("Impersonate-User") != "") {
				t.Errorf("Set refused but left %v", h)
			}
		})
	}
}

// shallowClone copies the map and shares the value slices, so that a test
// can catch writes into them.
func shallowClone(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		out[k] = v
	}
	return out
}

func cloneDeep(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		out[k] = slices.Clone(v)
	}
	return out
}
