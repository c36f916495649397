package session

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"time"
)

// Session is a person's sign-in, kept on the server. The browser holds only
// its ID in a sealed cookie; tokens carry it as "sid", so revoking the
// session here stops every token issued for it.
type Session struct {
	ID      string
	Subject string
	Email   string
	Name    string
	Groups  []string
	// Claims are the provider's text claims about the person, for
	// claim/<name> policies (idp.Identity.Claims, bounded there).
	Claims    map[string][]string
	CreatedAt time.Time
	ExpiresAt time.Time // COOKIE_EXPIRE after sign-in

	// The identity provider's tokens, used to refresh the identity before
	// the provider's own expiry and to sign out there. Never sent to a
	// browser or an upstream.
	IDPRefreshToken string
	IDPIDToken      string
	IDPExpiry       time.Time
}

// Live reports whether the session may still be used at now.
func (s *Session) Live(now time.Time) bool { return now.Before(s.ExpiresAt) }

// ErrNoSession is returned by Store.Get for an unknown, expired or revoked
// session.
var ErrNoSession = errors.New("no such session: it expired or was signed out")

// A Store keeps sessions. Replicas that share one (PostgreSQL) share
// sign-ins; the memory store serves one replica.
type Store interface {
	Put(ctx context.Context, s *Session) error
	Get(ctx context.Context, id string) (*Session, error)
	Delete(ctx context.Context, id string) error
}

// NewSessionID returns a random session identifier (130 bits).
func NewSessionID() string { return rand.Text() }

// MemoryStore is a Store in this process's memory. Expired sessions are
// dropped as Put meets them, so the map cannot grow without bound beyond
// the live sessions.
type MemoryStore struct {
	mu       sync.Mutex
	sessions map[string]*Session
	now      func() time.Time
	puts     int
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{sessions: make(map[string]*Session), now: time.Now}
}

// Put stores a copy of s.
func (m *MemoryStore) Put(_ context.Context, s *Session) error {
	c := *s
	c.Groups = append([]string(nil), s.Groups...)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[s.ID] = &c
	// Every so often, sweep: the cost is spread over sign-ins.
	if m.puts++; m.puts%64 == 0 {
		now := m.now()
		for id, s := range m.sessions {
			if !s.Live(now) {
				delete(m.sessions, id)
			}
		}
	}
	return nil
}

// Get returns a copy of the live session id.
func (m *MemoryStore) Get(_ context.Context, id string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok || !s.Live(m.now()) {
		return nil, ErrNoSession
	}
	c := *s
	c.Groups = append([]string(nil), s.Groups...)
	return &c, nil
}

// Delete revokes a session.
func (m *MemoryStore) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, id)
	return nil
}
