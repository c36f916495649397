package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/session/storetest"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) session.Store {
		s, _ := replica(t, newDatabase(t), Options{})
		return s
	})
	storetest.RunShared(t, func(t *testing.T) (session.Store, session.Store) {
		conn := newDatabase(t)
		// Reconcile far away: only a notification can explain what the
		// other replica sees promptly.
		a, _ := replica(t, conn, Options{Reconcile: time.Hour})
		b, _ := replica(t, conn, Options{Reconcile: time.Hour})
		return a, b
	})
}

// Two replicas on one database: what one does, the other sees.
func TestReplicasShare(t *testing.T) {
	ctx := context.Background()
	conn := newDatabase(t)
	// Reconcile far away: only a notification can explain what the
	// other replica sees within a second.
	a, _ := replica(t, conn, Options{Reconcile: time.Hour})
	b, _ := replica(t, conn, Options{Reconcile: time.Hour})

	t.Run("a session put on one is found on the other", func(t *testing.T) {
		s := sample("alice")
		if err := a.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		got, err := b.Get(ctx, s.ID)
		if err != nil || got.Email != s.Email {
			t.Fatalf("got %+v, %v; want alice's session", got, err)
		}
	})
	t.Run("a sign-out on one is refused by the other within 1 s", func(t *testing.T) {
		s := sample("bob")
		if err := a.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, s.ID); err != nil { // b holds it now
			t.Fatal(err)
		}
		if err := a.Delete(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		storetest.RefusedWithin(t, b, s.ID, time.Second, "b refuses the session a revoked")
	})
	t.Run("an update on one is seen by the other within 1 s", func(t *testing.T) {
		s := sample("carol")
		if err := a.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		s.Groups = []string{"sre"}
		if err := a.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Second, "b sees the new groups", func() error {
			got, err := b.Get(ctx, s.ID)
			if err != nil || !slices.Equal(got.Groups, []string{"sre"}) {
				return fmt.Errorf("b.Get: got %+v, %v; want groups [sre]", got, err)
			}
			return nil
		})
	})
	t.Run("a refresh that ends after a sign-out elsewhere does not bring the session back", func(t *testing.T) {
		s := sample("dave")
		if err := a.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if err := a.Delete(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		// Straight away: b may still hold its copy, the database decides.
		s.IDPRefreshToken = "rotated"
		if err := b.Update(ctx, s); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("b.Update after a.Delete: got %v, want ErrNoSession", err)
		}
	})
	t.Run("a sign-in state is redeemed once across replicas", func(t *testing.T) {
		const until = 10 * time.Minute
		if err := a.RedeemState(ctx, "nonce-1", until, 100); err != nil {
			t.Fatal(err)
		}
		if err := b.RedeemState(ctx, "nonce-1", until, 100); !errors.Is(err, session.ErrStateUsed) {
			t.Errorf("replayed to b: got %v, want ErrStateUsed", err)
		}
	})
	t.Run("a lease has one holder across replicas, and is taken over when it runs out", func(t *testing.T) {
		name := "refresh " + session.NewSessionID()
		if ok, err := a.TryLease(ctx, name, "replica-a", 300*time.Millisecond); err != nil || !ok {
			t.Fatalf("a.TryLease: got %v, %v; want true", ok, err)
		}
		if ok, err := b.TryLease(ctx, name, "replica-b", time.Minute); err != nil || ok {
			t.Fatalf("b.TryLease while a holds it: got %v, %v; want false", ok, err)
		}
		eventually(t, 5*time.Second, "b takes the lease a let run out", func() error {
			ok, err := b.TryLease(ctx, name, "replica-b", time.Minute)
			if err != nil || !ok {
				return fmt.Errorf("b.TryLease: got %v, %v", ok, err)
			}
			return nil
		})
		if ok, err := a.TryLease(ctx, name, "replica-a", time.Minute); err != nil || ok {
			t.Errorf("a.TryLease once b has it: got %v, %v; want false", ok, err)
		}
		if err := a.ReleaseLease(ctx, name, "replica-a"); err != nil { // not a's: nothing
			t.Fatal(err)
		}
		if ok, err := a.TryLease(ctx, name, "replica-a", time.Minute); err != nil || ok {
			t.Errorf("a.TryLease after releasing what it did not hold: got %v, %v; want false", ok, err)
		}
	})
	t.Run("a person's cap holds across replicas", func(t *testing.T) {
		conn := newDatabase(t)
		a, _ := replica(t, conn, Options{MaxPerPerson: 2, Reconcile: time.Hour})
		b, _ := replica(t, conn, Options{MaxPerPerson: 2, Reconcile: time.Hour})
		first, second, third := sample("erin"), sample("erin"), sample("erin")
		first.CreatedAt = time.Now().Add(-time.Hour)
		for _, s := range []*session.Session{first, second} {
			if err := a.Put(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.Get(ctx, first.ID); err != nil { // a holds it now
			t.Fatal(err)
		}
		if err := b.Put(ctx, third); err != nil {
			t.Fatal(err)
		}
		storetest.RefusedWithin(t, a, first.ID, time.Second, "a refuses the oldest session, ended by b's sign-in")
		for _, s := range []*session.Session{second, third} {
			if _, err := a.Get(ctx, s.ID); err != nil {
				t.Errorf("a.Get of a newer session: %v", err)
			}
		}
	})
}

// A replica that misses notifications still refuses a revoked session:
// within its reconcile interval if it never listens, and by dropping what
// it held when its listening connection is cut.
func TestLostNotifications(t *testing.T) {
	ctx := context.Background()
	conn := newDatabase(t)
	a, _ := replica(t, conn, Options{Reconcile: time.Hour})

	t.Run("reconcile", func(t *testing.T) {
		const every = 500 * time.Millisecond
		deaf, _ := replicaListening(t, conn, Options{Reconcile: every}, false)
		s := sample("frank")
		if err := a.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		if _, err := deaf.Get(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if err := a.Delete(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		// The interval, and the reconcile query's own time on a loaded
		// machine.
		storetest.RefusedWithin(t, deaf, s.ID, every+250*time.Millisecond, "a replica that does not listen refuses the revoked session")
	})
	t.Run("the listening connection is cut", func(t *testing.T) {
		b, logs := replica(t, conn, Options{Reconcile: time.Hour})
		s := sample("grace")
		if err := a.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		// Every listening connection (a's too): an administrator's
		// pg_terminate_backend, or a proxy in between that dropped them.
		exec(t, conn, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN `+channel+`'`)
		if err := a.Delete(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		storetest.RefusedWithin(t, b, s.ID, 5*time.Second, "b refuses the session revoked while it was not listening")
		// Listening again: a later sign-out reaches b within 1 s.
		eventually(t, 5*time.Second, "b listens again", func() error {
			if !strings.Contains(logs.String(), "listens to the database again") {
				return errors.New("b has not logged that it listens again")
			}
			return nil
		})
		s2 := sample("grace")
		if err := a.Put(ctx, s2); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, s2.ID); err != nil {
			t.Fatal(err)
		}
		if err := a.Delete(ctx, s2.ID); err != nil {
			t.Fatal(err)
		}
		storetest.RefusedWithin(t, b, s2.ID, time.Second, "b refuses a session revoked after it listens again")
	})
}

// A quiet database (no writes) is not a lost one: the listener's heartbeat
// keeps the grace from running out, and the connection is kept.
func TestQuietDatabase(t *testing.T) {
	ctx := context.Background()
	conn := newDatabase(t)
	const grace = 400 * time.Millisecond // a heartbeat every 100 ms
	a, logs := replica(t, conn, Options{Grace: grace, Reconcile: time.Hour})
	b, _ := replica(t, conn, Options{Reconcile: time.Hour})
	s := sample("kim")
	if err := b.Put(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * grace) // nothing happens
	if err := a.Ready(); err != nil {
		t.Errorf("Ready after a quiet while: %v", err)
	}
	if _, err := a.Get(ctx, s.ID); err != nil {
		t.Errorf("Get after a quiet while: %v", err)
	}
	if strings.Contains(logs.String(), "lost its notifications") {
		t.Errorf("the listener reconnected in a quiet while; logs:\n%s", logs.String())
	}
	if err := b.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	storetest.RefusedWithin(t, a, s.ID, time.Second, "a refuses the session b revoked")
}

// Ten replicas starting at once against an empty database migrate it once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	conn := newDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() {
			sealer, _ := session.NewSealer(testKey)
			s, err := Open(context.Background(), Options{ConnString: conn, Sealer: sealer})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	got := query[int32](t, conn, `SELECT version FROM portcullis_schema_migrations ORDER BY version`)
	want := make([]int32, len(migrations))
	for i := range want {
		want[i] = int32(i + 1)
	}
	if !slices.Equal(got, want) {
		t.Errorf("migrations recorded: got %v, want %v", got, want)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	conn := newDatabase(t)
	replica(t, conn, Options{})
	exec(t, conn, `INSERT INTO portcullis_schema_migrations (version) VALUES ($1)`, len(migrations)+1)
	sealer, _ := session.NewSealer(testKey)
	_, err := Open(context.Background(), Options{ConnString: conn, Sealer: sealer})
	want := fmt.Sprintf("the database's schema is version %d, newer than this Portcullis knows (%d)", len(migrations)+1, len(migrations))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error saying %q", err, want)
	}
}

// The database stops: sessions the replica holds work for the grace
// period, then fail closed; what it does not hold, and every write, fails
// closed at once; when the database is back, everything works again and
// no session is lost.
func TestDatabaseDown(t *testing.T) {
	ctx := context.Background()
	pg := testenv.NewPostgres(t)
	const grace = 3 * time.Second
	st, logs := replica(t, pg.ConnString(), Options{Grace: grace})
	held, notHeld := sample("heidi"), sample("ivan")
	for _, s := range []*session.Session{held, notHeld} {
		if err := st.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Get(ctx, held.ID); err != nil {
		t.Fatal(err)
	}

	pg.Stop()
	if got, err := st.Get(ctx, held.ID); err != nil || got.Email != held.Email {
		t.Errorf("a held session in the grace period: got %+v, %v; want it", got, err)
	}
	if err := st.Ready(); err != nil {
		t.Errorf("Ready in the grace period: %v", err)
	}
	unavailable := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s while the database is down: got %v, want ErrUnavailable", what, err)
		}
	}
	_, err := st.Get(ctx, notHeld.ID)
	unavailable("Get of a session not held", err)
	unavailable("Put", st.Put(ctx, sample("judy")))
	unavailable("Update", st.Update(ctx, notHeld))
	unavailable("Delete", st.Delete(ctx, session.NewSessionID()))
	_, err = st.DeleteUser(ctx, "nobody@example.com")
	unavailable("DeleteUser", err)
	unavailable("RedeemState", st.RedeemState(ctx, "nonce", time.Minute, 100))
	_, err = st.TryLease(ctx, "lease", "me", time.Minute)
	unavailable("TryLease", err)
	unavailable("ReleaseLease", st.ReleaseLease(ctx, "lease", "me"))

	eventually(t, grace+5*time.Second, "a held session fails closed after the grace", func() error {
		if _, err := st.Get(ctx, held.ID); !errors.Is(err, session.ErrUnavailable) {
			return fmt.Errorf("Get: got %v, want ErrUnavailable", err)
		}
		return nil
	})
	unavailable("Ready after the grace", st.Ready())

	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the store works again", func() error {
		for _, s := range []*session.Session{held, notHeld} {
			if got, err := st.Get(ctx, s.ID); err != nil || got.Email != s.Email {
				return fmt.Errorf("Get %s: got %+v, %v", s.Subject, got, err)
			}
		}
		return st.Ready()
	})
	if err := st.Put(ctx, sample("judy")); err != nil {
		t.Errorf("Put after the database is back: %v", err)
	}
	if err := st.Delete(ctx, held.ID); err != nil {
		t.Errorf("Delete after the database is back: %v", err)
	}
	if _, err := st.Get(ctx, held.ID); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("Get after Delete: got %v, want ErrNoSession", err)
	}
	// The outage was logged, and neither the password nor a session ID
	// with it.
	if !strings.Contains(logs.String(), "lost its notifications") {
		t.Errorf("the outage was not logged:\n%s", logs.String())
	}
	u, _ := url.Parse(pg.ConnString())
	password, _ := u.User.Password()
	noSecretsIn(t, "the logs", logs.String(), password, held.ID, notHeld.ID)
}

