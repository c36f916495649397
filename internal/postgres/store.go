package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/postgres/connstring"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// Defaults for Options.
const (
	// DefaultGrace is how long sessions a replica holds keep working
	// while the database cannot be reached: a restart or fail-over of
	// the database goes unnoticed by people signed in already.
	DefaultGrace = time.Minute
	// DefaultReconcile is how often a replica asks the database which
	// sessions changed, in case a notification was lost.
	DefaultReconcile = 10 * time.Second
)

const (
	// channel is the LISTEN/NOTIFY channel on which a write names the
	// session it changed, so that every replica evicts its copy.
	channel = "portcullis_sessions"
	// opTimeout bounds every database operation: a database that does
	// not answer (a network partition rather than a refused connection)
	// must turn into ErrUnavailable, not into requests that hang.
	opTimeout = 5 * time.Second
	// reconcileMargin is how far before its last reconcile the next one
	// looks: changed_at is a transaction's start, and a transaction may
	// commit after a reconcile that started later has read.
	reconcileMargin = 15 * time.Second
	// revokedRetention is how long a revoked session's row (emptied of
	// its data) stays for reconcile to see. A replica that has not
	// reconciled for that long drops its whole copy instead.
	revokedRetention = time.Hour
	// maxBackoff caps the wait between attempts to listen again.
	maxBackoff = 5 * time.Second
)

// Options configure a Store.
type Options struct {
	// ConnString is the database's URL or key=value connection string
	// (pgx's, libpq's syntax). Required.
	ConnString string
	// Sealer seals each session's row (COOKIE_SECRET), so a database
	// dump leaks no identity-provider tokens. Every replica must have
	// the same key. Required.
	Sealer *session.Sealer
	// MaxPerPerson caps one subject's live sessions: a new session past
	// it ends that subject's oldest. Zero or less means
	// session.DefaultMaxPerPerson.
	MaxPerPerson int
	// Grace is how long sessions in this replica's memory keep working
	// while the database cannot be reached; after it they fail closed.
	// Zero means DefaultGrace.
	Grace time.Duration
	// Reconcile is how often the store asks the database which sessions
	// changed (in case a notification was lost) and removes expired
	// rows. Zero means DefaultReconcile.
	Reconcile time.Duration
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the store's metrics; nil means none.
	Registerer prometheus.Registerer
}

// Store is a session.Store in PostgreSQL, shared by replicas. Get answers
// from this replica's copy of the sessions it has seen; writes go to the
// database and notify every replica to evict its copy.
type Store struct {
	opts    Options
	pool    *pgxpool.Pool
	log     *slog.Logger
	metrics *metrics

	mu    sync.RWMutex
	cache map[string]*session.Session // by session ID
	ids   map[string]string           // session ID by its hash
	// missing holds session IDs the database said are gone, until when
	// to believe it (see missingTTL).
	missing map[string]time.Time
	// epoch counts evictions. A Get that misses notes it before asking
	// the database and keeps the answer only if no eviction happened
	// meanwhile: the answer may predate the change that was evicted.
	epoch atomic.Uint64

	// contact is when (Unix nanoseconds) the database last answered: the
	// listener or any query.
	contact atomic.Int64
	// listening is whether the listener has a connection LISTENing; kick
	// wakes a listener waiting to connect again, when a query shows the
	// database is back, so that the window in which notifications are
	// missed (and held sessions may be stale) is as short as it can be.
	listening atomic.Bool
	kick      chan struct{}
	// self names this store in its notifications, so that its listener
	// skips its own: it evicted those sessions itself, after the write.
	self string

	cancel context.CancelFunc
	wg     sync.WaitGroup
	close  sync.Once
}

var _ session.Store = (*Store)(nil)

// Open connects to the database, brings its schema up to date, and starts
// listening for other replicas' changes.
func Open(ctx context.Context, opts Options) (*Store, error) {
	return open(ctx, opts, true)
}

