package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-proxy/portcullis/internal/session"
)

// Device sign-ins (session.DeviceGrant) live in portcullis_device_grants
// (migration 3), one row per grant, read and written in the database
// every time: they are polled every few seconds by one client each, not
// looked up on every request, so no replica keeps a copy. Each decision
// and poll reads its row FOR UPDATE and runs the grant's own state machine
// (DeviceGrant.Decide, DeviceGrant.Poll) on the database's clock, so that
// two replicas never both hand out one approval.

// devicePurpose is the associated data of a grant's sealed row data.
const devicePurpose = "portcullis device grant"

// deviceData is the part of a grant that no query looks at: sealed, since
// the approving session's ID is a credential.
type deviceData struct {
	Audience  string    `json:"a"`
	Client    string    `json:"c"`
	UserAgent string    `json:"u"`
	CreatedAt time.Time `json:"t"`
	SessionID string    `json:"s,omitempty"`
	Email     string    `json:"e,omitempty"`
}

// deviceRow is the columns a grant's queries read, in this order.
const deviceRow = `expires_at, interval_ms, last_poll, status, data, now()`

// sealDevice seals g's data for the row of device code hash h, until long
// after the row is forgotten (the expiry of a seal is the caller's clock,
// the row's the database's).
func (s *Store) sealDevice(h string, g *session.DeviceGrant) (string, error) {
	b, err := json.Marshal(deviceData{Audience: g.Audience, Client: g.Client, UserAgent: g.UserAgent,
		CreatedAt: g.CreatedAt, SessionID: g.SessionID, Email: g.Email})
	if err != nil {
		return "", fmt.Errorf("encoding the device sign-in: %w", err)
	}
	return s.opts.Sealer.Seal(devicePurpose+" "+h, b, g.ExpiresAt.Add(session.DeviceRetention+time.Hour)), nil
}

// scanDevice reads a row of deviceRow into a grant with the codes the
// caller knows, and returns the database's clock beside it. *h is the
// device code's hash once the row is read (prefixed reads it from the
// row).
func (s *Store) scanDevice(row pgx.Row, h *string, deviceCode, userCode string) (*session.DeviceGrant, time.Time, error) {
	var (
		g          = &session.DeviceGrant{DeviceCode: deviceCode, UserCode: userCode}
		intervalMS int64
		lastPoll   *time.Time
		status     int16
		data       string
		now        time.Time
	)
	if err := row.Scan(&g.ExpiresAt, &intervalMS, &lastPoll, &status, &data, &now); err != nil {
		return nil, now, err
	}
	raw, err := s.opts.Sealer.Open(devicePurpose+" "+*h, data, time.Now())
	var d deviceData
	if err == nil {
		err = json.Unmarshal(raw, &d)
	}
	if err != nil {
		// Another COOKIE_SECRET wrote it, or it was tampered with: no
		// grant this replica can vouch for.
		s.log.Warn("a device sign-in's row does not open with this COOKIE_SECRET; it is ignored", "error", err)
		return nil, now, pgx.ErrNoRows
	}
	g.Audience, g.Client, g.UserAgent, g.CreatedAt, g.SessionID, g.Email = d.Audience, d.Client, d.UserAgent, d.CreatedAt, d.SessionID, d.Email
	g.Interval = time.Duration(intervalMS) * time.Millisecond
	if lastPoll != nil {
		g.LastPoll = *lastPoll
	}
	g.Status = session.DeviceStatus(status)
	return g, now, nil
}

// PutDeviceGrant stores the new grant g. Its expiry is the database's
// now() plus g's lifetime, so that replicas whose clocks differ agree on
// it. An expired grant kept for its client's late poll gives up its user
// code to the new one.
func (s *Store) PutDeviceGrant(ctx context.Context, g *session.DeviceGrant, max int) error {
	h := hashID(g.DeviceCode)
	data, err := s.sealDevice(h, g)
	if err != nil {
		return err
	}
	err = s.insertBounded(ctx, "put_device_grant", session.ErrUserCodeTaken, `
		INSERT INTO portcullis_device_grants (device_code, user_code, expires_at, interval_ms, data)
		VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5)
		ON CONFLICT (user_code) DO UPDATE SET device_code = EXCLUDED.device_code, expires_at = EXCLUDED.expires_at,
			interval_ms = EXCLUDED.interval_ms, last_poll = NULL, status = 0, data = EXCLUDED.data
		WHERE portcullis_device_grants.expires_at <= now()`,
		[]any{h, hashID(g.UserCode), g.ExpiresAt.Sub(g.CreatedAt).Seconds(), g.Interval.Milliseconds(), data},
		`SELECT count(*) FROM (
			SELECT 1 FROM portcullis_device_grants WHERE expires_at > now() AND status <> $1 LIMIT $2) AS g`,
		max, int16(session.DeviceAnswered))
	if err != nil && !errors.Is(err, session.ErrUserCodeTaken) && !errors.Is(err, session.ErrTooManyPending) {
		return fmt.Errorf("storing a device sign-in: %w", err)
	}
	return err
}

