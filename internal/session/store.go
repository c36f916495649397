package session

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/identity"
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

// ErrUnavailable is wrapped by a Store's errors when the store itself
// cannot answer (a shared store's database is down): the session may well
// be live, so the caller must not treat it as signed out, but must not let
// the request through either.
var ErrUnavailable = errors.New("the session store cannot be reached")

// ErrStateUsed is returned by Store.RedeemState for a sign-in state that
// was redeemed already, by this replica or another: a replayed callback.
var ErrStateUsed = errors.New("sign-in already completed")

// ErrTooManyPending is returned by Store.RedeemState when the store
// remembers its maximum of redeemed sign-ins already.
var ErrTooManyPending = errors.New("too many sign-ins remembered")

// ErrNoEmail is returned by Store.DeleteUser for an empty email: it names
// no one, and must not end every session whose identity provider gave no
// email.
var ErrNoEmail = errors.New("no email given: it names no one")

// A Store keeps sessions and everything else about sign-ins that must hold
// across replicas. Replicas that share one (PostgreSQL) share sign-ins,
// sign-outs, replay protection and refreshes; the memory store serves one
// replica.
//
// Get is on every request's path: a shared store answers it from memory,
// kept current by the database's notifications, never with a round trip
// per request.
type Store interface {
	// Put stores a new session, or replaces one (by ID). A new session
	// past its subject's cap of sessions ends that subject's oldest.
	Put(ctx context.Context, s *Session) error
	// Get returns a copy of the live session id, ErrNoSession if there is
	// none, or an error wrapping ErrUnavailable.
	Get(ctx context.Context, id string) (*Session, error)
	// View is Get without the copy, for a caller that only reads: the
	// session is the store's, shared with every other caller of View, and
	// must not be changed. A store never changes a session it has handed
	// out either: Put and Update replace it. The request path reads a
	// session on every request, and a copy of its groups and claims for
	// each was a tenth of what a small GET allocated.
	View(ctx context.Context, id string) (*Session, error)
	// Refetch is Get from the store itself, never from a replica's copy:
	// for a decision that must see every other replica's writes, such as
	// a refresh under its lease, which must use the newest refresh token.
	Refetch(ctx context.Context, id string) (*Session, error)
	// Update replaces a session only if it is still live: a refresh that
	// finishes after a sign-out must not bring the session back. It
	// returns ErrNoSession if the session has ended.
	Update(ctx context.Context, s *Session) error
	// Delete revokes a session, on every replica.
	Delete(ctx context.Context, id string) error
	// DeleteUser revokes every live session whose Email is email
	// (compared case-insensitively, as email addresses are: identity.EmailKey),
	// on every replica, and returns how many it ended: an administrator
	// ending a person's access ("kick alice@example.com", the name
	// Kubernetes sees in Impersonate-User). A sign-in after it is not
	// ended; to keep the person out, the policy must change too. An empty
	// email is ErrNoEmail.
	DeleteUser(ctx context.Context, email string) (int, error)

	// RedeemState records the sign-in state nonce as used for ttl. It
	// returns ErrStateUsed if it already was, and ErrTooManyPending if max
	// states are remembered (a flood of sign-ins). Times are the store's
	// own (a shared store's database clock), durations the caller's, so
	// that replicas whose clocks differ still agree.
	RedeemState(ctx context.Context, nonce string, ttl time.Duration, max int) error

	// TryLease takes the lease name for holder for ttl, unless another
	// holder has it and it has not run out: so that one replica at a
	// time refreshes a session with the identity provider. It reports
	// whether holder has the lease.
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives up holder's lease name, if it still has it.
	ReleaseLease(ctx context.Context, name, holder string) error

	// PutDeviceGrant stores a new device sign-in (device.go) until
	// DeviceRetention after it expires. It returns ErrUserCodeTaken if an
	// unexpired grant has its user code, and ErrTooManyPending if max
	// grants are pending already (a flood of device sign-ins).
	PutDeviceGrant(ctx context.Context, g *DeviceGrant, max int) error
	// DeviceGrantByUserCode returns a copy of the pending, unexpired grant
	// whose user code is userCode (normalized), or ErrNoDeviceGrant. Its
	// DeviceCode is empty where the store keeps only the code's hash.
	DeviceGrantByUserCode(ctx context.Context, userCode string) (*DeviceGrant, error)
	// DecideDeviceGrant approves the pending grant userCode for the
	// session sessionID of the person email, or denies it (approve
	// false), once (DeviceGrant.Decide): ErrNoDeviceGrant if it is not
	// pending any more, or never was.
	DecideDeviceGrant(ctx context.Context, userCode string, approve bool, sessionID, email string) error
	// PollDeviceGrant is one poll by the client holding deviceCode, on
	// the route audience (DeviceGrant.Poll): it returns a copy of the
	// grant after the poll, and the answer. A code no store knows, or
	// one for another route, is ErrNoDeviceGrant, and changes nothing.
	PollDeviceGrant(ctx context.Context, deviceCode, audience string) (*DeviceGrant, PollResult, error)

	// RotateRenewal spends generation gen of the renewal chain family of
	// the live session id (renewal.go): it moves the chain to gen+1 and
	// returns nil once, and ErrRenewalReused for any other generation,
	// an older one above all (a copied credential used after its
	// rotation). A chain the store has not seen starts at 0. It returns
	// ErrNoSession if the session has ended. It does not revoke the
	// session on reuse: the caller does, and says why.
	RotateRenewal(ctx context.Context, id, family string, gen uint64) error
}

