package session

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

func TestNewKeysAccepts(t *testing.T) {
	f := fixtures()
	paramsThenKey := append(pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), sec1PEM(t, f.ec)...)
	tests := []struct {
		name    string
		pem     []byte
		secret  []byte
		wantAlg string
	}{
		{name: "EC SEC 1", pem: sec1PEM(t, f.ec), wantAlg: "ES256"},
		{name: "EC PKCS 8", pem: pkcs8PEM(t, f.ec), wantAlg: "ES256"},
		{name: "EC after EC PARAMETERS", pem: paramsThenKey, wantAlg: "ES256"},
		{name: "RSA PKCS 1", pem: pkcs1PEM(f.rsa), wantAlg: "RS256"},
		{name: "RSA PKCS 8", pem: pkcs8PEM(t, f.rsa), wantAlg: "RS256"},
		{name: "signing key wins over a short secret", pem: sec1PEM(t, f.ec), secret: []byte("short"), wantAlg: "ES256"},
		{name: "derived from secret", secret: testSecret, wantAlg: "ES256"},
		{name: "whitespace-only key means none", pem: []byte(" \n"), secret: testSecret, wantAlg: "ES256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewKeys(tt.pem, tt.secret, testIssuer)
			if err != nil {
				t.Fatalf("NewKeys: %v", err)
			}
			if got := k.Algorithm(); got != tt.wantAlg {
				t.Errorf("Algorithm() = %q, want %q", got, tt.wantAlg)
			}
			if got := k.Issuer(); got != testIssuer {
				t.Errorf("Issuer() = %q, want %q", got, testIssuer)
			}
		})
	}
}

func TestNewKeysSameKeySameKID(t *testing.T) {
	// The kid depends on the key only, not on how it is encoded: replicas
	// given the key in different PEM forms still agree.
	f := fixtures()
	a := newTestKeys(t, sec1PEM(t, f.ec), nil)
	b := newTestKeys(t, pkcs8PEM(t, f.ec), nil)
	if a.KeyID() != b.KeyID() {
		t.Errorf("SEC 1 kid %q != PKCS 8 kid %q", a.KeyID(), b.KeyID())
	}
	c := newTestKeys(t, pkcs1PEM(f.rsa), nil)
	d := newTestKeys(t, pkcs8PEM(t, f.rsa), nil)
	if c.KeyID() != d.KeyID() {
		t.Errorf("PKCS 1 kid %q != PKCS 8 kid %q", c.KeyID(), d.KeyID())
	}
}

func TestNewKeysRefuses(t *testing.T) {
	f := fixtures()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(f.ec.Public())
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := sec1PEM(t, f.ec)
	legacyEncrypted := pem.EncodeToMemory(&pem.Block{
		Type:    "EC PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   []byte("ciphertext"),
	})

	tests := []struct {
		name     string
		pem      []byte
		secret   []byte
		noIssuer bool
		wantErr  string
	}{
		{name: "no issuer", secret: testSecret, noIssuer: true, wantErr: "no issuer"},
		{name: "nothing", wantErr: "no signing key and no shared secret"},
		{name: "short secret", secret: make([]byte, 31), wantErr: "shared secret is 31 bytes, too short"},
		{name: "not PEM", pem: []byte("hello"), wantErr: "signing key: not PEM"},
		{name: "base64 of PEM", pem: []byte(base64.StdEncoding.EncodeToString(ecPEM)), wantErr: "looks like base64 of PEM"},
		{name: "public key only", pem: pemBlock("PUBLIC KEY", pubDER), wantErr: `PEM holds ["PUBLIC KEY"] but no private key`},
		{name: "certificate only", pem: pemBlock("CERTIFICATE", []byte{1, 2, 3}), wantErr: `PEM holds ["CERTIFICATE"] but no private key`},
		{name: "two keys", pem: append(sec1PEM(t, f.ec), sec1PEM(t, f.otherEC)...), wantErr: "more than one private key"},
		{name: "legacy encrypted", pem: legacyEncrypted, wantErr: "encrypted PEM keys are not supported"},
		{name: "PKCS 8 encrypted", pem: pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), wantErr: "encrypted PEM keys are not supported"},
		{name: "corrupt EC", pem: pemBlock("EC PRIVATE KEY", []byte{1, 2, 3}), wantErr: "signing key: parsing EC PRIVATE KEY"},
		{name: "corrupt RSA", pem: pemBlock("RSA PRIVATE KEY", []byte{1, 2, 3}), wantErr: "signing key: parsing RSA PRIVATE KEY"},
		{name: "corrupt PKCS 8", pem: pemBlock("PRIVATE KEY", []byte{1, 2, 3}), wantErr: "signing key: parsing PRIVATE KEY"},
		{name: "EC wrong type label", pem: pemBlock("RSA PRIVATE KEY", mustSEC1(t, f.ec)), wantErr: "signing key: parsing RSA PRIVATE KEY"},
		{name: "P-384", pem: sec1PEM(t, f.p384), wantErr: "EC key on curve P-384 is not supported: want P-256"},
		{name: "P-384 PKCS 8", pem: pkcs8PEM(t, f.p384), wantErr: "EC key on curve P-384 is not supported"},
		{name: "RSA 1024", pem: pkcs1PEM(f.rsa1024), wantErr: "RSA key of 1024 bits is too short: want at least 2048"},
		{name: "Ed25519", pem: pkcs8PEM(t, edKey), wantErr: "ed25519.PrivateKey keys are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issuer := testIssuer
			if tt.noIssuer {
				issuer = ""
			}
			k, err := NewKeys(tt.pem, tt.secret, issuer)
			if err == nil {
				t.Fatalf("NewKeys succeeded (alg %s), want error containing %q", k.Algorithm(), tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantErr)
			}
			// No key material in the message.
			if len(tt.pem) > 0 && strings.Contains(err.Error(), string(tt.pem)) {
				t.Errorf("error quotes the key: %q", err)
			}
		})
	}
}

