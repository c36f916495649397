package session

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// MinSharedSecretSize is the shortest SHARED_SECRET NewKeys accepts when it
// derives the signing key from it: 32 bytes, the output size of SHA-256,
// so the secret is not the weak link of an HKDF-SHA256 derivation.
const MinSharedSecretSize = 32

// minRSABits is the smallest RSA modulus NewKeys accepts (NIST SP 800-131A).
const minRSABits = 2048

// derivationInfo is the HKDF "info" for the signing key derived from the
// shared secret. It is part of the wire contract between replicas (and
// between versions during a rolling upgrade): changing it changes every
// derived key, so it carries a version.
const derivationInfo = "portcullis token signing key v1"

// Keys signs and verifies Portcullis tokens. It holds one private key, the
// issuer its tokens name, and what is derived from them (the signer, the
// key ID, the JWKS document). A Keys is immutable and safe for concurrent
// use.
type Keys struct {
	issuer string
	alg    jose.SignatureAlgorithm
	kid    string
	pub    crypto.PublicKey
	signer jose.Signer

	// jwks and jwksETag are computed once: the document only changes with
	// the key, and the key only changes with a restart.
	jwks     []byte
	jwksETag string

	// now is the clock Issue uses to fill iat; tests replace it.
	now func() time.Time
}

// NewKeys returns the keys that sign and verify tokens for issuer.
//
// signingKeyPEM is SIGNING_KEY, already decoded from base64: a PEM private
// key, either "EC PRIVATE KEY" (SEC 1), "RSA PRIVATE KEY" (PKCS #1) or
// "PRIVATE KEY" (PKCS #8). A P-256 key signs with ES256 and an RSA key of at
// least 2048 bits with RS256; other curves and key types are refused.
// Blocks that are not private keys (such as the "EC PARAMETERS" block
// openssl ecparam writes) are skipped.
//
// When signingKeyPEM is empty, the key is derived from sharedSecret
// (SHARED_SECRET, at least MinSharedSecretSize bytes): every replica with
// the same secret signs with the same P-256 key, so any replica verifies
// what any other issued. sharedSecret is not used when a signing key is
// given.
//
// issuer is the value of the "iss" claim: Issue writes it, Verify requires
// it. Portcullis passes the authenticate service URL; whatever the caller
// chooses, Verify compares it byte for byte.
func NewKeys(signingKeyPEM, sharedSecret []byte, issuer string) (*Keys, error) {
	if issuer == "" {
		return nil, errors.New("creating token keys: no issuer: want the authenticate service URL")
	}
	var (
		priv crypto.Signer
		err  error
	)
	if len(bytes.TrimSpace(signingKeyPEM)) != 0 {
		priv, err = parseSigningKey(signingKeyPEM)
	} else {
		priv, err = deriveSigningKey(sharedSecret)
	}
	if err != nil {
		return nil, err
	}
	return newKeys(priv, issuer)
}

// newKeys builds Keys around a private key that parseSigningKey or
// deriveSigningKey has already checked.
func newKeys(priv crypto.Signer, issuer string) (*Keys, error) {
	alg := jose.ES256
	if _, ok := priv.(*rsa.PrivateKey); ok {
		alg = jose.RS256
	}
	pub := priv.Public()

	// kid is the RFC 7638 thumbprint: the same key gives the same kid on
	// every replica, with nothing to configure or coordinate.
	thumb, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("creating token keys: computing key ID: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(thumb)

	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("creating token keys: %w", err)
	}

	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key:       pub,
		KeyID:     kid,
		Algorithm: string(alg),
		Use:       "sig",
	}}})
	if err != nil {
		return nil, fmt.Errorf("creating token keys: encoding JWKS: %w", err)
	}

	return &Keys{
		issuer:   issuer,
		alg:      alg,
		kid:      kid,
		pub:      pub,
		signer:   signer,
		jwks:     jwks,
		jwksETag: etag(jwks),
		now:      time.Now,
	}, nil
}

// Issuer returns the "iss" value Issue writes and Verify requires. Tests
// and e2e use it to make tokens of their own.
//
//deadcode:testonly tests and e2e make tokens with the issuer Verify requires
func (k *Keys) Issuer() string { return k.issuer }

// KeyID returns the "kid" header of issued tokens: the RFC 7638 SHA-256
// thumbprint of the public key, base64url without padding. Tests and e2e
// use it to forge tokens that name the real key.
//
//deadcode:testonly tests and e2e forge tokens that name the real key
func (k *Keys) KeyID() string { return k.kid }