// open is Open; listen false leaves the listener off, so that a test can
// see what reconcile alone catches.
func open(ctx context.Context, opts Options, listen bool) (*Store, error) {
	if opts.Sealer == nil {
		return nil, errors.New("opening the session store: no sealer (COOKIE_SECRET)")
	}
	cfg, err := connstring.Parse(opts.ConnString)
	if err != nil {
		return nil, fmt.Errorf("opening the session store: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = opTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "portcullis"
	}
	if opts.MaxPerPerson <= 0 {
		opts.MaxPerPerson = session.DefaultMaxPerPerson
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Reconcile <= 0 {
		opts.Reconcile = DefaultReconcile
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Store{
		opts:    opts,
		log:     opts.Logger,
		cache:   make(map[string]*session.Session),
		ids:     make(map[string]string),
		missing: make(map[string]time.Time),
		self:    rand.Text()[:8],
		kick:    make(chan struct{}, 1),
	}
	// The host, not the string: it may hold a password.
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening the session store at %s: %w", where, err)
	}
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := migrate(mctx, s.pool, s.log); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("opening the session store at %s: %w", where, err)
	}
	var since time.Time
	if err := s.pool.QueryRow(ctx, `SELECT now()`).Scan(&since); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("opening the session store at %s: %w", where, err)
	}
	s.touch()
	if opts.Registerer != nil {
		if s.metrics, err = newMetrics(opts.Registerer, s.cacheLen); err != nil {
			s.pool.Close()
			return nil, fmt.Errorf("opening the session store: %w", err)
		}
	}
	bg, cancelBG := context.WithCancel(context.Background())
	s.cancel = cancelBG
	if listen {
		// Wait for the first LISTEN, so that a write right after Open on
		// another replica is not missed.
		listening := make(chan struct{})
		s.wg.Go(func() { s.listen(bg, cfg.ConnConfig, listening) })
		select {
		case <-listening:
		case <-ctx.Done():
			s.Close()
			return nil, fmt.Errorf("opening the session store at %s: listening for changes: %w", where, ctx.Err())
		case <-time.After(6 * opTimeout):
			// The database answered a moment ago: give it a few
			// attempts, not forever.
			s.Close()
			return nil, fmt.Errorf("opening the session store at %s: listening for changes: no connection after %s", where, 6*opTimeout)
		}
	}
	s.wg.Go(func() { s.maintain(bg, since) })
	s.log.Info("session store open", "database", where, "grace", opts.Grace, "reconcile", opts.Reconcile)
	return s, nil
}

// Close stops the store's goroutines and closes its connections.
func (s *Store) Close() {
	s.close.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.pool.Close()
		s.metrics.unregister()
	})
}

// Ready reports whether the database answered within the grace period:
// while it has, this replica can serve sessions; after, every request
// that needs a session fails.
func (s *Store) Ready() error {
	if since := s.sinceContact(); since > s.opts.Grace {
		return fmt.Errorf("the session store's database has not answered for %s: %w", since.Round(time.Second), session.ErrUnavailable)
	}
	return nil
}

// touch records that the database answered.
func (s *Store) touch() { s.contact.Store(time.Now().UnixNano()) }

func (s *Store) sinceContact() time.Duration {
	return time.Since(time.Unix(0, s.contact.Load()))
}

// hashID is how the database knows a session ID, a lease name or a state
// nonce: the hex SHA-256, so that a dump holds nothing a client could
// present. These are random (130 bits) or hold a random part, so no salt
// is needed against guessing.
func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// emailHash is how the database knows a person's email, for DeleteUser:
// the hex SHA-256 of identity.EmailKey(email), with a prefix so that it is
// no other hash of the address (such as the plain SHA-256 that Gravatar
// publishes) that a dump could be joined with. An email can be guessed,
// so this keeps it from a look at the table, not from someone who tries
// addresses one by one; the subject beside it is in the clear anyway. An
// empty email gives "", which is stored as NULL.
func emailHash(email string) string {
	if email == "" {
		return ""
	}
	h := sha256.Sum256([]byte("portcullis email " + identity.EmailKey(email)))
	return hex.EncodeToString(h[:])
}

// short is a hash cut to what a log line may show.
func short(hash string) string { return hash[:8] }

// Get returns a copy of the live session id: from this replica's memory,
// or, the first time, from the database.
func (s *Store) Get(ctx context.Context, id string) (*session.Session, error) {
	sess, err := s.View(ctx, id)
	if err != nil {
		return nil, err
	}
	return sess.Clone(), nil
}

// View is Get without the copy: the session is this replica's cached one,
// shared. The cache never changes a session it holds; a change to one
// (from this replica or, by notification, another) evicts it and the next
// read loads it afresh.
func (s *Store) View(ctx context.Context, id string) (*session.Session, error) {
	now := time.Now()
	s.mu.RLock()
	c, ok := s.cache[id]
	var out *session.Session
	if ok && c.Live(now) {
		out = c
	}
	s.mu.RUnlock()
	if ok && out == nil {
		return nil, session.ErrNoSession
	}
	// Without news from the database, this copy may have been revoked
	// since: trust it only for the grace period, then ask the database,
	// which fails closed while it cannot be reached.
	if ok && now.Sub(time.Unix(0, s.contact.Load())) <= s.opts.Grace {
		return out, nil
	}
	if !ok {
		s.mu.RLock()
		until, gone := s.missing[id]
		s.mu.RUnlock()
		if gone && now.Before(until) {
			return nil, session.ErrNoSession
		}
	}
	return s.load(ctx, hashID(id), id)
}

