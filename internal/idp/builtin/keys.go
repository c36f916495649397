package builtin

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// signingKey signs ID tokens. It implements op.SigningKey; its public half
// (publicKey) is what the JWKS endpoint serves.
type signingKey struct {
	id     string // RFC 7638 thumbprint of the public key
	alg    jose.SignatureAlgorithm
	signer any // a key type go-jose knows, or a jose.OpaqueSigner
	public crypto.PublicKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.signer }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is the verification half of a signingKey (op.Key).
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return p.k.public }

// newSigningKey wraps s, or a new RSA 2048 key when s is nil. The algorithm
// follows the key: RS256 for RSA (at least 2048 bits, RFC 7518 section
// 3.3), ES256/384/512 for ECDSA P-256/384/521, EdDSA for Ed25519.
func newSigningKey(s crypto.Signer) (*signingKey, error) {
	if s == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("generating a signing key: %w", err)
		}
		s = k
	}
	k := &signingKey{public: s.Public()}
	switch pub := k.public.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("signing key: RSA key of %d bits is too short: want at least 2048", pub.N.BitLen())
		}
		k.alg = jose.RS256
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			k.alg = jose.ES256
		case elliptic.P384():
			k.alg = jose.ES384
		case elliptic.P521():
			k.alg = jose.ES512
		default:
			return nil, errors.New("signing key: ECDSA key on an unsupported curve: want P-256, P-384 or P-521")
		}
	case ed25519.PublicKey:
		k.alg = jose.EdDSA
	default:
		return nil, fmt.Errorf("signing key: unsupported key type %T: want RSA, ECDSA or Ed25519", k.public)
	}
	switch s := s.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		k.signer = s
	default:
		// A key held elsewhere (an HSM, a KMS): go-jose signs through
		// crypto.Signer.
		k.signer = cryptosigner.Opaque(s)
	}
	thumb, err := (&jose.JSONWebKey{Key: k.public}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	k.id = base64.RawURLEncoding.EncodeToString(thumb)

	// Sign once now, so that a key that cannot sign fails at start rather
	// than at the first sign-in.
	signer, err := op.SignerFromKey(k)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if _, err := signer.Sign([]byte("portcullis")); err != nil {
		return nil, fmt.Errorf("signing key: signing a test payload: %w", err)
	}
	return k, nil
}
