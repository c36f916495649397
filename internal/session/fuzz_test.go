package session

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// FuzzVerify feeds Verify arbitrary strings. Verify must not panic, must
// return exactly one of its sentinel errors, must never quote the input,
// and must accept nothing but the genuine token of the seed corpus:
// forging a signature by mutation would be a break of ES256 or of our
// checks. ECDSA signatures are randomised, so each fuzz worker issues its
// own copy; "genuine" means the same header and claims, signed by us.
func FuzzVerify(f *testing.F) {
	k := derivedKeys(f)
	own := derivedPrivateKey(f)
	genuine := issue(f, k, validClaims())
	parts := strings.Split(genuine, ".")
	signed := parts[0] + "." + parts[1] + "."
	hdr := map[string]any{"alg": "ES256", "kid": k.KeyID(), "typ": "JWT"}

	for _, seed := range []string{
		genuine,
		"", ".", "..", "...", "a.b.c", "not a token",
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1],
		genuine + ".",
		signRaw(f, "none", nil, map[string]any{"alg": "none", "kid": k.KeyID()}, claimsMap(k)),
		signRaw(f, "HS256", k.JWKS(), map[string]any{"alg": "HS256", "kid": k.KeyID()}, claimsMap(k)),
		signRaw(f, "ES256", own, map[string]any{"alg": "ES256", "kid": k.KeyID(), "crit": []string{"x"}}, claimsMap(k)),
		signRaw(f, "ES256", own, hdr, rawJSON(`{"exp":1e999}`)),
		signRaw(f, "ES256", own, hdr, rawJSON(`{"aud":[1,2],"exp":-1}`)),
		signRaw(f, "ES256", own, hdr, rawJSON(`[]`)),
	} {
		f.Add(seed)
	}

	sentinels := verifyErrors
	f.Fuzz(func(t *testing.T, token string) {
		c, err := k.Verify(token, testAudience, testNow)
		if err == nil {
			if !strings.HasPrefix(token, signed) || strings.Count(token, ".") != 2 {
				t.Fatalf("Verify accepted a token that is not the genuine one: %q → %+v", token, c)
			}
			return
		}
		if c != nil {
			t.Fatalf("Verify returned claims with error %v", err)
		}
		matched := 0
		for _, s := range sentinels {
			if errors.Is(err, s) {
				matched++
			}
		}
		if matched != 1 {
			t.Fatalf("error %q matches %d sentinels, want 1", err, matched)
		}
		if len(token) >= 16 && strings.Contains(err.Error(), token) {
			t.Fatalf("error %q quotes the token", err)
		}
	})
}

// FuzzTokenFromRequest feeds TokenFromRequest arbitrary header values.
// It must not panic; an error means no token; a token is a plausible
// compact JWS taken from the end of one of the values; and the answer is
// the same whichever order the two headers are looked at in (it does not
// depend on map order).
func FuzzTokenFromRequest(f *testing.F) {
	const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"
	f.Add("Bearer Pomerium-"+jwt, "", "", "", uint8(1))
	f.Add("Pomerium "+jwt, "", jwt, "", uint8(5))
	f.Add("", "", "Bearer Pomerium-"+jwt, "", uint8(4))
	f.Add("Bearer "+jwt, "Basic x", jwt, jwt, uint8(15))
	f.Add("Pomerium", "", "Pomerium  "+jwt+" ", "", uint8(5))
	f.Add("Bearer Pomerium-"+jwt+"x", "", jwt, "", uint8(5))
	f.Fuzz(func(t *testing.T, auth1, auth2, xpa1, xpa2 string, present uint8) {
		h := http.Header{}
		for i, v := range []struct{ name, value string }{
			{headerAuthorization, auth1}, {headerAuthorization, auth2},
			{headerPomeriumAuthorization, xpa1}, {headerPomeriumAuthorization, xpa2},
		} {
			if present&(1<<i) != 0 {
				h[v.name] = append(h[v.name], v.value)
			}
		}
		token, ok, err := TokenFromRequest(h)
		if err != nil {
			if ok || token != "" {
				t.Fatalf("got %q, %t with error %v", token, ok, err)
			}
			if !errors.Is(err, ErrAmbiguousToken) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is neither ErrAmbiguousToken nor ErrMalformed", err)
			}
			return
		}
		if !ok {
			if token != "" {
				t.Fatalf("got token %q with ok false", token)
			}
			return
		}
		if token == "" || len(token) > MaxTokenSize {
			t.Fatalf("token of %d bytes", len(token))
		}
		for i := 0; i < len(token); i++ {
			if !isJWTChar(token[i]) {
				t.Fatalf("token %q has byte %#x", token, token[i])
			}
		}
		fromEnd := false
		for _, vs := range h {
			for _, v := range vs {
				if strings.HasSuffix(strings.Trim(v, " \t"), token) {
					fromEnd = true
				}
			}
		}
		if !fromEnd {
			t.Fatalf("token %q is not the end of any header value in %q", token, h)
		}
		// Determinism: asking again gives the same answer.
		token2, ok2, err2 := TokenFromRequest(h)
		if token2 != token || ok2 != ok || err2 != nil {
			t.Fatalf("second call gave %q, %t, %v", token2, ok2, err2)
		}
	})
}
