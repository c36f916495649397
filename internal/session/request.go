package session

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Header names that carry a token, in canonical form.
const (
	headerAuthorization         = "Authorization"
	headerPomeriumAuthorization = "X-Pomerium-Authorization"
)

// ErrAmbiguousToken is returned by TokenFromRequest when a request carries
// more than one credential and they do not agree.
var ErrAmbiguousToken = errors.New("ambiguous credentials")

// TokenFromRequest finds the Portcullis token in request headers. It
// accepts exactly these forms:
//
//	Authorization: Bearer Pomerium-<jwt>     (what kubectl sends for an exec credential)
//	Authorization: Pomerium <jwt>
//	X-Pomerium-Authorization: <jwt>
//	X-Pomerium-Authorization: Bearer Pomerium-<jwt>
//	X-Pomerium-Authorization: Pomerium <jwt>
//
// The scheme ("Bearer", "Pomerium") is case-insensitive (RFC 9110, section
// 11.1) and may be followed by several spaces; the "Pomerium-" prefix is
// exact. X-Pomerium-Authorization is ours alone, so it also takes the
// Authorization forms, as people paste a whole Authorization value into
// it; no JWT can begin with "Bearer " or "Pomerium ", so this is not
// ambiguous. An empty X-Pomerium-Authorization counts as absent.
//
// The results are:
//
//   - token, true, nil: one token, found in one or both headers (both must
//     hold the same token).
//   - "", false, nil: no token of ours. An Authorization header with any
//     other scheme, including a plain "Bearer <token>", is not ours: the
//     caller may try the session cookie.
//   - "", false, err: the request must be refused. err matches
//     ErrAmbiguousToken when there is more than one Authorization or
//     X-Pomerium-Authorization header, or the two headers hold different
//     tokens; it matches ErrMalformed when a header is in one of our forms
//     but the token is empty, too large or has characters no JWT has.
//
// A returned token has only base64url characters and dots and is at most
// MaxTokenSize bytes; Verify does the rest. Errors never contain a token.
func TokenFromRequest(h http.Header) (token string, ok bool, err error) {
	// Several values of one header are refused rather than one picked:
	// whichever we picked, the next hop might pick another (RFC 9110,
	// section 5.3 forbids repeating a singleton header like Authorization).
	auth := h.Values(headerAuthorization)
	if len(auth) > 1 {
		return "", false, fmt.Errorf("%w: %d Authorization headers, want at most one", ErrAmbiguousToken, len(auth))
	}
	xpa := h.Values(headerPomeriumAuthorization)
	if len(xpa) > 1 {
		return "", false, fmt.Errorf("%w: %d X-Pomerium-Authorization headers, want at most one", ErrAmbiguousToken, len(xpa))
	}

	var fromAuth, fromXPA string
	var inAuth, inXPA bool
	if len(auth) == 1 {
		fromAuth, inAuth, err = fromAuthorization(headerAuthorization, auth[0])
		if err != nil {
			return "", false, err
		}
	}
	if len(xpa) == 1 {
		if v := trimOWS(xpa[0]); v != "" {
			fromXPA, inXPA, err = fromAuthorization(headerPomeriumAuthorization, v)
			if err != nil {
				return "", false, err
			}
			if !inXPA {
				// The bare form: the whole value is the token.
				if err := checkToken(headerPomeriumAuthorization, v); err != nil {
					return "", false, err
				}
				fromXPA, inXPA = v, true
			}
		}
	}

	switch {
	case inAuth && inXPA && fromAuth != fromXPA:
		return "", false, fmt.Errorf("%w: Authorization and X-Pomerium-Authorization hold different tokens", ErrAmbiguousToken)
	case inAuth:
		return fromAuth, true, nil
	case inXPA:
		return fromXPA, true, nil
	}
	return "", false, nil
}

// fromAuthorization reads "Bearer Pomerium-<jwt>" or "Pomerium <jwt>".
// ours is false, with no error, for any other value.
func fromAuthorization(name, v string) (token string, ours bool, err error) {
	v = trimOWS(v)
	scheme, rest, _ := strings.Cut(v, " ")
	rest = strings.TrimLeft(rest, " ")
	switch {
	case strings.EqualFold(scheme, "Pomerium"):
		token = rest
	case strings.EqualFold(scheme, "Bearer") && strings.HasPrefix(rest, "Pomerium-"):
		token = rest[len("Pomerium-"):]
	default:
		return "", false, nil
	}
	if err := checkToken(name, token); err != nil {
		return "", false, err
	}
	return token, true, nil
}

// checkToken refuses what cannot be a compact JWS, so nothing odd travels
// further than the header parser.
func checkToken(name, t string) error {
	if t == "" {
		return fmt.Errorf("%w: %s header has the Pomerium form but no token", ErrMalformed, name)
	}
	if len(t) > MaxTokenSize {
		return fmt.Errorf("%w: %s header holds %d bytes, more than the %d allowed", ErrMalformed, name, len(t), MaxTokenSize)
	}
	for i := 0; i < len(t); i++ {
		if !isJWTChar(t[i]) {
			return fmt.Errorf("%w: %s header holds characters no token has", ErrMalformed, name)
		}
	}
	return nil
}

// isJWTChar reports whether c may appear in a compact JWS: the base64url
// alphabet (RFC 4648, section 5) and the dot.
func isJWTChar(c byte) bool { return jwtChars[c] }

// jwtChars is isJWTChar as a table: the check runs over every byte of
// every token on every request.
var jwtChars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") {
		t[c] = true
	}
	return t
}()

// trimOWS trims the optional white space around a field value (RFC 9110,
// section 5.6.3); net/http does it already, http.Header built by hand may
// not have.
func trimOWS(s string) string {
	return strings.Trim(s, " \t")
}
