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
	// Email is the name Kubernetes sees in Impersonate-User.
	Email string
	// Name is the display name, if the provider gave one.
	Name string
	// Groups are sent as one Impersonate-Group each.
	Groups []string
	// Claims are the identity provider's text claims about the person,
	// for claim/<name> policies; nil when the credential names no session
	// (a token that carries its claims itself).
	Claims map[string][]string
	// SessionID ties the identity to a server-side session ("" if none).
	SessionID string
	// Expiry is when the credential that proved this identity ends.
	Expiry time.Time
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