// Refetch reads session id from the database, whatever this replica holds.
func (s *Store) Refetch(ctx context.Context, id string) (*session.Session, error) {
	sess, err := s.load(ctx, hashID(id), id)
	if err != nil {
		return nil, err
	}
	return sess.Clone(), nil
}

// missingTTL is how long a session the database does not have (revoked,
// expired, swept) is remembered as missing, so that a signed-out token
// sent again and again costs no database round trip each time. Session
// IDs are random and never reused, and a session is stored before its ID
// is handed out, and a session that has ended never comes back (Update
// and Put refuse to revive it), so remembering an ID as missing can never
// hide a live session.
const missingTTL = time.Minute

// maxMissing bounds the IDs remembered as missing; past it they are all
// forgotten at once (they are an optimisation, not a protection).
const maxMissing = 10_000

// load reads a session from the database, and keeps what it learns: the
// session, or that there is none. The session it returns is the one it
// cached: shared, not to be changed.
func (s *Store) load(ctx context.Context, h, id string) (*session.Session, error) {
	epoch := s.epoch.Load()
	var (
		data string
		live bool
	)
	err := s.do(ctx, "get", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT data, revoked_at IS NULL AND expires_at > now() FROM portcullis_sessions WHERE id = $1`, h).
			Scan(&data, &live)
	})
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !live {
		s.forget(h, id)
		return nil, session.ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("reading session %s…: %w", short(h), err)
	}
	sess, err := s.unseal(h, data)
	if errors.Is(err, session.ErrSealedExpired) {
		s.forget(h, id)
		return nil, session.ErrNoSession
	}
	if err != nil {
		s.opts.Logger.Error("cannot read a session from the database: do all replicas have the same COOKIE_SECRET?", "session", short(h), "error", err)
		s.metrics.failed("get")
		return nil, fmt.Errorf("reading session %s…: %w: %w", short(h), session.ErrUnavailable, err)
	}
	sess.ID = id
	s.mu.Lock()
	if s.epoch.Load() == epoch {
		s.cache[id] = sess
		s.ids[h] = id
	} else {
		// An eviction happened while the row was read: it may be older
		// than the change evicted. Hold nothing, not even an older copy,
		// so that the next Get reads again.
		delete(s.cache, id)
		delete(s.ids, h)
	}
	s.mu.Unlock()
	return sess, nil
}

// forget drops session id from memory and remembers it as missing: the
// database has said it is gone, and a copy held from before must not be
// served again.
func (s *Store) forget(h, id string) {
	s.mu.Lock()
	delete(s.cache, id)
	delete(s.ids, h)
	if len(s.missing) >= maxMissing {
		clear(s.missing)
	}
	s.missing[id] = time.Now().Add(missingTTL)
	s.mu.Unlock()
}

// evict drops the session whose ID hashes to h from memory, if held, and
// counts an eviction either way: a Get in flight may hold the old row.
func (s *Store) evict(h string) {
	s.mu.Lock()
	if id, ok := s.ids[h]; ok {
		delete(s.cache, id)
		delete(s.ids, h)
	}
	s.epoch.Add(1)
	s.mu.Unlock()
}

// dropAll forgets every session held, when notifications may have been
// missed. It returns how many there were.
func (s *Store) dropAll() int {
	s.mu.Lock()
	n := len(s.cache)
	s.cache = make(map[string]*session.Session)
	s.ids = make(map[string]string)
	s.epoch.Add(1)
	s.mu.Unlock()
	return n
}

// dropExpired forgets sessions that have ended, so memory holds at most
// the live sessions this replica has served.
func (s *Store) dropExpired(now time.Time) {
	s.mu.Lock()
	for h, id := range s.ids {
		if !s.cache[id].Live(now) {
			delete(s.cache, id)
			delete(s.ids, h)
		}
	}
	for id, until := range s.missing {
		if !now.Before(until) {
			delete(s.missing, id)
		}
	}
	s.mu.Unlock()
}

func (s *Store) cacheLen() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.cache)
}

// notifySuffix follows a changed session's hash in a notification: the
// sender's clock, for the notification-lag metric, and the sender.
func (s *Store) notifySuffix() string {
	return " " + strconv.FormatInt(time.Now().UnixNano(), 10) + " " + s.self
}

// written evicts the sessions a write changed, once it is done: a Get that
// read the old row while the write was under way must not keep it (evict
// counts, and load checks). The eviction before the write stops serving
// the old copy at once; this one stops a stale copy coming back.
func (s *Store) written(hs ...string) {
	for _, h := range hs {
		s.evict(h)
	}
}

// Put stores a new session, or replaces one. A new session past its
// subject's cap ends the subject's oldest sessions, in the same
// transaction.
func (s *Store) Put(ctx context.Context, sess *session.Session) error {
	h := hashID(sess.ID)
	data, err := s.seal(h, sess)
	if err != nil {
		return fmt.Errorf("storing session %s…: %w", short(h), err)
	}
	s.evict(h)
	var ended []string
	err = s.do(ctx, "put", func(ctx context.Context) error {
		ended = nil
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			// One subject's sign-ins one at a time: two at once must not
			// both see room under the cap.
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, subjectLock(sess.Subject)); err != nil {
				return err
			}
			// Put of an existing ID replaces it, even a revoked one, as
			// the memory store does.
			if _, err := tx.Exec(ctx, `
				INSERT INTO portcullis_sessions (id, subject, created_at, expires_at, changed_at, revoked_at, data, email_hash)
				VALUES ($1, $2, $3, $4, now(), NULL, $5, NULLIF($6, ''))
				ON CONFLICT (id) DO UPDATE SET subject = EXCLUDED.subject, created_at = EXCLUDED.created_at,
					expires_at = EXCLUDED.expires_at, changed_at = now(), data = EXCLUDED.data, email_hash = EXCLUDED.email_hash
				WHERE portcullis_sessions.revoked_at IS NULL`,
				h, sess.Subject, sess.CreatedAt, sess.ExpiresAt, data, emailHash(sess.Email)); err != nil {
				return err
			}
			// Keep the newest MaxPerPerson-1 others, and this one. The
			// data goes with the revocation: nothing needs it after.
			rows, err := tx.Query(ctx, `
				UPDATE portcullis_sessions SET revoked_at = now(), changed_at = now(), data = ''
				WHERE id IN (
					SELECT id FROM portcullis_sessions
					WHERE subject = $1 AND id <> $2 AND revoked_at IS NULL AND expires_at > now()
					ORDER BY created_at DESC, id DESC
					OFFSET $3)
				RETURNING id`, sess.Subject, h, s.opts.MaxPerPerson-1)
			if err != nil {
				return err
			}
			if ended, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return err
			}
			return s.notify(ctx, tx, append(ended, h))
		})
	})
	s.written(append(ended, h)...)
	if err != nil {
		return fmt.Errorf("storing session %s…: %w", short(h), err)
	}
	for _, e := range ended {
		s.log.Info("ended a session past its subject's cap", "session", short(e), "cap", s.opts.MaxPerPerson)
	}
	return nil
}

// notify names each session hs holds on the channel, as Delete and Update
// do, for tx's commit to deliver to every replica listening.
func (s *Store) notify(ctx context.Context, tx pgx.Tx, hs []string) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, x || $3::text) FROM unnest($2::text[]) AS x`,
		channel, hs, s.notifySuffix())
	return err
}

