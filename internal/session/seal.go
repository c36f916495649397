package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A Sealer encrypts and authenticates small values that travel through the
// browser: the session cookie, the CSRF cookie and the OAuth `state`. It is
// AES-256-GCM keyed with COOKIE_SECRET; the purpose of each value (e.g. the
// cookie's name) is bound in as associated data, so a value sealed for one
// purpose does not open for another, and an expiry inside the sealed bytes
// bounds how long a copied value is good for.
//
// The format is base64url(nonce ‖ ciphertext), where the plaintext is an
// 8-byte big-endian Unix expiry followed by the value.
type Sealer struct {
	aead cipher.AEAD
}

// Errors from Open. Neither says more: a client learns nothing from which
// check failed.
var (
	ErrSealedInvalid = errors.New("sealed value is not valid")
	ErrSealedExpired = errors.New("sealed value has expired")
)

// maxSealed bounds what Open accepts before decoding (4 KiB is a browser's
// cookie limit).
const maxSealed = 4096

// NewSealer returns a Sealer for a 32-byte key (COOKIE_SECRET).
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("creating cookie sealer: key is %d bytes, want 32 (COOKIE_SECRET)", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal returns value sealed for purpose, valid until expiry.
func (s *Sealer) Seal(purpose string, value []byte, expiry time.Time) string {
	plain := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(plain, uint64(expiry.Unix()))
	copy(plain[8:], value)
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	rand.Read(nonce) // crypto/rand does not fail on supported platforms
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(purpose)))
}

// Open returns the value sealed for purpose, if it is authentic and has not
// expired at now.
func (s *Sealer) Open(purpose, sealed string, now time.Time) ([]byte, error) {
	if len(sealed) > maxSealed {
		return nil, ErrSealedInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead()+8 {
		return nil, ErrSealedInvalid
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(purpose))
	if err != nil {
		return nil, ErrSealedInvalid
	}
	if exp := int64(binary.BigEndian.Uint64(plain)); now.Unix() > exp {
		return nil, ErrSealedExpired
	}
	return plain[8:], nil
}