func mustSEC1(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestDerivedKeyIsStable(t *testing.T) {
	// Every replica (and every version, during a rolling upgrade) must
	// derive the same key from the same secret; the golden JWKS pins the
	// key across versions, this pins it across calls.
	a := derivedKeys(t)
	b := derivedKeys(t)
	if a.KeyID() != b.KeyID() {
		t.Fatalf("derived kid changed between calls: %q then %q", a.KeyID(), b.KeyID())
	}
	if !bytes.Equal(a.JWKS(), b.JWKS()) {
		t.Fatalf("derived JWKS changed between calls:\n%s\n%s", a.JWKS(), b.JWKS())
	}
	// And one replica verifies what another issued.
	if _, err := b.Verify(issue(t, a, validClaims()), testAudience, testNow); err != nil {
		t.Fatalf("replica b refused replica a's token: %v", err)
	}

	// A different secret gives a different key, even one differing only
	// in its last byte.
	other := append([]byte(nil), testSecret...)
	other[len(other)-1] ^= 1
	c := newTestKeys(t, nil, other)
	if c.KeyID() == a.KeyID() {
		t.Fatalf("secrets differing in one bit derived the same kid %q", a.KeyID())
	}
	_, err := c.Verify(issue(t, a, validClaims()), testAudience, testNow)
	checkSentinel(t, err, ErrUnknownKey)
}

func TestKeyIDIsThumbprint(t *testing.T) {
	// RFC 7638, section 3.1 gives the exact input for an EC key; compute
	// it by hand rather than trusting the library to agree with itself.
	f := fixtures()
	k := ecKeys(t)
	pub := f.ec.PublicKey
	raw, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	x, y := raw[1:33], raw[33:]
	input := `{"crv":"P-256","kty":"EC","x":"` + b64(x) + `","y":"` + b64(y) + `"}`
	sum := crypto.SHA256.New()
	sum.Write([]byte(input))
	if want := b64(sum.Sum(nil)); k.KeyID() != want {
		t.Errorf("KeyID() = %q, want RFC 7638 thumbprint %q", k.KeyID(), want)
	}
}

func TestJWKS(t *testing.T) {
	for _, tt := range []struct {
		name    string
		keys    *Keys
		wantKty string
	}{
		{"EC", ecKeys(t), "EC"},
		{"RSA", rsaKeys(t), "RSA"},
		{"derived", derivedKeys(t), "EC"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(tt.keys.JWKS(), &set); err != nil {
				t.Fatalf("JWKS is not JSON: %v", err)
			}
			if len(set.Keys) != 1 {
				t.Fatalf("JWKS has %d keys, want 1", len(set.Keys))
			}
			key := set.Keys[0]
			got := map[string]any{"use": key["use"], "alg": key["alg"], "kid": key["kid"], "kty": key["kty"]}
			want := map[string]any{"use": "sig", "alg": tt.keys.Algorithm(), "kid": tt.keys.KeyID(), "kty": tt.wantKty}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("JWKS key (-want +got):\n%s", diff)
			}
			// Public parts only.
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := key[private]; ok {
					t.Errorf("JWKS has private member %q", private)
				}
			}

			// A third-party verifier that knows only the JWKS accepts our
			// token: the interoperability a Pomerium-style upstream needs.
			var jwks jose.JSONWebKeySet
			if err := json.Unmarshal(tt.keys.JWKS(), &jwks); err != nil {
				t.Fatal(err)
			}
			found := jwks.Key(tt.keys.KeyID())
			if len(found) != 1 {
				t.Fatalf("JWKS lookup by kid found %d keys", len(found))
			}
			tok := issue(t, tt.keys, validClaims())
			jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(tt.keys.Algorithm())})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jws.Verify(found[0]); err != nil {
				t.Errorf("token does not verify with the published JWKS: %v", err)
			}
		})
	}
}
