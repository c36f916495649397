// Package identity holds the signed-in person a request is made for, as
// authentication established it. It is set once per request, never changed,
// and read by authorization, the upstream rewrite and the audit log.
//
// It must not hold secrets (tokens, cookies) nor know where the identity
// came from beyond the session id.
package identity

import (
	"context"
	"time"
)

// Identity is a verified person. Values are immutable once put in a
// context: share, never modify.
type Identity struct {
	// User is the stable subject at the identity provider.
	User string
	// Email is the email address the identity provider verified: the
	// name Kubernetes sees in Impersonate-User unless the route maps the
	// person otherwise (see Kubernetes).
	Email string
	// Name is the display name, if the provider gave one.
	Name string
	// Groups are the provider's groups, as policies see them; Kubernetes
	// sees them as one Impersonate-Group each, unless the route maps the
	// person otherwise (see Kubernetes).
	Groups []string
	// Claims are the identity provider's text claims about the person,
	// for claim/<name> policies; nil when the credential names no session
	// (a token that carries its claims itself).
	Claims map[string][]string
	// SessionID ties the identity to a server-side session ("" if none).
	SessionID string
	// Expiry is when the credential that proved this identity ends.
	Expiry time.Time

	// kube is who Kubernetes sees, once a route's KubernetesMapping gave
	// it (WithKubernetes); nil for the email and groups as they are.
	kube *kubernetesName
}

// Claim returns the values of the person's claim name as a policy's
// claim/<name> reads them (policy.Claims): email, sub, name and groups
// are the identity's own, as authentication established them, whatever
// the provider's claims of those names said (a refresh may have changed
// them since sign-in, and a token without a session carries only these);
// any other is the provider's text claim. Every identity has the first
// four, even empty.
func (id *Identity) Claim(name string) ([]string, bool) {
	if id == nil {
		return nil, false
	}
	switch name {
	case "email":
		return []string{id.Email}, true
	case "sub":
		return []string{id.User}, true
	case "name":
		return []string{id.Name}, true
	case "groups":
		return id.Groups, true
	}
	v, ok := id.Claims[name]
	return v, ok
}

// kubernetesName is a user name and groups for Kubernetes.
type kubernetesName struct {
	user   string
	groups []string
}

// WithKubernetes returns a copy of id whose Kubernetes user and groups
// (Kubernetes) are user and groups, as a route's KubernetesMapping gave
// them; id itself is not changed.
func (id *Identity) WithKubernetes(user string, groups []string) *Identity {
	c := *id
	c.kube = &kubernetesName{user: user, groups: groups}
	return &c
}

// Kubernetes returns the user and groups to impersonate for id: those
// WithKubernetes set, else the email and the provider's groups (the
// default mapping's).
func (id *Identity) Kubernetes() (user string, groups []string) {
	if id.kube != nil {
		return id.kube.user, id.kube.groups
	}
	return id.Email, id.Groups
}

type contextKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// FromContext returns the identity in ctx, or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(contextKey{}).(*Identity)
	return id
}

// EmailKey is how Portcullis compares email addresses (sessions, the built-in
// provider's users): with their ASCII letters
// lower-cased. Domains compare case-insensitively, and local parts, which
// RFC 5321 section 2.4 lets a mail server treat as case-sensitive, do in
// practice: an administrator who types Alice@Example.com must find
// alice@example.com. A Unicode case fold is not used: it could merge two
// people's addresses (the Kelvin sign, U+212A, lower-cases to k), and
// ending the wrong person's sessions is worse than missing one.
func EmailKey(email string) string {
	b := []byte(email)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
