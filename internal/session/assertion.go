package session

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// AssertionTTL is the life of an identity assertion: it is made for one
// request, and short enough that one copied from a log is soon worthless.
const AssertionTTL = 5 * time.Minute

// Assertion is what a route with pass_identity_headers tells its upstream
// about the person, as Pomerium does: a JWT in the X-Pomerium-Jwt-Assertion
// header, signed with the key published at
// /.well-known/pomerium/jwks.json on every route host, so that the
// upstream can check it came from Portcullis and was meant for it.
type Assertion struct {
	// Audience is the route's host (its from, as Host): both "aud" and
	// "iss", which is Pomerium's default jwt_issuer_format (hostOnly).
	Audience  string
	Subject   string // sub and user: the user id at the identity provider
	Email     string
	Name      string
	Groups    []string
	SessionID string // sid
}

// wireAssertion is the JSON form of Assertion: Pomerium's claims.
type wireAssertion struct {
	Issuer    string   `json:"iss"`
	Audience  string   `json:"aud"`
	Subject   string   `json:"sub"`
	User      string   `json:"user"`
	Email     string   `json:"email"`
	Groups    []string `json:"groups"`
	Name      string   `json:"name,omitempty"`
	SessionID string   `json:"sid,omitempty"`
	ID        string   `json:"jti"`
	IssuedAt  int64    `json:"iat"`
	Expiry    int64    `json:"exp"`
}

// IssueAssertion signs a for its route's upstream. It can never pass for a
// Portcullis token: its issuer is the route's host, and Verify takes only
// tokens issued by the sign-in service (Keys.Issuer, a URL).
func (k *Keys) IssueAssertion(a Assertion) (string, error) {
	if a.Audience == "" {
		return "", errors.New("issuing identity assertion: no audience")
	}
	if a.Audience == k.issuer {
		return "", errors.New("issuing identity assertion: its audience is the token issuer")
	}
	now := k.now()
	groups := a.Groups
	if groups == nil {
		groups = []string{}
	}
	payload, err := json.Marshal(wireAssertion{
		Issuer: a.Audience, Audience: a.Audience, Subject: a.Subject, User: a.Subject,
		Email: a.Email, Groups: groups, Name: a.Name, SessionID: a.SessionID,
		ID: rand.Text(), IssuedAt: now.Unix(), Expiry: now.Add(AssertionTTL).Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("issuing identity assertion: %w", err)
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("issuing identity assertion: signing: %w", err)
	}
	return jws.CompactSerialize()
}