// A dump of the database (or a look over an operator's shoulder) gives
// nothing to present to Portcullis or the identity provider.
func TestRowsHoldNoSecrets(t *testing.T) {
	ctx := context.Background()
	conn := newDatabase(t)
	st, logs := replica(t, conn, Options{})
	s := sample("mallory")
	if err := st.Put(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := st.RedeemState(ctx, "state-nonce-SECRET", time.Minute, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := st.TryLease(ctx, "refresh "+s.ID, "replica", time.Minute); err != nil {
		t.Fatal(err)
	}
	dump := strings.Join(query[string](t, conn, `
		SELECT row_to_json(r)::text FROM portcullis_sessions r UNION ALL
		SELECT row_to_json(r)::text FROM portcullis_sign_in_states r UNION ALL
		SELECT row_to_json(r)::text FROM portcullis_leases r`), "\n")
	secrets := []string{s.ID, s.IDPRefreshToken, s.IDPIDToken, s.Email, s.Name, "state-nonce-SECRET", "platform"}
	noSecretsIn(t, "the database", dump, secrets...)
	if !strings.Contains(dump, hashID(s.ID)) {
		t.Errorf("the session's row is not keyed by its ID's hash: %s", dump)
	}
	// The email's hash has a prefix of its own, so it is not the plain
	// SHA-256 of the address that other services publish (Gravatar's) and
	// that a dump could be joined with.
	if !strings.Contains(dump, emailHash(s.Email)) || strings.Contains(dump, hashID(s.Email)) {
		t.Errorf("the session's row does not hold the email's prefixed hash, or holds its plain one: %s", dump)
	}
	// Revoked, its data goes at once, though the row stays for reconcile.
	if err := st.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if got := query[string](t, conn, `SELECT data FROM portcullis_sessions WHERE id = $1`, hashID(s.ID)); len(got) != 1 || got[0] != "" {
		t.Errorf("a revoked session's data: got %q, want one empty row", got)
	}
	noSecretsIn(t, "the logs", logs.String(), secrets...)
}

// A database from the release before schema version 2, with a session in
// it, is migrated by a replica of this one: the session keeps working, and
// so do the rows a replica of the previous release writes during the
// rolling upgrade. DeleteUser cannot find those (they have no email_hash),
// as its documentation says; their sign-out still works, and a refresh by
// this release makes them findable.
func TestUpgradeToEmailHash(t *testing.T) {
	ctx := context.Background()
	conn := newDatabase(t)
	pool, err := pgxpool.New(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	discard := slog.New(slog.DiscardHandler)
	if done, err := migrateOne(ctx, pool, discard); err != nil || done {
		t.Fatalf("migrating to version 1: got %v, %v", done, err)
	}
	pool.Close()
	sealer, _ := session.NewSealer(testKey)
	sealing := &Store{opts: Options{Sealer: sealer}}
	// As the previous release's Put writes a session, and still may once
	// the schema is newer.
	putAsPreviousRelease := func(s *session.Session) {
		t.Helper()
		data, err := sealing.seal(hashID(s.ID), s)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, conn, `
			INSERT INTO portcullis_sessions (id, subject, created_at, expires_at, changed_at, revoked_at, data)
			VALUES ($1, $2, $3, $4, now(), NULL, $5)`,
			hashID(s.ID), s.Subject, s.CreatedAt, s.ExpiresAt, data)
	}
	before := sample("olga")
	putAsPreviousRelease(before)

	st, _ := replica(t, conn, Options{})
	if got := query[int32](t, conn, `SELECT max(version) FROM portcullis_schema_migrations`); !slices.Equal(got, []int32{int32(len(migrations))}) {
		t.Fatalf("schema version after Open: got %v, want %d", got, len(migrations))
	}
	during := sample("olga")
	putAsPreviousRelease(during)
	for _, s := range []*session.Session{before, during} {
		if got, err := st.Get(ctx, s.ID); err != nil || got.Email != s.Email {
			t.Errorf("Get of a session the previous release wrote: got %+v, %v", got, err)
		}
	}
	if n, err := st.DeleteUser(ctx, before.Email); err != nil || n != 0 {
		t.Errorf("DeleteUser of rows without email_hash: got %d, %v; want 0", n, err)
	}
	if err := st.Delete(ctx, before.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, before.ID); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("Get after Delete: got %v, want ErrNoSession", err)
	}
	// A refresh by this release writes the hash.
	if err := st.Update(ctx, during); err != nil {
		t.Fatal(err)
	}
	if n, err := st.DeleteUser(ctx, during.Email); err != nil || n != 1 {
		t.Errorf("DeleteUser after a refresh by this release: got %d, %v; want 1", n, err)
	}
}

// A session too big for one seal (many claims, long tokens) is stored in
// parts, and a part cannot be moved to another row.
func TestLargeSessionAndMovedData(t *testing.T) {
	ctx := context.Background()
	conn := newDatabase(t)
	st, _ := replica(t, conn, Options{})
	big := sample("oscar")
	big.Claims = map[string][]string{}
	for i := range 64 {
		big.Claims[fmt.Sprintf("claim-%d", i)] = []string{strings.Repeat("v", 250)}
	}
	big.IDPIDToken = strings.Repeat("t", 4000)
	if err := st.Put(ctx, big); err != nil {
		t.Fatal(err)
	}
	if parts := query[int32](t, conn, `SELECT array_length(string_to_array(data, '.'), 1) FROM portcullis_sessions`); len(parts) != 1 || parts[0] < 2 {
		t.Fatalf("parts of the big session: got %v, want one row of several", parts)
	}
	fresh, _ := replica(t, conn, Options{})
	got, err := fresh.Get(ctx, big.ID)
	if err != nil || !slices.Equal(got.Claims["claim-63"], big.Claims["claim-63"]) || got.IDPIDToken != big.IDPIDToken {
		t.Fatalf("the big session read back: got %v", err)
	}

	// An attacker who can write the table copies another person's data
	// into their own session's row: it does not open.
	victim, attacker := sample("victim"), sample("attacker")
	for _, s := range []*session.Session{victim, attacker} {
		if err := st.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, conn, `UPDATE portcullis_sessions SET data = (SELECT data FROM portcullis_sessions WHERE id = $1) WHERE id = $2`,
		hashID(victim.ID), hashID(attacker.ID))
	other, _ := replica(t, conn, Options{})
	if got, err := other.Get(ctx, attacker.ID); err == nil || errors.Is(err, session.ErrNoSession) {
		t.Errorf("the attacker's row with the victim's data: got %+v, %v; want an error, not a session nor ErrNoSession", got, err)
	}
}

func TestMetrics(t *testing.T) {
	ctx := context.Background()
	conn := newDatabase(t)
	reg := prometheus.NewRegistry()
	a, _ := replica(t, conn, Options{Registerer: reg})
	b, _ := replica(t, conn, Options{})
	gather := func() map[string]*dto.MetricFamily {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := make(map[string]*dto.MetricFamily)
		for _, mf := range mfs {
			got[mf.GetName()] = mf
		}
		return got
	}
	cached := func() float64 {
		return gather()["portcullis_store_cache_sessions"].GetMetric()[0].GetGauge().GetValue()
	}

	notifications := func() uint64 {
		return gather()["portcullis_store_notification_lag_seconds"].GetMetric()[0].GetHistogram().GetSampleCount()
	}

	s := sample("peggy")
	if err := b.Put(ctx, s); err != nil {
		t.Fatal(err)
	}
	// Once b's notification of the put is in, a holds what it reads.
	eventually(t, time.Second, "a observes the notification of b's put", func() error {
		if n := notifications(); n != 1 {
			return fmt.Errorf("notifications observed: %d, want 1", n)
		}
		return nil
	})
	if _, err := a.Get(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if got := cached(); got != 1 {
		t.Errorf("portcullis_store_cache_sessions: got %v, want 1", got)
	}
	if err := b.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "a evicts the session b revoked", func() error {
		if n := notifications(); n != 2 {
			return fmt.Errorf("notifications observed: %d, want 2", n)
		}
		if got := cached(); got != 0 {
			return fmt.Errorf("portcullis_store_cache_sessions: got %v, want 0", got)
		}
		return nil
	})
	var got []string
	for name := range gather() {
		got = append(got, name)
	}
	slices.Sort(got)
	// No errors yet, so no series of portcullis_store_errors_total.
	want := []string{"portcullis_store_cache_sessions", "portcullis_store_notification_lag_seconds", "portcullis_store_operation_seconds"}
	if !slices.Equal(got, want) {
		t.Errorf("metrics: got %v, want %v", got, want)
	}
	// Closed, the store leaves the registry to the next one.
	a.Close()
	replica(t, conn, Options{Registerer: reg})
}

func TestCloseLeaksNoGoroutines(t *testing.T) {
	conn := newDatabase(t)
	mine := func() []string {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var found []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "github.com/jackc/") || strings.Contains(g, "internal/postgres.(*Store)") {
				found = append(found, g)
			}
		}
		return found
	}
	if g := mine(); len(g) > 0 {
		t.Fatalf("before Open, goroutines of a store are running already (another test's?):\n%s", strings.Join(g, "\n\n"))
	}
	sealer, _ := session.NewSealer(testKey)
	st, err := Open(context.Background(), Options{ConnString: conn, Sealer: sealer, Reconcile: 10 * time.Millisecond, Grace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s := sample("quentin")
	if err := st.Put(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(context.Background(), s.ID); err != nil {
		t.Fatal(err)
	}
	if len(mine()) == 0 {
		t.Fatal("no goroutine of the open store found: the check below would prove nothing")
	}
	st.Close()
	st.Close() // twice is fine
	eventually(t, 5*time.Second, "the store's goroutines end", func() error {
		if g := mine(); len(g) > 0 {
			return fmt.Errorf("still running:\n%s", strings.Join(g, "\n\n"))
		}
		return nil
	})
}

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	s := sample("rupert")
	b.Run("postgres-cached", func(b *testing.B) {
		st, _ := replica(b, newDatabase(b), Options{})
		if err := st.Put(ctx, s); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Get(ctx, s.ID); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := st.Get(ctx, s.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("memory", func(b *testing.B) {
		st := session.NewMemoryStore()
		if err := st.Put(ctx, s); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := st.Get(ctx, s.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// TestRevokedStaysRevokedAfterOutage: a replica whose grace ran out while it
// missed a sign-out asks the database, which says the session is gone; the
// copy it held must not be served again once the database answers.
func TestRevokedStaysRevokedAfterOutage(t *testing.T) {
	conn := newDatabase(t)
	a, _ := replicaListening(t, conn, Options{Reconcile: time.Hour}, false)
	b, _ := replicaListening(t, conn, Options{Reconcile: time.Hour, Grace: time.Second}, false)
	ctx := context.Background()
	s := sample("alice")
	if err := a.Put(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, s.ID); err != nil { // now held by b
		t.Fatal(err)
	}
	if err := a.Delete(ctx, s.ID); err != nil { // b does not listen: it misses this
		t.Fatal(err)
	}
	b.contact.Store(time.Now().Add(-time.Hour).UnixNano()) // as after an outage
	for i := range 3 {
		if got, err := b.Get(ctx, s.ID); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Get %d after the outage: got %v, %v; want ErrNoSession", i, got, err)
		}
	}
}

// TestMissingSessionIsRemembered: a signed-out token sent again and again
// costs one database read, not one per request.
func TestMissingSessionIsRemembered(t *testing.T) {
	conn := newDatabase(t)
	reg := prometheus.NewRegistry()
	st, _ := replicaListening(t, conn, Options{Reconcile: time.Hour, Registerer: reg}, true)
	ctx := context.Background()
	s := sample("bob")
	if err := st.Put(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	before := operations(t, reg, "get")
	for range 20 {
		if _, err := st.Get(ctx, s.ID); !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("Get: got %v, want ErrNoSession", err)
		}
	}
	if n := operations(t, reg, "get") - before; n > 1 {
		t.Errorf("database reads for 20 requests of a signed-out session: got %d, want at most 1", n)
	}
}

// operations counts the store's database round trips of one operation.
func operations(t *testing.T, reg *prometheus.Registry, op string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "portcullis_store_operation_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" && l.GetValue() == op {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}
