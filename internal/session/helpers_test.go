package session

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"sync"
	"testing"
	"time"
)

// Fixtures shared by the tests. Keys are generated once per test binary:
// RSA generation is slow on a busy machine.

const (
	testIssuer   = "https://authenticate.example.com"
	testAudience = "https://k8s.example.com"
)

// testSecret is a SHARED_SECRET for tests; the golden files pin what it
// derives to.
var testSecret = []byte("portcullis golden shared secret, for tests only")

// testNow is the fixed clock of the tests: 2026-05-01T12:00:00Z.
var testNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

var fixtures = sync.OnceValue(func() (f struct {
	ec, otherEC, p384 *ecdsa.PrivateKey
	rsa, rsa1024      *rsa.PrivateKey
}) {
	var err error
	must := func(e error) {
		if e != nil {
			panic(e)
		}
	}
	f.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	f.otherEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	f.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	f.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	f.rsa1024, err = rsa.GenerateKey(rand.Reader, 1024)
	must(err)
	return f
})

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// sec1PEM encodes an EC key as "EC PRIVATE KEY".
func sec1PEM(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}

// pkcs8PEM encodes any key as "PRIVATE KEY".
func pkcs8PEM(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

// pkcs1PEM encodes an RSA key as "RSA PRIVATE KEY".
func pkcs1PEM(k *rsa.PrivateKey) []byte {
	return pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
}

func newTestKeys(t testing.TB, signingKeyPEM, secret []byte) *Keys {
	t.Helper()
	k, err := NewKeys(signingKeyPEM, secret, testIssuer)
	if err != nil {
		t.Fatalf("NewKeys: %v", err)
	}
	k.now = func() time.Time { return testNow }
	return k
}

// ecKeys, rsaKeys and derivedKeys are the three kinds of Keys.
func ecKeys(t testing.TB) *Keys  { return newTestKeys(t, sec1PEM(t, fixtures().ec), nil) }
func rsaKeys(t testing.TB) *Keys { return newTestKeys(t, pkcs1PEM(fixtures().rsa), nil) }
func derivedKeys(t testing.TB) *Keys {
	return newTestKeys(t, nil, testSecret)
}

// validClaims are claims Issue accepts and Verify at testNow accepts.
func validClaims() Claims {
	return Claims{
		Subject:   "user-1",
		Email:     "alice@example.com",
		Name:      "Alice Example",
		Groups:    []string{"sre", "dev"},
		SessionID: "session-1",
		ID:        "token-1",
		Audience:  testAudience,
		IssuedAt:  testNow.Add(-time.Minute),
		NotBefore: testNow.Add(-time.Minute),
		Expiry:    testNow.Add(time.Hour),
	}
}

func issue(t testing.TB, k *Keys, c Claims) string {
	t.Helper()
	tok, err := k.Issue(c)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rawJSON is JSON text used as is by signRaw, for shapes a map cannot give.
type rawJSON string

func toJSON(t testing.TB, v any) []byte {
	t.Helper()
	if r, ok := v.(rawJSON); ok {
		return []byte(r)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signRaw builds a compact JWS by hand, so tests can forge what Issue
// never writes. alg picks the signing: "none" (empty signature), "HS256"
// (key is []byte), "ES256" (key is *ecdsa.PrivateKey) or "RS256" (key is
// *rsa.PrivateKey); the header is written as given, whatever its "alg".
func signRaw(t testing.TB, alg string, key any, header, claims any) string {
	t.Helper()
	input := b64(toJSON(t, header)) + "." + b64(toJSON(t, claims))
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch alg {
	case "none":
	case "HS256":
		mac := hmac.New(sha256.New, key.([]byte))
		mac.Write([]byte(input))
		sig = mac.Sum(nil)
	case "ES256":
		r, s, err := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case "RS256":
		var err error
		sig, err = rsa.SignPKCS1v15(nil, key.(*rsa.PrivateKey), crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("signRaw: unknown alg %q", alg)
	}
	return input + "." + b64(sig)
}

// claimsMap is validClaims as the JSON object Issue would sign, for tests
// that change one claim.
func claimsMap(k *Keys) map[string]any {
	c := validClaims()
	return map[string]any{
		"iss":    k.Issuer(),
		"sub":    c.Subject,
		"email":  c.Email,
		"groups": c.Groups,
		"jti":    c.ID,
		"aud":    c.Audience,
		"iat":    c.IssuedAt.Unix(),
		"nbf":    c.NotBefore.Unix(),
		"exp":    c.Expiry.Unix(),
	}
}

// verifyErrors are the sentinels of Verify; each error must match one.
var verifyErrors = []error{
	ErrMalformed, ErrInvalidSignature, ErrUnknownKey, ErrWrongIssuer,
	ErrWrongAudience, ErrMissingExpiry, ErrExpired, ErrNotYetValid,
}

// checkSentinel fails unless err matches want and no other Verify sentinel.
func checkSentinel(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
	for _, other := range verifyErrors {
		if other != want && errors.Is(err, other) {
			t.Errorf("error %q also matches %v", err, other)
		}
	}
}

// derivedPrivateKey is the private key behind derivedKeys, for forging
// tokens that carry a valid signature of ours.
func derivedPrivateKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := deriveSigningKey(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
