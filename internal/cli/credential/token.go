package credential

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxToken bounds a token. Portcullis tokens are well under 4 KiB even
// with many groups; a larger one is not from Portcullis.
const maxToken = 64 << 10

// Token is a Portcullis JWT and what its payload says, read without
// verifying the signature (see the package documentation).
type Token struct {
	// Raw is the compact JWT as the server issued it.
	Raw string
	// Expiry is the exp claim; ParseToken refuses a token without one.
	Expiry time.Time
	// Email is the email claim, if any, to tell the person who they are.
	Email string
	// Issuer is the iss claim: the Portcullis sign-in service that issued
	// it, which one session's tokens for every route share.
	Issuer string
}

// ErrMalformedToken is returned for anything that is not a compact JWT
// with a JSON payload carrying a numeric exp.
var ErrMalformedToken = errors.New("malformed token")

// ParseToken decodes raw's payload. It checks the form (three base64url
// parts, a JSON object, a numeric exp) but not the signature.
func ParseToken(raw string) (Token, error) {
	if raw == "" || len(raw) > maxToken {
		return Token{}, fmt.Errorf("%w: empty or longer than %d bytes", ErrMalformedToken, maxToken)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return Token{}, fmt.Errorf("%w: want three dot-separated parts, got %d", ErrMalformedToken, len(parts))
	}
	// RFC 7515 §2: base64url without padding. Padding is tolerated, as
	// some encoders add it, but nothing else.
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return Token{}, fmt.Errorf("%w: payload is not base64url: %v", ErrMalformedToken, err)
	}
	var claims struct {
		Expiry json.RawMessage `json:"exp"`
		Email  string          `json:"email"`
		Issuer string          `json:"iss"`
	}
	if !bytes.HasPrefix(bytes.TrimSpace(payload), []byte("{")) {
		return Token{}, fmt.Errorf("%w: payload is not a JSON object", ErrMalformedToken)
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return Token{}, fmt.Errorf("%w: payload is not a JSON object: %v", ErrMalformedToken, err)
	}
	if len(claims.Expiry) == 0 || string(claims.Expiry) == "null" {
		return Token{}, fmt.Errorf("%w: no exp claim", ErrMalformedToken)
	}
	// exp is a NumericDate (RFC 7519 §2): a JSON number of seconds,
	// possibly fractional; not a string, as the server also insists.
	secs, err := strconv.ParseFloat(string(claims.Expiry), 64)
	if err != nil || claims.Expiry[0] == '"' || math.IsNaN(secs) || secs <= 0 || secs > 1<<40 {
		return Token{}, fmt.Errorf("%w: exp %.40q is not a time", ErrMalformedToken, claims.Expiry)
	}
	whole, frac := math.Modf(secs)
	return Token{
		Raw:    raw,
		Expiry: time.Unix(int64(whole), int64(frac*1e9)).UTC(),
		Email:  claims.Email,
		Issuer: claims.Issuer,
	}, nil
}

// ValidFor reports whether the token is still good for at least d at now.
func (t Token) ValidFor(now time.Time, d time.Duration) bool {
	return !t.Expiry.IsZero() && now.Add(d).Before(t.Expiry)
}
