package session

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// TestVerifyRefusesForgedTokens is the attack table: each entry is a token
// that must not verify, and the specific error it must get.
func TestVerifyRefusesForgedTokens(t *testing.T) {
	f := fixtures()
	k := derivedKeys(t)         // the server's keys (ES256)
	own := derivedPrivateKey(t) // the server's private key, to reach the checks after the signature
	kid := k.KeyID()
	valid := issue(t, k, validClaims())
	parts := strings.Split(valid, ".")

	rsaK := rsaKeys(t)
	otherEC := newTestKeys(t, sec1PEM(t, f.otherEC), nil)

	// The server's public key as an attacker would fetch it, in the two
	// forms HMAC key-confusion attacks use: PEM and the JWKS text.
	pubDER, err := x509.MarshalPKIXPublicKey(own.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	// Same key and kid, another issuer: a deployment sharing the secret.
	otherIssuer, err := NewKeys(nil, testSecret, "https://authenticate.other.example.com")
	if err != nil {
		t.Fatal(err)
	}

	hdr := func(alg string) map[string]any { return map[string]any{"alg": alg, "kid": kid, "typ": "JWT"} }
	claims := func(edit func(map[string]any)) map[string]any {
		c := claimsMap(k)
		if edit != nil {
			edit(c)
		}
		return c
	}
	// flipLastBits changes the unused low bits of a segment's last
	// character: the same bytes, spelled differently.
	flipLastBits := func(seg string) string {
		last := seg[len(seg)-1]
		alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		i := strings.IndexByte(alphabet, last)
		return seg[:len(seg)-1] + string(alphabet[i^1])
	}

	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		// Algorithm attacks.
		{"alg none", signRaw(t, "none", nil, hdr("none"), claims(nil)), ErrInvalidSignature},
		{"alg None", signRaw(t, "none", nil, hdr("None"), claims(nil)), ErrInvalidSignature},
		{"alg none with our signature", b64(toJSON(t, hdr("none"))) + "." + parts[1] + "." + parts[2], ErrInvalidSignature},
		{"HS256 keyed with the public key PEM", signRaw(t, "HS256", pubPEM, hdr("HS256"), claims(nil)), ErrInvalidSignature},
		{"HS256 keyed with the public key DER", signRaw(t, "HS256", pubDER, hdr("HS256"), claims(nil)), ErrInvalidSignature},
		{"HS256 keyed with the JWKS", signRaw(t, "HS256", k.JWKS(), hdr("HS256"), claims(nil)), ErrInvalidSignature},
		{"HS256 keyed with the shared secret", signRaw(t, "HS256", testSecret, hdr("HS256"), claims(nil)), ErrInvalidSignature},
		{"RS256 token from another deployment", issue(t, rsaK, validClaims()), ErrInvalidSignature},
		{"RS256 signed by an RSA key, naming our kid", signRaw(t, "RS256", f.rsa, hdr("RS256"), claims(nil)), ErrInvalidSignature},
		{"ES384 header", signRaw(t, "ES256", own, hdr("ES384"), claims(nil)), ErrInvalidSignature},
		{"PS256 header", signRaw(t, "ES256", own, hdr("PS256"), claims(nil)), ErrInvalidSignature},
		{"alg missing", signRaw(t, "ES256", own, map[string]any{"kid": kid}, claims(nil)), ErrMalformed},
		{"alg not a string", signRaw(t, "ES256", own, rawJSON(`{"alg":1,"kid":"`+kid+`"}`), claims(nil)), ErrMalformed},

		// Keys.
		{"wrong key naming our kid", signRaw(t, "ES256", f.otherEC, hdr("ES256"), claims(nil)), ErrInvalidSignature},
		{"wrong key with its own kid", issue(t, otherEC, validClaims()), ErrUnknownKey},
		{"unknown kid, our signature", signRaw(t, "ES256", own, map[string]any{"alg": "ES256", "kid": "rotated-away"}, claims(nil)), ErrUnknownKey},
		{"no kid, our signature", signRaw(t, "ES256", own, map[string]any{"alg": "ES256"}, claims(nil)), ErrUnknownKey},
		{"signature of another token", parts[0] + "." + strings.Split(issue(t, k, func() Claims { c := validClaims(); c.Email = "mallory@example.com"; return c }()), ".")[1] + "." + parts[2], ErrInvalidSignature},
		{"zero signature", parts[0] + "." + parts[1] + "." + b64(make([]byte, 64)), ErrInvalidSignature},
		{"short signature", parts[0] + "." + parts[1] + "." + b64(make([]byte, 63)), ErrInvalidSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", ErrInvalidSignature},

		// Header extensions and types, with a valid signature.
		{"crit header", signRaw(t, "ES256", own, map[string]any{"alg": "ES256", "kid": kid, "crit": []string{"exp"}, "exp": 1}, claims(nil)), ErrMalformed},
		{"b64 false", signRaw(t, "ES256", own, map[string]any{"alg": "ES256", "kid": kid, "b64": false, "crit": []string{"b64"}}, claims(nil)), ErrMalformed},
		{"typ of an access token", signRaw(t, "ES256", own, map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims(nil)), ErrMalformed},
		{"header is an array", signRaw(t, "ES256", own, rawJSON(`["ES256"]`), claims(nil)), ErrMalformed},
		{"header is null", signRaw(t, "ES256", own, rawJSON(`null`), claims(nil)), ErrMalformed},

		// Claims, with a valid signature.
		{"expired", issue(t, k, func() Claims {
			c := validClaims()
			c.IssuedAt, c.NotBefore, c.Expiry = testNow.Add(-time.Hour), time.Time{}, testNow.Add(-2*Leeway)
			return c
		}()), ErrExpired},
		{"not yet valid", issue(t, k, func() Claims { c := validClaims(); c.NotBefore = testNow.Add(2 * Leeway); return c }()), ErrNotYetValid},
		{"issued in the future", issue(t, k, func() Claims {
			c := validClaims()
			c.IssuedAt = testNow.Add(2 * Leeway)
			c.NotBefore = time.Time{}
			return c
		}()), ErrNotYetValid},
		{"wrong audience", issue(t, k, func() Claims { c := validClaims(); c.Audience = "https://other.example.com"; return c }()), ErrWrongAudience},
		{"wrong issuer, same key", issue(t, otherIssuer, validClaims()), ErrWrongIssuer},
		{"no issuer", signRaw(t, "ES256", own, hdr("ES256"), claims(func(c map[string]any) { delete(c, "iss") })), ErrWrongIssuer},
		{"missing exp", signRaw(t, "ES256", own, hdr("ES256"), claims(func(c map[string]any) { delete(c, "exp") })), ErrMissingExpiry},
		{"exp zero", signRaw(t, "ES256", own, hdr("ES256"), claims(func(c map[string]any) { c["exp"] = 0 })), ErrExpired},
		{"exp as string", signRaw(t, "ES256", own, hdr("ES256"), claims(func(c map[string]any) { c["exp"] = "4102444800" })), ErrMalformed},
		{"exp beyond year 9999", signRaw(t, "ES256", own, hdr("ES256"), claims(func(c map[string]any) { c["exp"] = 1e15 })), ErrMalformed},
		{"groups not strings", signRaw(t, "ES256", own, hdr("ES256"), claims(func(c map[string]any) { c["groups"] = []int{1} })), ErrMalformed},
		{"claims not an object", signRaw(t, "ES256", own, hdr("ES256"), rawJSON(`"admin"`)), ErrMalformed},
		{"claims not JSON", signRaw(t, "ES256", own, hdr("ES256"), rawJSON(`{"exp":`)), ErrMalformed},

		// Shapes.
		{"empty", "", ErrMalformed},
		{"garbage", "not a token", ErrMalformed},
		{"binary garbage", "\x00\xff\x01.\x02.\x03", ErrMalformed},
		{"one part", parts[0], ErrMalformed},
		{"truncated to two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"truncated mid-claims", valid[:len(parts[0])+1+len(parts[1])/2], ErrMalformed},
		{"last character cut", valid[:len(valid)-1], ErrMalformed},
		{"extra dot at the end", valid + ".", ErrMalformed},
		{"extra part", valid + ".x", ErrMalformed},
		{"five parts (JWE shape)", "a.b.c.d.e", ErrMalformed},
		{"dots only", "..", ErrMalformed},
		{"leading space", " " + valid, ErrMalformed},
		{"Pomerium- prefix left on", "Pomerium-" + valid, ErrMalformed},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], ErrMalformed},
		{"standard base64 character", parts[0] + "." + parts[1] + ".+" + parts[2][1:], ErrMalformed},
		{"non-canonical signature encoding", parts[0] + "." + parts[1] + "." + flipLastBits(parts[2]), ErrMalformed},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, ErrMalformed},
		{"huge", strings.Repeat("A", MaxTokenSize+1), ErrMalformed},
		{"huge but well-formed", parts[0] + "." + strings.Repeat("A", MaxTokenSize) + "." + parts[2], ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := k.Verify(tt.token, testAudience, testNow)
			if err == nil {
				t.Fatalf("Verify accepted a forged token: %+v", got)
			}
			if got != nil {
				t.Errorf("Verify returned claims %+v with error %v", got, err)
			}
			checkSentinel(t, err, tt.wantErr)
			// The message never echoes the token or a sizable piece of it.
			msg := err.Error()
			for _, p := range append(strings.Split(tt.token, "."), tt.token) {
				if len(p) >= 16 && strings.Contains(msg, p) {
					t.Errorf("error %q quotes the token", msg)
				}
			}
		})
	}

	// The genuine article, for contrast.
	if _, err := k.Verify(valid, testAudience, testNow); err != nil {
		t.Fatalf("the valid token does not verify: %v", err)
	}
}