// subjectLock is the advisory lock key for one subject's sessions.
func subjectLock(subject string) int64 {
	h := sha256.Sum256([]byte("portcullis subject " + subject))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// Update replaces the session only if it is still live and not revoked: a
// compare-and-set in the database, so a refresh that finishes after a
// sign-out on any replica does not bring the session back.
func (s *Store) Update(ctx context.Context, sess *session.Session) error {
	h := hashID(sess.ID)
	data, err := s.seal(h, sess)
	if err != nil {
		return fmt.Errorf("updating session %s…: %w", short(h), err)
	}
	s.evict(h)
	var tag pgconn.CommandTag
	err = s.do(ctx, "update", func(ctx context.Context) (err error) {
		tag, err = s.pool.Exec(ctx, `
			WITH u AS (
				UPDATE portcullis_sessions SET expires_at = $3, changed_at = now(), data = $4, email_hash = NULLIF($7, '')
				WHERE id = $1 AND subject = $2 AND revoked_at IS NULL AND expires_at > now()
				RETURNING id)
			SELECT pg_notify($5, id || $6::text) FROM u`,
			h, sess.Subject, sess.ExpiresAt, data, channel, s.notifySuffix(), emailHash(sess.Email))
		return err
	})
	s.written(h)
	if err != nil {
		return fmt.Errorf("updating session %s…: %w", short(h), err)
	}
	if tag.RowsAffected() == 0 {
		return session.ErrNoSession
	}
	return nil
}

// RotateRenewal spends generation gen of the chain family of session id
// in one statement, so that of two replicas presented the same
// credential at once, one wins and the other sees the reuse. The session
// must be live in the database itself: a sign-out on another replica
// counts at once, not when its notification arrives.
func (s *Store) RotateRenewal(ctx context.Context, id, family string, gen uint64) error {
	if gen >= math.MaxInt64 {
		return session.ErrRenewalReused
	}
	h := hashID(id)
	var live, rotated bool
	err := s.do(ctx, "renew", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `
			WITH sess AS (
				SELECT expires_at FROM portcullis_sessions
				WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()),
			up AS (
				INSERT INTO portcullis_renewals (session_id, family, next_gen, expires_at)
				SELECT $1, $2, $3::bigint + 1, expires_at FROM sess WHERE $3::bigint = 0
				ON CONFLICT (session_id, family) DO UPDATE SET next_gen = EXCLUDED.next_gen
					WHERE portcullis_renewals.next_gen = $3::bigint
				RETURNING 1),
			moved AS (
				UPDATE portcullis_renewals SET next_gen = next_gen + 1
				WHERE session_id = $1 AND family = $2 AND next_gen = $3::bigint AND $3::bigint > 0
					AND EXISTS (SELECT 1 FROM sess)
				RETURNING 1)
			SELECT EXISTS (SELECT 1 FROM sess), EXISTS (SELECT 1 FROM up) OR EXISTS (SELECT 1 FROM moved)`,
			h, family, int64(gen)).Scan(&live, &rotated)
	})
	switch {
	case err != nil:
		return fmt.Errorf("renewing session %s…: %w", short(h), err)
	case !live:
		return session.ErrNoSession
	case !rotated:
		return session.ErrRenewalReused
	}
	return nil
}

