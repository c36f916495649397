package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Claims are the claims of a Portcullis token (RFC 7519, section 4, plus
// the OpenID Connect "email", "name" and "groups" and the session's "sid").
//
// Times are whole seconds on the wire (NumericDate); Verify returns them in
// UTC. A zero time means the claim is absent. Claims marshals to and from
// the token's JSON, so the "who am I" page can show exactly what a token
// carries.
type Claims struct {
	Issuer    string   // iss
	Subject   string   // sub: the user ID at the identity provider
	Email     string   // email
	Name      string   // name
	Groups    []string // groups
	SessionID string   // sid: the session this token belongs to
	ID        string   // jti: unique per token
	Audience  string   // aud: who the token is for, one value
	IssuedAt  time.Time
	NotBefore time.Time
	Expiry    time.Time // exp: always set on tokens Issue writes

	// The person as Kubernetes sees them on the token's route, for a
	// kube-apiserver that validates Portcullis tokens itself (direct
	// mode): its authentication configuration takes the user name and
	// groups from these claims, so that RBAC sees the same names through
	// Portcullis and directly. Set on tokens for Kubernetes routes only.
	KubernetesUser string // kubernetes_user: the route's identity mapping of the person
	// KubernetesGroups (kubernetes_groups) are the mapped groups when the
	// route's mapping changes them (a prefix or a filter): nil leaves the
	// claim out, meaning "the same as groups", and a non-nil empty list
	// is written as [] (a filter that keeps none), so that the two never
	// read alike.
	KubernetesGroups []string
	// KubernetesSession (kubernetes_session) is the session's id sealed
	// for Portcullis's authorization webhook: kube-apiserver passes it on
	// in the review's user extra, and only Portcullis can open it, so the
	// cluster's audit log, which records extras, never holds a session id.
	KubernetesSession string
}

// wireClaims is the JSON form of Claims. aud is kept as a list so Verify
// can tell a multi-audience token (refused) from a malformed one.
type wireClaims struct {
	Issuer    string       `json:"iss,omitempty"`
	Subject   string       `json:"sub,omitempty"`
	Email     string       `json:"email,omitempty"`
	Name      string       `json:"name,omitempty"`
	Groups    []string     `json:"groups,omitempty"`
	SessionID string       `json:"sid,omitempty"`
	ID        string       `json:"jti,omitempty"`
	Audience  audience     `json:"aud,omitempty"`
	IssuedAt  *numericDate `json:"iat,omitempty"`
	NotBefore *numericDate `json:"nbf,omitempty"`
	Expiry    *numericDate `json:"exp,omitempty"`

	KubernetesUser    string    `json:"kubernetes_user,omitempty"`
	KubernetesGroups  *[]string `json:"kubernetes_groups,omitempty"`
	KubernetesSession string    `json:"kubernetes_session,omitempty"`
}

// MarshalJSON writes the claims under their JWT names; absent claims and
// zero times are left out, and aud is a string.
func (c Claims) MarshalJSON() ([]byte, error) {
	w := wireClaims{
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Email:     c.Email,
		Name:      c.Name,
		Groups:    c.Groups,
		SessionID: c.SessionID,
		ID:        c.ID,
		IssuedAt:  newNumericDate(c.IssuedAt),
		NotBefore: newNumericDate(c.NotBefore),
		Expiry:    newNumericDate(c.Expiry),

		KubernetesUser:    c.KubernetesUser,
		KubernetesSession: c.KubernetesSession,
	}
	if c.KubernetesGroups != nil {
		w.KubernetesGroups = &c.KubernetesGroups
	}
	if c.Audience != "" {
		w.Audience = audience{c.Audience}
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads claims written by MarshalJSON, and also an "aud" that
// is a one-element array (RFC 7519, section 4.1.3 allows both). An "aud"
// with several values is an error: Claims holds one audience.
func (c *Claims) UnmarshalJSON(data []byte) error {
	var w wireClaims
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	cl, err := w.claims()
	if err != nil {
		return err
	}
	*c = cl
	return nil
}

// claims converts the wire form; only a multi-valued aud can fail.
func (w *wireClaims) claims() (Claims, error) {
	c := Claims{
		Issuer:    w.Issuer,
		Subject:   w.Subject,
		Email:     w.Email,
		Name:      w.Name,
		Groups:    w.Groups,
		SessionID: w.SessionID,
		ID:        w.ID,
		IssuedAt:  w.IssuedAt.time(),
		NotBefore: w.NotBefore.time(),
		Expiry:    w.Expiry.time(),

		KubernetesUser:    w.KubernetesUser,
		KubernetesSession: w.KubernetesSession,
	}
	if w.KubernetesGroups != nil {
		// Non-nil even when empty: present and empty is not absent.
		c.KubernetesGroups = append([]string{}, *w.KubernetesGroups...)
	}
	switch len(w.Audience) {
	case 0:
	case 1:
		c.Audience = w.Audience[0]
	default:
		return Claims{}, fmt.Errorf("aud has %d values, want one", len(w.Audience))
	}
	return c, nil
}

// audience is "aud": a string or an array of strings on the wire; written
// as a string when it has one value.
type audience []string

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *audience) UnmarshalJSON(data []byte) error {
	if bytes.HasPrefix(data, []byte(`"`)) {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(data, &list); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = list
	return nil
}

// maxNumericDate is 9999-12-31T23:59:59Z: later dates are not ones anyone
// issues, and refusing them keeps every conversion below exact.
const maxNumericDate = 253402300799

// numericDate is a JWT NumericDate (RFC 7519, section 2): seconds since the
// epoch, possibly fractional. It is written as whole seconds.
type numericDate struct{ t time.Time }

func newNumericDate(t time.Time) *numericDate {
	if t.IsZero() {
		return nil
	}
	return &numericDate{t}
}

func (d *numericDate) time() time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.t
}

func (d numericDate) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, d.t.Unix(), 10), nil
}

func (d *numericDate) UnmarshalJSON(data []byte) error {
	s := string(data)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > maxNumericDate {
			return fmt.Errorf("time %d is out of range", n)
		}
		d.t = time.Unix(n, 0).UTC()
		return nil
	}
	// A JSON number with a fraction or an exponent. ParseFloat also takes
	// "NaN", "Inf" and hex, which JSON numbers never are; the decoder has
	// already refused those, but the range check would catch them anyway.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return fmt.Errorf("time %.40s is not a number of seconds in range", s)
	}
	sec, frac := math.Modf(f)
	d.t = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return nil
}