func TestVerifyCrossAlgorithm(t *testing.T) {
	// Each kind of Keys accepts its own algorithm only: an EC server
	// refuses an RS256 token and an RSA server an ES256 token, even
	// signed by a key it would know by kid.
	ec, rsa := ecKeys(t), rsaKeys(t)
	_, err := rsa.Verify(issue(t, ec, validClaims()), testAudience, testNow)
	checkSentinel(t, err, ErrInvalidSignature)
	_, err = ec.Verify(issue(t, rsa, validClaims()), testAudience, testNow)
	checkSentinel(t, err, ErrInvalidSignature)

	// An RSA server, an HS256 token keyed with its public key PEM: the
	// classic RS256 → HS256 confusion.
	f := fixtures()
	pubDER, err := x509.MarshalPKIXPublicKey(f.rsa.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	forged := signRaw(t, "HS256", pubPEM, map[string]any{"alg": "HS256", "kid": rsa.KeyID(), "typ": "JWT"}, claimsMap(rsa))
	_, err = rsa.Verify(forged, testAudience, testNow)
	checkSentinel(t, err, ErrInvalidSignature)

	// And RS256 signed with the server's own RSA key is fine.
	if _, err := rsa.Verify(signRaw(t, "RS256", f.rsa, map[string]any{"alg": "RS256", "kid": rsa.KeyID()}, claimsMap(rsa)), testAudience, testNow); err != nil {
		t.Errorf("hand-made RS256 token refused: %v", err)
	}
}