// ErrRenewalReused is returned by Store.RotateRenewal for a renewal
// credential that is not its chain's newest: it was used already, so two
// parties hold it, and the session must end.
var ErrRenewalReused = errors.New("the renewal credential was used already")

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
	// Now is the store's clock; nil means time.Now. A test that moves
	// time for the sign-in service moves it here too.
	Now func() time.Time

	mu        sync.Mutex
	sessions  map[string]*Session
	bySubject map[string]map[string]struct{} // subject → its session IDs
	puts      int

	states      map[string]time.Time // redeemed sign-in states, until they expire
	statesSwept time.Time            // when RedeemState last dropped expired states
	leases      map[string]lease

	devices      map[string]*DeviceGrant // by device code
	deviceUsers  map[string]string       // device code by user code
	devicesSwept time.Time               // when PutDeviceGrant last dropped forgotten grants

	renewals map[string]map[string]uint64 // session ID → renewal chain → its next generation
}

type lease struct {
	holder string
	until  time.Time
}

// DefaultMaxPerPerson is MemoryStore's cap on one person's sessions when
// its MaxPerPerson is not set.
const DefaultMaxPerPerson = 50

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{sessions: make(map[string]*Session), bySubject: make(map[string]map[string]struct{}),
		states: make(map[string]time.Time), leases: make(map[string]lease),
		devices: make(map[string]*DeviceGrant), deviceUsers: make(map[string]string),
		renewals: make(map[string]map[string]uint64)}
}

