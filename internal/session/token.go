package session

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// MaxTokenSize is the largest token, in bytes, that Verify parses and Issue
// writes. A token rides in a request header on every kubectl call; 16 KiB
// leaves room for a few hundred groups and stays under common proxy header
// limits, and refusing larger input before decoding bounds the work an
// unauthenticated client can cause.
const MaxTokenSize = 16 << 10

// Leeway is the clock skew Verify tolerates on "exp", "nbf" and "iat", for
// replicas and clients whose clocks disagree a little.
const Leeway = 60 * time.Second

// Errors returned by Verify. Each error Verify returns matches exactly one
// of them with errors.Is; its message is fit to show the user and never
// contains the token.
var (
	// ErrMalformed: not a compact JWS with a JSON header and claims, too
	// large, or a claim of the wrong type.
	ErrMalformed = errors.New("malformed token")
	// ErrInvalidSignature: the signature does not verify with this server's
	// key, or the token names an algorithm other than the key's own
	// ("none", HS256, RS256 for an EC key, …).
	ErrInvalidSignature = errors.New("token signature is not valid")
	// ErrUnknownKey: the token's "kid" is not this server's key, e.g. a
	// token from before a key change or from another deployment.
	ErrUnknownKey = errors.New("token was signed by a key this server does not have")
	// ErrWrongIssuer: "iss" is not the issuer the Keys was created for.
	ErrWrongIssuer = errors.New("token is from another issuer")
	// ErrWrongAudience: "aud" is not exactly the audience asked for.
	ErrWrongAudience = errors.New("token is for another audience")
	// ErrMissingExpiry: the token has no "exp"; every token must expire.
	ErrMissingExpiry = errors.New("token has no expiry")
	// ErrExpired: "exp" has passed (beyond Leeway).
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: "nbf" or "iat" is in the future (beyond Leeway).
	ErrNotYetValid = errors.New("token is not valid yet")
)

// signInAgain ends messages whose remedy is a fresh token.
const signInAgain = "sign in again"

// strictBase64 refuses non-zero padding bits, so a token has exactly one
// spelling: without it, changing the last character of a segment can give
// a different string that verifies as the same token, which defeats any
// cache or deny list keyed by the token string.
var strictBase64 = base64.RawURLEncoding.Strict()

// Issue signs c as a compact JWS (RFC 7515) with "alg", "kid" and
// "typ": "JWT" headers.
//
// c.Expiry and c.Audience are required. c.Issuer must be empty (Issue
// fills in Keys.Issuer) or equal to it. An empty c.ID gets a random jti and
// a zero c.IssuedAt gets the current time. Issue refuses claims whose
// token would exceed MaxTokenSize, since Verify would refuse it.
func (k *Keys) Issue(c Claims) (string, error) {
	switch {
	case c.Expiry.IsZero():
		return "", errors.New("issuing token: no expiry: every token must carry exp")
	case c.Audience == "":
		return "", errors.New("issuing token: no audience")
	case c.Issuer != "" && c.Issuer != k.issuer:
		return "", fmt.Errorf("issuing token: issuer %q is not this key's issuer %q", c.Issuer, k.issuer)
	}
	c.Issuer = k.issuer
	if c.IssuedAt.IsZero() {
		c.IssuedAt = k.now()
	}
	if c.ID == "" {
		c.ID = rand.Text() // 128 random bits, base32
	}
	if !c.Expiry.After(c.IssuedAt) {
		return "", fmt.Errorf("issuing token: expiry %s is not after issue time %s", formatTime(c.Expiry), formatTime(c.IssuedAt))
	}
	if !c.NotBefore.IsZero() && !c.Expiry.After(c.NotBefore) {
		return "", fmt.Errorf("issuing token: expiry %s is not after not-before time %s", formatTime(c.Expiry), formatTime(c.NotBefore))
	}

	for _, t := range []time.Time{c.IssuedAt, c.NotBefore, c.Expiry} {
		if !t.IsZero() && (t.Unix() < 0 || t.Unix() > maxNumericDate) {
			return "", fmt.Errorf("issuing token: time %s is outside the years 1970 to 9999 Verify accepts", t.UTC())
		}
	}

	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("issuing token: %w", err)
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("issuing token: signing: %w", err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("issuing token: %w", err)
	}
	if len(token) > MaxTokenSize {
		return "", fmt.Errorf("issuing token: token would be %d bytes, more than the %d Verify accepts (%d groups)", len(token), MaxTokenSize, len(c.Groups))
	}
	return token, nil
}

