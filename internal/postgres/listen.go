package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-proxy/portcullis/internal/session"
)

// heartbeat is how long the listener waits for a notification before it
// checks that its connection is alive: often enough that Grace is measured
// from the database's last answer, not from the last write anyone made.
func (s *Store) heartbeat() time.Duration {
	return min(max(s.opts.Grace/4, 50*time.Millisecond), 5*time.Second)
}

// listen keeps a connection LISTENing on the channel, and connects again
// with back-off when it breaks. listening is closed after the first LISTEN.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, listening chan struct{}) {
	backoff := 100 * time.Millisecond
	for {
		connected, err := s.listenOnce(ctx, cfg, listening)
		if ctx.Err() != nil {
			return
		}
		if connected {
			// One warning per break; the attempts after it at debug.
			s.log.Warn("the session store lost its notifications from the database; connecting again",
				"error", err, "grace", s.opts.Grace)
			backoff = 100 * time.Millisecond
		} else {
			s.log.Debug("the session store cannot listen to the database yet", "error", err, "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
			backoff = min(backoff*2, maxBackoff)
		case <-s.kick:
			// A query got through: the database is back.
		}
	}
}

// listenOnce connects, listens and evicts what notifications name until the
// connection fails. It reports whether it got as far as listening.
func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, listening chan struct{}) (connected bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	conn, err := pgx.ConnectConfig(cctx, cfg.Copy())
	if err == nil {
		_, err = conn.Exec(cctx, "LISTEN "+channel)
	}
	cancel()
	if conn != nil {
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			conn.Close(cctx)
		}()
	}
	if err != nil {
		return false, fmt.Errorf("listening on %s: %w", channel, err)
	}
	// Notifications sent while this replica was not listening are lost:
	// forget every session held, so that each is read again.
	n := s.dropAll()
	if listening == nil || isClosed(listening) {
		s.log.Info("the session store listens to the database again; it dropped the sessions it held, whose changes it may have missed", "sessions", n)
	}
	s.touch()
	s.listening.Store(true)
	defer s.listening.Store(false)
	if listening != nil && !isClosed(listening) {
		close(listening)
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, s.heartbeat())
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			s.touch()
			s.notified(n.Payload)
			continue
		case ctx.Err() != nil:
			return true, nil
		case !errors.Is(err, context.DeadlineExceeded):
			return true, err
		}
		// Quiet: is the connection still there? A database that went
		// away without closing it (a partition) shows here.
		pctx, cancel := context.WithTimeout(ctx, opTimeout)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			return true, err
		}
		s.touch()
	}
}

// notified evicts the session a notification names, unless this store
// sent it, and measures how long it took by the sender's clock.
func (s *Store) notified(payload string) {
	// "hash sent-unix-nanoseconds sender"
	f := strings.Fields(payload)
	if len(f) == 0 {
		return
	}
	if len(f) == 3 && f[2] == s.self {
		return
	}
	s.evict(f[0])
	if len(f) >= 2 {
		if ns, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			s.metrics.notified(time.Since(time.Unix(0, ns)))
		}
	}
}

// maintain reconciles and sweeps every Reconcile interval until ctx ends.
// since is the database's clock at the last reconcile (or at Open).
func (s *Store) maintain(ctx context.Context, since time.Time) {
	t := time.NewTicker(s.opts.Reconcile)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if next, err := s.reconcile(ctx, since); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("the session store could not reconcile with the database", "error", err)
			}
		} else {
			since = next
		}
		if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("the session store could not remove expired rows", "error", err)
		}
		s.dropExpired(time.Now())
	}
}

// reconcile evicts every session changed since since (less a margin),
// in case its notification was lost, and returns the database's clock
// to start from next time.
func (s *Store) reconcile(ctx context.Context, since time.Time) (time.Time, error) {
	var (
		now     time.Time
		changed []string
		all     bool
	)
	err := s.do(ctx, "reconcile", func(ctx context.Context) error {
		if err := s.pool.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
			return err
		}
		// Revoked rows stay for revokedRetention: a replica that has not
		// reconciled for longer may have missed one, so it starts over.
		if all = now.Sub(since) > revokedRetention-reconcileMargin; all {
			return nil
		}
		rows, err := s.pool.Query(ctx, `SELECT id FROM portcullis_sessions WHERE changed_at > $1`, since.Add(-reconcileMargin))
		if err != nil {
			return err
		}
		changed, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return since, fmt.Errorf("reading changed sessions: %w", err)
	}
	if all {
		n := s.dropAll()
		s.log.Info("the session store had not reconciled for too long; it dropped the sessions it held", "sessions", n, "last", since)
		return now, nil
	}
	for _, h := range changed {
		s.evict(h)
	}
	return now, nil
}

// sweep removes what has run out: sessions past their expiry, revoked
// sessions past revokedRetention, states and leases past theirs, device
// sign-ins past session.DeviceRetention after theirs, renewal chains with
// their sessions. Every
// replica sweeps; the deletes are idempotent.
func (s *Store) sweep(ctx context.Context) error {
	return s.do(ctx, "sweep", func(ctx context.Context) error {
		if _, err := s.pool.Exec(ctx, `DELETE FROM portcullis_sessions
			WHERE expires_at < now() OR revoked_at < now() - make_interval(secs => $1)`, revokedRetention.Seconds()); err != nil {
			return err
		}
		if _, err := s.pool.Exec(ctx, `DELETE FROM portcullis_sign_in_states WHERE expires_at < now()`); err != nil {
			return err
		}
		if _, err := s.pool.Exec(ctx, `DELETE FROM portcullis_device_grants WHERE expires_at < now() - make_interval(secs => $1)`,
			session.DeviceRetention.Seconds()); err != nil {
			return err
		}
		if _, err := s.pool.Exec(ctx, `DELETE FROM portcullis_renewals WHERE expires_at < now()`); err != nil {
			return err
		}
		_, err := s.pool.Exec(ctx, `DELETE FROM portcullis_leases WHERE expires_at < now()`)
		return err
	})
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
