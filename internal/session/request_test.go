package session

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTokenFromRequest(t *testing.T) {
	const (
		jwt   = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"
		other = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ2In0.c2ln"
	)
	type want struct {
		Token string
		OK    bool
		Err   error // a sentinel, matched with errors.Is
	}
	found := want{Token: jwt, OK: true}
	absent := want{}
	ambiguous := want{Err: ErrAmbiguousToken}
	malformed := want{Err: ErrMalformed}

	tests := []struct {
		name   string
		header http.Header
		want   want
	}{
		// The accepted forms.
		{"Bearer Pomerium-", http.Header{"Authorization": {"Bearer Pomerium-" + jwt}}, found},
		{"Pomerium scheme", http.Header{"Authorization": {"Pomerium " + jwt}}, found},
		{"X-Pomerium-Authorization bare", http.Header{"X-Pomerium-Authorization": {jwt}}, found},
		{"X-Pomerium-Authorization Bearer Pomerium-", http.Header{"X-Pomerium-Authorization": {"Bearer Pomerium-" + jwt}}, found},
		{"X-Pomerium-Authorization Pomerium scheme", http.Header{"X-Pomerium-Authorization": {"Pomerium " + jwt}}, found},
		{"scheme case-insensitive", http.Header{"Authorization": {"bEARER Pomerium-" + jwt}}, found},
		{"Pomerium scheme lower case", http.Header{"Authorization": {"pomerium " + jwt}}, found},
		{"several spaces after the scheme", http.Header{"Authorization": {"Bearer   Pomerium-" + jwt}}, found},
		{"surrounding white space", http.Header{"Authorization": {" \tBearer Pomerium-" + jwt + " \t"}}, found},
		{"both headers, same token", http.Header{"Authorization": {"Bearer Pomerium-" + jwt}, "X-Pomerium-Authorization": {jwt}}, found},
		{"both headers, same token, both prefixed", http.Header{"Authorization": {"Pomerium " + jwt}, "X-Pomerium-Authorization": {"Bearer Pomerium-" + jwt}}, found},
		{"someone else's Authorization beside ours", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}, "X-Pomerium-Authorization": {jwt}}, found},
		{"plain bearer beside ours", http.Header{"Authorization": {"Bearer " + other}, "X-Pomerium-Authorization": {jwt}}, found},
		{"empty X-Pomerium-Authorization beside ours", http.Header{"Authorization": {"Pomerium " + jwt}, "X-Pomerium-Authorization": {""}}, found},

		// Not ours: the caller falls back to the session cookie.
		{"no headers", http.Header{}, absent},
		{"nil header", nil, absent},
		{"plain bearer", http.Header{"Authorization": {"Bearer " + jwt}}, absent},
		{"bearer with lower-case pomerium- prefix", http.Header{"Authorization": {"Bearer pomerium-" + jwt}}, absent},
		{"Basic", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, absent},
		{"Bearer alone", http.Header{"Authorization": {"Bearer"}}, absent},
		{"empty Authorization", http.Header{"Authorization": {""}}, absent},
		{"empty X-Pomerium-Authorization", http.Header{"X-Pomerium-Authorization": {""}}, absent},
		{"exec-credential token without a scheme", http.Header{"Authorization": {"Pomerium-" + jwt}}, absent},
		{"tab instead of space", http.Header{"Authorization": {"Pomerium\t" + jwt}}, absent},
		{"Pomeriumx scheme", http.Header{"Authorization": {"Pomeriumx " + jwt}}, absent},

		// Ambiguous: refused.
		{"two Authorization headers", http.Header{"Authorization": {"Bearer Pomerium-" + jwt, "Bearer Pomerium-" + jwt}}, ambiguous},
		{"two Authorization headers, one not ours", http.Header{"Authorization": {"Basic dXNlcjpwYXNz", "Pomerium " + jwt}}, ambiguous},
		{"two empty Authorization headers", http.Header{"Authorization": {"", ""}}, ambiguous},
		{"two X-Pomerium-Authorization headers", http.Header{"X-Pomerium-Authorization": {jwt, jwt}}, ambiguous},
		{"both headers, different tokens", http.Header{"Authorization": {"Bearer Pomerium-" + other}, "X-Pomerium-Authorization": {jwt}}, ambiguous},
		{"both headers, different tokens, Pomerium scheme", http.Header{"Authorization": {"Pomerium " + other}, "X-Pomerium-Authorization": {"Pomerium " + jwt}}, ambiguous},

		// Ours, but broken: refused.
		{"Pomerium scheme, no token", http.Header{"Authorization": {"Pomerium"}}, malformed},
		{"Pomerium scheme, spaces only", http.Header{"Authorization": {"Pomerium    "}}, malformed},
		{"Bearer Pomerium-, no token", http.Header{"Authorization": {"Bearer Pomerium-"}}, malformed},
		{"two tokens in one value", http.Header{"Authorization": {"Pomerium " + jwt + ", Pomerium " + other}}, malformed},
		{"token with a space", http.Header{"Authorization": {"Pomerium " + jwt + " x"}}, malformed},
		{"token with a comma", http.Header{"X-Pomerium-Authorization": {jwt + "," + other}}, malformed},
		{"X-Pomerium-Authorization plain bearer", http.Header{"X-Pomerium-Authorization": {"Bearer " + jwt}}, malformed},
		{"X-Pomerium-Authorization padded base64", http.Header{"X-Pomerium-Authorization": {jwt + "=="}}, malformed},
		{"X-Pomerium-Authorization control character", http.Header{"X-Pomerium-Authorization": {jwt + "\x00"}}, malformed},
		{"X-Pomerium-Authorization non-ASCII", http.Header{"X-Pomerium-Authorization": {"é" + jwt}}, malformed},
		{"huge token", http.Header{"Authorization": {"Pomerium " + strings.Repeat("a", MaxTokenSize+1)}}, malformed},
		{"broken Authorization beats good X-Pomerium-Authorization", http.Header{"Authorization": {"Pomerium"}, "X-Pomerium-Authorization": {jwt}}, malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, ok, err := TokenFromRequest(tt.header)
			got := want{Token: token, OK: ok}
			if tt.want.Err != nil && errors.Is(err, tt.want.Err) {
				got.Err = tt.want.Err
			} else {
				got.Err = err
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
				t.Errorf("TokenFromRequest (-want +got):\n%s", diff)
			}
			if err != nil {
				for _, vs := range tt.header {
					for _, v := range vs {
						if len(v) >= 16 && strings.Contains(err.Error(), v) {
							t.Errorf("error %q quotes a header value", err)
						}
					}
				}
				if strings.Contains(err.Error(), jwt) || strings.Contains(err.Error(), other) {
					t.Errorf("error %q quotes the token", err)
				}
			}
		})
	}
}

func TestTokenFromRequestMatchesServerHeaders(t *testing.T) {
	// What a real server hands over: canonical keys, values as sent.
	r, err := http.NewRequest(http.MethodGet, "https://k8s.example.com/api", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Add("authorization", "Bearer Pomerium-a.b.c")
	r.Header.Add("x-pomerium-authorization", "a.b.c")
	token, ok, err := TokenFromRequest(r.Header)
	if token != "a.b.c" || !ok || err != nil {
		t.Errorf("TokenFromRequest = %q, %t, %v; want %q, true, nil", token, ok, err, "a.b.c")
	}
}