// DeviceGrantByUserCode returns the pending grant userCode.
func (s *Store) DeviceGrantByUserCode(ctx context.Context, userCode string) (*session.DeviceGrant, error) {
	var g *session.DeviceGrant
	err := s.do(ctx, "device_grant_by_user_code", func(ctx context.Context) error {
		var h string
		row := s.pool.QueryRow(ctx, `SELECT device_code, `+deviceRow+` FROM portcullis_device_grants WHERE user_code = $1`, hashID(userCode))
		var now time.Time
		var err error
		g, now, err = s.scanDevice(prefixed{row, &h}, &h, "", userCode)
		if err == nil && !g.Pending(now) {
			err = pgx.ErrNoRows
		}
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, session.ErrNoDeviceGrant
	}
	if err != nil {
		return nil, fmt.Errorf("looking up a device sign-in: %w", err)
	}
	return g, nil
}

// DecideDeviceGrant approves or denies the pending grant userCode.
func (s *Store) DecideDeviceGrant(ctx context.Context, userCode string, approve bool, sessionID, email string) error {
	err := s.do(ctx, "decide_device_grant", func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var h string
			row := tx.QueryRow(ctx, `SELECT device_code, `+deviceRow+` FROM portcullis_device_grants WHERE user_code = $1 FOR UPDATE`, hashID(userCode))
			g, now, err := s.scanDevice(prefixed{row, &h}, &h, "", userCode)
			if err != nil {
				return err
			}
			if g.Decide(now, approve, sessionID, email) != nil {
				return pgx.ErrNoRows
			}
			data, err := s.sealDevice(h, g)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE portcullis_device_grants SET status = $2, data = $3 WHERE device_code = $1`, h, int16(g.Status), data)
			return err
		})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return session.ErrNoDeviceGrant
	}
	if err != nil {
		return fmt.Errorf("deciding a device sign-in: %w", err)
	}
	return nil
}

// PollDeviceGrant is one poll of the grant deviceCode on audience.
func (s *Store) PollDeviceGrant(ctx context.Context, deviceCode, audience string) (*session.DeviceGrant, session.PollResult, error) {
	h := hashID(deviceCode)
	var (
		g *session.DeviceGrant
		r session.PollResult
	)
	err := s.do(ctx, "poll_device_grant", func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			row := tx.QueryRow(ctx, `SELECT `+deviceRow+` FROM portcullis_device_grants WHERE device_code = $1 FOR UPDATE`, h)
			var now time.Time
			var err error
			if g, now, err = s.scanDevice(row, &h, deviceCode, ""); err != nil {
				return err
			}
			if g.Audience != audience {
				return pgx.ErrNoRows
			}
			before := *g
			r = g.Poll(now)
			if g.LastPoll.Equal(before.LastPoll) && g.Status == before.Status {
				return nil // expired or spent: nothing to write
			}
			_, err = tx.Exec(ctx, `UPDATE portcullis_device_grants SET last_poll = $2, interval_ms = $3, status = $4 WHERE device_code = $1`,
				h, g.LastPoll, g.Interval.Milliseconds(), int16(g.Status))
			return err
		})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, session.ErrNoDeviceGrant
	}
	if err != nil {
		return nil, 0, fmt.Errorf("polling a device sign-in: %w", err)
	}
	return g, r, nil
}

// prefixed scans a row whose first column is the device code's hash into
// h, and the rest into the caller's destinations.
type prefixed struct {
	row pgx.Row
	h   *string
}

func (p prefixed) Scan(dest ...any) error { return p.row.Scan(append([]any{p.h}, dest...)...) }
