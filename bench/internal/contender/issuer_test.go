package contender

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// The issuer's discovery points at its JWKS, and a minted token verifies
// with the key published there and carries the claims asked for.
func TestIssuer(t *testing.T) {
	ca, err := testenv.NewCA("bench")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := StartIssuer(ca)
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS()}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	get := func(url string, v any) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: got %s, want 200 OK", url, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}

	var disc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	get(iss.URL+"/.well-known/openid-configuration", &disc)
	if disc.Issuer != iss.URL || !slices.Equal(disc.Algs, []string{"RS256"}) {
		t.Errorf("got discovery issuer %q, algs %q; want %q, [RS256]", disc.Issuer, disc.Algs, iss.URL)
	}
	var jwks struct {
		Keys []struct{ Kid, N, E string } `json:"keys"`
	}
	get(disc.JWKSURI, &jwks)
	if len(jwks.Keys) != 1 {
		t.Fatalf("got %d keys, want 1", len(jwks.Keys))
	}
	k := jwks.Keys[0]
	n, err := base64.RawURLEncoding.DecodeString(k.N)
	if err != nil {
		t.Fatal(err)
	}
	e, err := base64.RawURLEncoding.DecodeString(k.E)
	if err != nil {
		t.Fatal(err)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}

	tok, err := iss.Mint("alice@example.com", []string{"developers", "readers"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("got %d token parts, want 3", len(parts))
	}
	dec := func(s string, v any) {
		t.Helper()
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	var header map[string]string
	dec(parts[0], &header)
	if header["alg"] != "RS256" || header["kid"] != k.Kid {
		t.Errorf("got header %v, want alg RS256 and kid %q", header, k.Kid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		t.Errorf("the token does not verify with the published key: %v", err)
	}
	var claims idClaims
	dec(parts[1], &claims)
	if claims.Issuer != iss.URL || claims.Audience != iss.ClientID || claims.Email != "alice@example.com" ||
		!claims.EmailVerified || !slices.Equal(claims.Groups, []string{"developers", "readers"}) {
		t.Errorf("got claims %+v", claims)
	}
	if ttl := claims.Expiry - claims.IssuedAt; ttl != 3600 {
		t.Errorf("got exp - iat = %d s, want 3600", ttl)
	}
}