// header is the part of the JOSE header Verify looks at before the
// signature.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// Verify checks token and returns its claims.
//
// The token must be a compact JWS of at most MaxTokenSize bytes, signed by
// this Keys with its own algorithm (Algorithm) and naming its key ID, with
// "iss" equal to Issuer, "aud" equal to audience (a string or a
// one-element array), an "exp" that has not passed and any "nbf" and "iat"
// not in the future, all with Leeway, all judged at now. audience is
// whatever the issuer put in the token for this route (Portcullis uses the
// route's "from" URL); it is compared byte for byte, with no URL
// normalisation, so issuer and verifier must spell it the same way.
//
// Every failure matches one of the Err… values with errors.Is. The checks
// that need no key (size, shape, algorithm, kid) come first, so garbage
// costs no signature verification.
func (k *Keys) Verify(token, audience string, now time.Time) (*Claims, error) {
	if audience == "" {
		// A programming error; fail closed rather than match an empty aud.
		return nil, fmt.Errorf("%w: no audience to check the token against", ErrWrongAudience)
	}
	if token == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, more than the %d allowed", ErrMalformed, len(token), MaxTokenSize)
	}
	if n := strings.Count(token, ".") + 1; n != 3 {
		return nil, fmt.Errorf("%w: %d dot-separated parts, want 3 (header.claims.signature)", ErrMalformed, n)
	}
	h64, rest, _ := strings.Cut(token, ".")
	p64, s64, _ := strings.Cut(rest, ".")

	raw, err := strictBase64.DecodeString(h64)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object of strings", ErrMalformed)
	}

	if h.Alg == "" {
		return nil, fmt.Errorf("%w: header names no algorithm", ErrMalformed)
	}
	// The algorithm allow-list is the key's own algorithm and nothing
	// else. This is what stops "alg": "none" and the RS256/HS256 key
	// confusion (HMAC "signed" with the public key), whatever the JOSE
	// library would otherwise accept (RFC 8725, section 3.1).
	if h.Alg != string(k.alg) {
		return nil, fmt.Errorf("%w: signed with %s, but this server signs with %s only: %s", ErrInvalidSignature, quote(h.Alg), k.alg, signInAgain)
	}
	// We use no header extension, so any "crit" is one we do not
	// understand, and RFC 7515, section 4.1.11 says to reject it.
	if h.Crit != nil {
		return nil, fmt.Errorf("%w: header has critical extensions this server does not support", ErrMalformed)
	}
	// "typ" keeps some other JWS signed by this key (none today) from
	// passing as a token (RFC 8725, section 3.11). It is optional in
	// general, so only a different value is refused.
	if h.Typ != "" && !strings.EqualFold(h.Typ, "JWT") {
		return nil, fmt.Errorf("%w: type %s, want JWT", ErrMalformed, quote(h.Typ))
	}
	if h.Kid != k.kid {
		if h.Kid == "" {
			return nil, fmt.Errorf("%w: the token names no key: %s", ErrUnknownKey, signInAgain)
		}
		return nil, fmt.Errorf("%w (key ID %s; this server's is %s): %s", ErrUnknownKey, quote(h.Kid), k.kid, signInAgain)
	}
	if _, err := strictBase64.DecodeString(p64); err != nil {
		return nil, fmt.Errorf("%w: claims are not base64url", ErrMalformed)
	}
	if _, err := strictBase64.DecodeString(s64); err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url", ErrMalformed)
	}

	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{k.alg})
	if err != nil {
		// The checks above leave little for this to refuse; say nothing
		// of what the library saw, it may quote the input.
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	payload, err := jws.Verify(k.pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidSignature, signInAgain)
	}

	// From here on the content is ours: it was signed with our key.
	var w wireClaims
	if err := json.Unmarshal(payload, &w); err != nil {
		return nil, fmt.Errorf("%w: claims: %s", ErrMalformed, claimsError(err))
	}
	if w.Issuer != k.issuer {
		return nil, fmt.Errorf("%w: issued by %q, want %q: %s", ErrWrongIssuer, w.Issuer, k.issuer, signInAgain)
	}
	switch {
	case len(w.Audience) == 0:
		return nil, fmt.Errorf("%w: the token names no audience, want %q: %s", ErrWrongAudience, audience, signInAgain)
	case len(w.Audience) > 1:
		return nil, fmt.Errorf("%w: the token names %d audiences, want only %q: %s", ErrWrongAudience, len(w.Audience), audience, signInAgain)
	case w.Audience[0] != audience:
		return nil, fmt.Errorf("%w: issued for %q, not %q: %s", ErrWrongAudience, w.Audience[0], audience, signInAgain)
	}
	c, err := w.claims()
	if err != nil { // unreachable: aud was checked above
		return nil, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}

	if err := checkTimes(&c, now); err != nil {
		return nil, err
	}
	return &c, nil
}

// checkTimes is Verify's time check, also applied by VerifyCache to claims
// Verify accepted before, so the two cannot drift apart.
func checkTimes(c *Claims, now time.Time) error {
	// RFC 7519, section 4.1.4: valid only while now is before exp; the
	// leeway extends that.
	if c.Expiry.IsZero() {
		return fmt.Errorf("%w: every token must carry exp: %s", ErrMissingExpiry, signInAgain)
	}
	if !now.Before(c.Expiry.Add(Leeway)) {
		return fmt.Errorf("%w at %s: %s", ErrExpired, formatTime(c.Expiry), signInAgain)
	}
	// Section 4.1.5: valid from nbf on. A token issued in the future is
	// treated the same: both mean clocks disagree by more than Leeway.
	if !c.NotBefore.IsZero() && now.Add(Leeway).Before(c.NotBefore) {
		return fmt.Errorf("%w: not before %s, and it is %s here: check the clocks", ErrNotYetValid, formatTime(c.NotBefore), formatTime(now))
	}
	if !c.IssuedAt.IsZero() && now.Add(Leeway).Before(c.IssuedAt) {
		return fmt.Errorf("%w: issued at %s, and it is %s here: check the clocks", ErrNotYetValid, formatTime(c.IssuedAt), formatTime(now))
	}
	return nil
}

// claimsError describes a JSON error in the claims without quoting them.
func claimsError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%q has the wrong type", te.Field)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "not JSON"
	}
	// numericDate and audience errors carry no token content.
	return err.Error()
}

// quote quotes a header value for an error message: header values are
// unauthenticated, so they are escaped and cut short.
func quote(s string) string {
	const max = 32
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
