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
// the live sessions, and each person (subject) has at most MaxPerPerson of
// those.
type MemoryStore struct {
	// MaxPerPerson caps one subject's sessions: Put of a new session past
	// it ends that subject's oldest ones. A person who signs in again and
	// again (a script, a stolen password) cannot grow the store, and still
	// gets in; what they lose is their oldest sign-in. Zero or less means
	// DefaultMaxPerPerson.
	MaxPerPerson int

	mu        sync.Mutex
	sessions  map[string]*Session
	bySubject map[string]map[string]struct{} // subject → its session IDs
	now       func() time.Time
	puts      int
}

// DefaultMaxPerPerson is MemoryStore's cap on one person's sessions when
// its MaxPerPerson is not set.
const DefaultMaxPerPerson = 50

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{sessions: make(map[string]*Session), bySubject: make(map[string]map[string]struct{}), now: time.Now}
}

// Put stores a copy of s. A new session past its subject's cap ends that
// subject's oldest sessions; putting an existing session again (a
// refresh) replaces it and ends nothing.
func (m *MemoryStore) Put(_ context.Context, s *Session) error {
	c := *s
	c.Groups = append([]string(nil), s.Groups...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.sessions[s.ID]; ok && old.Subject != s.Subject {
		m.unindexLocked(old)
	}
	m.sessions[s.ID] = &c
	ids := m.bySubject[s.Subject]
	if ids == nil {
		ids = make(map[string]struct{})
		m.bySubject[s.Subject] = ids
	}
	ids[s.ID] = struct{}{}
	m.capLocked(s.Subject, s.ID)
	// Every so often, sweep: the cost is spread over sign-ins.
	if m.puts++; m.puts%64 == 0 {
		now := m.now()
		for _, s := range m.sessions {
			if !s.Live(now) {
				m.deleteLocked(s)
			}
		}
	}
	return nil
}

// capLocked ends subject's oldest sessions past the cap, never keep (the
// one just put).
func (m *MemoryStore) capLocked(subject, keep string) {
	limit := m.MaxPerPerson
	if limit <= 0 {
		limit = DefaultMaxPerPerson
	}
	ids := m.bySubject[subject]
	for len(ids) > limit {
		var oldest *Session
		for id := range ids {
			if s := m.sessions[id]; id != keep && (oldest == nil || s.CreatedAt.Before(oldest.CreatedAt)) {
				oldest = s
			}
		}
		m.deleteLocked(oldest)
	}
}

func (m *MemoryStore) deleteLocked(s *Session) {
	delete(m.sessions, s.ID)
	m.unindexLocked(s)
}

func (m *MemoryStore) unindexLocked(s *Session) {
	ids := m.bySubject[s.Subject]
	delete(ids, s.ID)
	if len(ids) == 0 {
		delete(m.bySubject, s.Subject)
	}
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
	if s, ok := m.sessions[id]; ok {
		m.deleteLocked(s)
	}
	return nil
}