// Delete revokes the session on every replica: this one at once, the others
// when the notification reaches them (or at their next reconcile).
func (s *Store) Delete(ctx context.Context, id string) error {
	h := hashID(id)
	// Before the database: even if it cannot be reached, this replica
	// stops serving the session.
	s.evict(h)
	err := s.do(ctx, "delete", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `
			WITH u AS (
				UPDATE portcullis_sessions SET revoked_at = now(), changed_at = now(), data = ''
				WHERE id = $1 AND revoked_at IS NULL
				RETURNING id)
			SELECT pg_notify($2, id || $3::text) FROM u`,
			h, channel, s.notifySuffix())
		return err
	})
	s.written(h)
	if err != nil {
		return fmt.Errorf("revoking session %s…: %w", short(h), err)
	}
	return nil
}

// DeleteUser revokes every live session of the person whose email is
// email, on every replica, as Delete revokes one, and returns how many it
// ended.
//
// It finds sessions by their row's email_hash, which releases before
// schema version 2 did not write: a session signed in (or last refreshed)
// before the migration, or through a replica of the previous release
// during a rolling upgrade, is not found and not counted. Such a session
// still ends at its expiry (COOKIE_EXPIRE after sign-in), and its sign-out
// (Delete) works as before.
func (s *Store) DeleteUser(ctx context.Context, email string) (int, error) {
	if email == "" {
		return 0, session.ErrNoEmail
	}
	// Before the database, as Delete: even if it cannot be reached, this
	// replica stops serving the sessions it holds.
	s.evictEmail(identity.EmailKey(email))
	var ended []string
	err := s.do(ctx, "delete_user", func(ctx context.Context) error {
		ended = nil
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `
				UPDATE portcullis_sessions SET revoked_at = now(), changed_at = now(), data = ''
				WHERE email_hash = $1 AND revoked_at IS NULL AND expires_at > now()
				RETURNING id`, emailHash(email))
			if err != nil {
				return err
			}
			if ended, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return err
			}
			return s.notify(ctx, tx, ended)
		})
	})
	s.written(ended...)
	if err != nil {
		return 0, fmt.Errorf("revoking a person's sessions: %w", err)
	}
	s.log.Info("ended every session of one person", "sessions", len(ended))
	return len(ended), nil
}