// Put stores a copy of s. A new session past its subject's cap ends that
// subject's oldest sessions; putting an existing session again (a
// refresh) replaces it and ends nothing.
func (m *MemoryStore) Put(_ context.Context, s *Session) error {
	c := s.Clone()
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.sessions[s.ID]; ok && old.Subject != s.Subject {
		m.unindexLocked(old)
	}
	m.sessions[s.ID] = c
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
	delete(m.renewals, s.ID)
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
func (m *MemoryStore) Get(ctx context.Context, id string) (*Session, error) {
	s, err := m.View(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

// View returns the live session id, shared: the store holds its own copy
// of every session it is given and replaces it on Update, never changing
// one in place.
func (m *MemoryStore) View(_ context.Context, id string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok || !s.Live(m.now()) {
		return nil, ErrNoSession
	}
	return s, nil
}

// Clone copies s deeply enough that neither a store nor its caller can
// change the other's groups or claims.
func (s *Session) Clone() *Session {
	c := *s
	c.Groups = append([]string(nil), s.Groups...)
	if s.Claims != nil {
		c.Claims = make(map[string][]string, len(s.Claims))
		for k, v := range s.Claims {
			c.Claims[k] = append([]string(nil), v...)
		}
	}
	return &c
}

// Refetch is Get: this store is the only copy.
func (m *MemoryStore) Refetch(ctx context.Context, id string) (*Session, error) {
	return m.Get(ctx, id)
}

// Update replaces the session s.ID if it is still live.
func (m *MemoryStore) Update(_ context.Context, s *Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.sessions[s.ID]
	if !ok || !old.Live(m.now()) || old.Subject != s.Subject {
		return ErrNoSession
	}
	m.sessions[s.ID] = s.Clone()
	return nil
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

// DeleteUser revokes every session whose Email is email, and returns how
// many of them were live. It looks at every session: ending a person's
// sessions is an administrator's rare operation, not worth an index by
// email that every Put would keep.
func (m *MemoryStore) DeleteUser(_ context.Context, email string) (int, error) {
	if email == "" {
		return 0, ErrNoEmail
	}
	key := identity.EmailKey(email)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	n := 0
	for _, s := range m.sessions {
		if identity.EmailKey(s.Email) != key {
			continue
		}
		if s.Live(now) {
			n++
		}
		// Through deleteLocked, so the subject index forgets it too.
		m.deleteLocked(s)
	}
	return n, nil
}

// RedeemState records a sign-in state as used until until.
func (m *MemoryStore) RedeemState(_ context.Context, nonce string, ttl time.Duration, max int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	until := now.Add(ttl)
	// Sweep now and then, not on every call: a sweep walks every state
	// remembered, so sweeping per call would let a flood of callbacks
	// cost quadratic time and stall every sign-in. When full, a sweep
	// may free room sooner, but at most once a second.
	since := now.Sub(m.statesSwept)
	if since >= time.Minute || since >= time.Second && len(m.states) >= max {
		for k, exp := range m.states {
			if now.After(exp) {
				delete(m.states, k)
			}
		}
		m.statesSwept = now
	}
	// An entry not yet swept but past its time is free again: by then the
	// state it stands for has expired too (states are sealed to expire no
	// later), so the state's own check refuses a replay first.
	if exp, used := m.states[nonce]; used && !now.After(exp) {
		return ErrStateUsed
	}
	if len(m.states) >= max {
		return ErrTooManyPending
	}
	m.states[nonce] = until
	return nil
}

// TryLease takes the lease name for holder for ttl, unless another holder
// has it unexpired.
func (m *MemoryStore) TryLease(_ context.Context, name, holder string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	until := now.Add(ttl)
	if l, ok := m.leases[name]; ok && l.holder != holder && now.Before(l.until) {
		return false, nil
	}
	// Leases are few (one per session being refreshed) and short: drop
	// the expired ones as new ones are taken.
	for k, l := range m.leases {
		if !now.Before(l.until) {
			delete(m.leases, k)
		}
	}
	m.leases[name] = lease{holder: holder, until: until}
	return true, nil
}

// ReleaseLease gives up holder's lease name.
func (m *MemoryStore) ReleaseLease(_ context.Context, name, holder string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[name]; ok && l.holder == holder {
		delete(m.leases, name)
	}
	return nil
}

// PutDeviceGrant stores a copy of the new grant g.
func (m *MemoryStore) PutDeviceGrant(_ context.Context, g *DeviceGrant, max int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	// As RedeemState: sweep now and then, or when full, at most once a
	// second, so that a flood costs no quadratic time.
	since := now.Sub(m.devicesSwept)
	if since >= time.Minute || since >= time.Second && len(m.devices) >= max {
		for code, d := range m.devices {
			if now.After(d.ExpiresAt.Add(DeviceRetention)) {
				m.forgetDeviceLocked(code, d)
			}
		}
		m.devicesSwept = now
	}
	if code, ok := m.deviceUsers[g.UserCode]; ok && now.Before(m.devices[code].ExpiresAt) {
		return ErrUserCodeTaken
	}
	// Fewer grants held than max means fewer pending: only a full map is
	// worth counting.
	if len(m.devices) >= max {
		pending := 0
		for _, d := range m.devices {
			if d.Status != DeviceAnswered && now.Before(d.ExpiresAt) {
				pending++
			}
		}
		if pending >= max {
			return ErrTooManyPending
		}
	}
	// An expired grant kept for its client's late poll gives up its user
	// code here; its device code still answers expired_token.
	m.devices[g.DeviceCode] = g.Clone()
	m.deviceUsers[g.UserCode] = g.DeviceCode
	return nil
}

func (m *MemoryStore) forgetDeviceLocked(code string, d *DeviceGrant) {
	delete(m.devices, code)
	if m.deviceUsers[d.UserCode] == code {
		delete(m.deviceUsers, d.UserCode)
	}
}

// deviceByUserLocked returns the pending grant userCode, or nil.
func (m *MemoryStore) deviceByUserLocked(userCode string) *DeviceGrant {
	d := m.devices[m.deviceUsers[userCode]]
	if d == nil || !d.Pending(m.now()) {
		return nil
	}
	return d
}

// DeviceGrantByUserCode returns a copy of the pending grant userCode.
func (m *MemoryStore) DeviceGrantByUserCode(_ context.Context, userCode string) (*DeviceGrant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.deviceByUserLocked(userCode)
	if d == nil {
		return nil, ErrNoDeviceGrant
	}
	return d.Clone(), nil
}

// DecideDeviceGrant approves or denies the pending grant userCode.
func (m *MemoryStore) DecideDeviceGrant(_ context.Context, userCode string, approve bool, sessionID, email string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.deviceByUserLocked(userCode)
	if d == nil {
		return ErrNoDeviceGrant
	}
	return d.Decide(m.now(), approve, sessionID, email)
}

// PollDeviceGrant is one poll of the grant deviceCode on audience.
func (m *MemoryStore) PollDeviceGrant(_ context.Context, deviceCode, audience string) (*DeviceGrant, PollResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.devices[deviceCode]
	if !ok || d.Audience != audience {
		return nil, 0, ErrNoDeviceGrant
	}
	r := d.Poll(m.now())
	return d.Clone(), r, nil
}

// RotateRenewal moves the chain family of session id from gen to gen+1,
// once. The chains live beside the session, not in it, so that an Update
// from an older copy of the session (a refresh) cannot turn one back.
func (m *MemoryStore) RotateRenewal(_ context.Context, id, family string, gen uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sessions[id]; !ok || !s.Live(m.now()) {
		return ErrNoSession
	}
	chains := m.renewals[id]
	if chains == nil {
		chains = make(map[string]uint64)
		m.renewals[id] = chains
	}
	if chains[family] != gen {
		return ErrRenewalReused
	}
	chains[family] = gen + 1
	return nil
}

func (m *MemoryStore) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}