// Algorithm returns the JWS algorithm of issued tokens, "ES256" or "RS256".
// Verify accepts this algorithm and no other. Tests use it.
//
//deadcode:testonly tests check issued tokens and the JWKS against it
func (k *Keys) Algorithm() string { return string(k.alg) }

// JWKS returns the JSON Web Key Set (RFC 7517, section 5) holding the
// public key, with "use", "alg" and "kid" set. Tests and e2e use it to
// verify what was issued as a client would.
//
//deadcode:testonly tests and e2e verify issued tokens with the published keys
func (k *Keys) JWKS() []byte { return bytes.Clone(k.jwks) }

// parseSigningKey reads the first private key in a PEM document and checks
// that it is one NewKeys signs with.
func parseSigningKey(data []byte) (crypto.Signer, error) {
	const hint = `want a PEM EC P-256 or RSA private key, such as from "openssl ecparam -genkey -name prime256v1 -noout"`
	var (
		block  *pem.Block
		others []string
		rest   = data
	)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "EC PRIVATE KEY", "RSA PRIVATE KEY", "PRIVATE KEY":
			if block != nil {
				// Two keys: signing with the first would be a guess.
				return nil, errors.New("signing key: PEM holds more than one private key: want exactly one")
			}
			block = b
		default:
			others = append(others, b.Type)
		}
	}
	if block == nil {
		switch {
		case bytes.HasPrefix(bytes.TrimSpace(data), []byte("LS0tLS1CRUdJTi")):
			// base64 of "-----BEGIN": the caller forgot to decode.
			return nil, errors.New("signing key: looks like base64 of PEM, not PEM: decode it first")
		case slices.Contains(others, "ENCRYPTED PRIVATE KEY"):
			return nil, errors.New("signing key: encrypted PEM keys are not supported: want an unencrypted key")
		case len(others) != 0:
			return nil, fmt.Errorf("signing key: PEM holds %q but no private key: %s", others, hint)
		default:
			return nil, errors.New("signing key: not PEM: " + hint)
		}
	}
	// RFC 1421 encryption headers (openssl -des3 and friends).
	if _, encrypted := block.Headers["Proc-Type"]; encrypted {
		return nil, errors.New("signing key: encrypted PEM keys are not supported: want an unencrypted key")
	}

	var (
		key any
		err error
	)
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key: parsing %s: %w", block.Type, err)
	}

	switch key := key.(type) {
	case *ecdsa.PrivateKey:
		if key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("signing key: EC key on curve %s is not supported: want P-256 (ES256)", key.Curve.Params().Name)
		}
		return key, nil
	case *rsa.PrivateKey:
		if bits := key.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("signing key: RSA key of %d bits is too short: want at least %d", bits, minRSABits)
		}
		return key, nil
	default:
		return nil, fmt.Errorf("signing key: %T keys are not supported: %s", key, hint)
	}
}

// deriveSigningKey derives the P-256 signing key from the shared secret.
//
// The derivation is a contract between replicas and between versions, so it
// is spelled out: the output of HKDF-SHA256 (RFC 5869) with the secret as
// input keying material, no salt, and info derivationInfo is read as a
// sequence of 32-byte big-endian candidates; the first candidate in
// [1, n-1], n the order of P-256, is the private scalar. This is the
// rejection sampling of FIPS 186-5, appendix A.2.2, so the key is uniform;
// a candidate is rejected with probability below 2^-32, and eight in a row
// (2^-256) would mean a broken hash.
func deriveSigningKey(secret []byte) (*ecdsa.PrivateKey, error) {
	if len(secret) == 0 {
		return nil, errors.New("no signing key and no shared secret: set SHARED_SECRET (base64 of at least 32 random bytes, e.g. from \"head -c32 /dev/urandom | base64\") or SIGNING_KEY")
	}
	if len(secret) < MinSharedSecretSize {
		return nil, fmt.Errorf("shared secret is %d bytes, too short to derive a signing key from: want at least %d random bytes", len(secret), MinSharedSecretSize)
	}
	const size, tries = 32, 8
	stream, err := hkdf.Key(sha256.New, secret, nil, derivationInfo, size*tries)
	if err != nil {
		return nil, fmt.Errorf("deriving signing key: %w", err)
	}
	for i := range tries {
		key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), stream[i*size:(i+1)*size])
		if err == nil {
			return key, nil
		}
	}
	return nil, errors.New("deriving signing key: no valid P-256 scalar in the HKDF output")
}