// evictEmail drops from memory every session held whose email has the key
// key (identity.EmailKey).
func (s *Store) evictEmail(key string) {
	s.mu.Lock()
	for h, id := range s.ids {
		if identity.EmailKey(s.cache[id].Email) == key {
			delete(s.cache, id)
			delete(s.ids, h)
		}
	}
	s.epoch.Add(1)
	s.mu.Unlock()
}

// RedeemState records the sign-in state nonce as used for ttl, for every
// replica: a callback replayed to another replica is refused too. The
// expiry is the database's now() plus ttl, so that replicas whose clocks
// differ agree on it.
func (s *Store) RedeemState(ctx context.Context, nonce string, ttl time.Duration, max int) error {
	// A state remembered but past its time is free again, as in the
	// memory store: by then the state itself has expired.
	err := s.insertBounded(ctx, "redeem_state", session.ErrStateUsed, `
		INSERT INTO portcullis_sign_in_states (nonce, expires_at) VALUES ($1, now() + make_interval(secs => $2))
		ON CONFLICT (nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at
		WHERE portcullis_sign_in_states.expires_at <= now()`, []any{hashID(nonce), ttl.Seconds()},
		`SELECT count(*) FROM (SELECT 1 FROM portcullis_sign_in_states WHERE expires_at > now() LIMIT $1) AS s`, max)
	if err != nil && !errors.Is(err, session.ErrStateUsed) && !errors.Is(err, session.ErrTooManyPending) {
		return fmt.Errorf("redeeming a sign-in state: %w", err)
	}
	return err
}

// insertBounded runs insert, an INSERT … ON CONFLICT DO UPDATE … WHERE the
// row in the way has run out, then count, which counts the rows still
// holding a place (LIMIT $last, which it is given as max+1), in one
// transaction. It returns taken if the insert changed no row (the key is
// in use), and session.ErrTooManyPending if there are more than max rows;
// either rolls back.
func (s *Store) insertBounded(ctx context.Context, op string, taken error, insert string, insertArgs []any, count string, max int, countArgs ...any) error {
	var outcome error
	err := s.do(ctx, op, func(ctx context.Context) error {
		outcome = nil
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, insert, insertArgs...)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				outcome = taken
				return outcome // rolls back
			}
			// Counted after the insert, which this transaction sees, so
			// "more than max" is "max before". Concurrent inserts do not
			// see each other and may pass max by a few: the bound is
			// against floods, not exact. LIMIT keeps the count cheap when
			// a flood has filled the table.
			var n int
			if err := tx.QueryRow(ctx, count, append(countArgs, max+1)...).Scan(&n); err != nil {
				return err
			}
			if n > max {
				outcome = session.ErrTooManyPending
				return outcome
			}
			return nil
		})
	})
	if outcome != nil {
		return outcome
	}
	return err
}

// TryLease takes the lease name for holder for ttl, in one statement: a
// new lease, one holder already has, or one that ran out. Its expiry is
// the database's now() plus ttl, so that replicas whose clocks differ
// still exclude one another.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	var took bool
	err := s.do(ctx, "try_lease", func(ctx context.Context) error {
		var got string
		err := s.pool.QueryRow(ctx, `
			INSERT INTO portcullis_leases (name, holder, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
			ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
			WHERE portcullis_leases.expires_at <= now() OR portcullis_leases.holder = EXCLUDED.holder
			RETURNING holder`, hashID(name), holder, ttl.Seconds()).Scan(&got)
		took = err == nil
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("taking a lease: %w", err)
	}
	return took, nil
}

// ReleaseLease gives up holder's lease name, if it still has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	err := s.do(ctx, "release_lease", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `DELETE FROM portcullis_leases WHERE name = $1 AND holder = $2`, hashID(name), holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("releasing a lease: %w", err)
	}
	return nil
}

// do runs one database operation with opTimeout, times it, and turns a
// failure into one that wraps session.ErrUnavailable (the database did not
// give an answer; callers must fail closed) with its cause. pgx.ErrNoRows
// is an answer, and passes through as it is.
func (s *Store) do(ctx context.Context, op string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	s.metrics.observe(op, time.Since(start))
	switch {
	case err == nil, errors.Is(err, pgx.ErrNoRows),
		errors.Is(err, session.ErrStateUsed), errors.Is(err, session.ErrTooManyPending), errors.Is(err, session.ErrUserCodeTaken):
		s.touch()
		if !s.listening.Load() {
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
		return err
	}
	s.metrics.failed(op)
	return fmt.Errorf("%w: %w", session.ErrUnavailable, err)
}
