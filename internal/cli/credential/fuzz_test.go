package credential

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseExecInfo: KUBERNETES_EXEC_INFO comes from kubectl, but a
// person can set it too. The parser must not panic, and whatever it
// accepts must name a version Marshal can answer in.
func FuzzParseExecInfo(f *testing.F) {
	for _, s := range []string{
		"",
		`{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":true}}`,
		`{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}`,
		`{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1"}`,
		`{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"cluster":{"server":"https://x","config":null}}}`,
		`{"kind":1}`, `null`, `[]`, `{`, `"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		info, err := ParseExecInfo(raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "reading KUBERNETES_EXEC_INFO") {
				t.Errorf("error %q does not say what was being read", err)
			}
			return
		}
		if _, err := Marshal(info.APIVersion, "a.b.c", time.Unix(1795838400, 0)); err != nil {
			t.Errorf("accepted %q as %+v, but cannot answer in it: %v", raw, info, err)
		}
	})
}

// FuzzParseToken: tokens arrive on the loopback listener and from the
// cache file. The decoder must not panic, and a token it accepts has an
// expiry that survives the trip through the ExecCredential.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{
		goldenJWT,
		jwtWith(`{"exp":1795838400.25,"email":"a@example.com"}`),
		jwtWith(`{"exp":"1"}`), jwtWith(`{"exp":1e999}`), jwtWith(`{}`), jwtWith(`null`),
		"a.b.c", "..", "", "a.e30.c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := ParseToken(raw)
		if err != nil {
			return
		}
		if tok.Raw != raw || tok.Expiry.IsZero() || tok.Expiry.Before(time.Unix(0, 0)) {
			t.Fatalf("accepted %q with %+v", raw, tok)
		}
		if _, err := Marshal(APIVersionV1, tok.Raw, tok.Expiry); err != nil {
			t.Errorf("accepted %q but cannot write it: %v", raw, err)
		}
	})
}
