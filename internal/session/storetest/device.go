package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/session"
)

// runDevice checks the device sign-ins of a store (session.DeviceGrant):
// the state machine of RFC 8628 as a store keeps it, single use, expiry,
// codes for another route, and the bound on pending grants.
func runDevice(t *testing.T, newStore func(t *testing.T) session.Store) {
	ctx := context.Background()
	const max = 100
	// pollAfter polls once the grant's interval has passed (a short one:
	// see deviceGrant).
	pollAfter := func(t *testing.T, st session.Store, g *session.DeviceGrant) (*session.DeviceGrant, session.PollResult) {
		t.Helper()
		time.Sleep(g.Interval + 20*time.Millisecond)
		got, r, err := st.PollDeviceGrant(ctx, g.DeviceCode, g.Audience)
		if err != nil {
			t.Fatalf("PollDeviceGrant: %v", err)
		}
		return got, r
	}
	t.Run("a device sign-in is pending, approved once, then spent", func(t *testing.T) {
		st := newStore(t)
		g := deviceGrant()
		must(t, st.PutDeviceGrant(ctx, g, max))
		got, err := st.DeviceGrantByUserCode(ctx, g.UserCode)
		if err != nil || got.Client != g.Client || got.UserAgent != g.UserAgent || got.Audience != g.Audience ||
			!got.CreatedAt.Equal(g.CreatedAt) || got.Status != session.DevicePending {
			t.Fatalf("by user code: got %+v, %v; want %+v", got, err, g)
		}
		if _, r := pollAfter(t, st, g); r != session.PollPending {
			t.Errorf("first poll: got %v, want PollPending", r)
		}
		must(t, st.DecideDeviceGrant(ctx, g.UserCode, true, "session-of-alice", "alice@example.com"))
		if err := st.DecideDeviceGrant(ctx, g.UserCode, false, "", "mallory@example.com"); !errors.Is(err, session.ErrNoDeviceGrant) {
			t.Errorf("a second decision: got %v, want ErrNoDeviceGrant", err)
		}
		if _, err := st.DeviceGrantByUserCode(ctx, g.UserCode); !errors.Is(err, session.ErrNoDeviceGrant) {
			t.Errorf("by user code once decided: got %v, want ErrNoDeviceGrant", err)
		}
		if got, r := pollAfter(t, st, g); r != session.PollApproved || got.SessionID != "session-of-alice" || got.Email != "alice@example.com" {
			t.Fatalf("the poll after approval: got %+v, %v; want PollApproved with alice's session", got, r)
		}
		if _, r := pollAfter(t, st, g); r != session.PollAnswered {
			t.Errorf("the poll after that: got %v; want PollAnswered (single use)", r)
		}
	})
	t.Run("a poll sooner than the interval is told to slow down, and the interval grows", func(t *testing.T) {
		st := newStore(t)
		g := deviceGrant()
		must(t, st.PutDeviceGrant(ctx, g, max))
		if _, r := pollAfter(t, st, g); r != session.PollPending {
			t.Errorf("first poll: got %v, want PollPending", r)
		}
		got, r, err := st.PollDeviceGrant(ctx, g.DeviceCode, g.Audience)
		if err != nil || r != session.PollSlowDown || got.Interval != g.Interval+session.DeviceSlowDown {
			t.Errorf("at once again: got %v, %v, interval %v; want PollSlowDown and the interval 5 s longer", r, err, got.Interval)
		}
		must(t, st.DecideDeviceGrant(ctx, g.UserCode, true, "session-of-alice", "alice@example.com"))
		if _, r := pollAfter(t, st, g); r != session.PollSlowDown {
			t.Errorf("after the old interval: got %v, want PollSlowDown: the new one holds", r)
		}
	})
	t.Run("a denied device sign-in is denied once", func(t *testing.T) {
		st := newStore(t)
		g := deviceGrant()
		must(t, st.PutDeviceGrant(ctx, g, max))
		must(t, st.DecideDeviceGrant(ctx, g.UserCode, false, "", "alice@example.com"))
		if got, r := pollAfter(t, st, g); r != session.PollDenied || got.SessionID != "" {
			t.Errorf("got %v, session %q; want PollDenied and no session", r, got.SessionID)
		}
		if _, r := pollAfter(t, st, g); r != session.PollAnswered {
			t.Errorf("again: got %v, want PollAnswered", r)
		}
	})
	t.Run("an expired device sign-in can be neither approved nor redeemed", func(t *testing.T) {
		st := newStore(t)
		g := deviceGrant()
		g.ExpiresAt = g.CreatedAt.Add(300 * time.Millisecond)
		must(t, st.PutDeviceGrant(ctx, g, max))
		time.Sleep(400 * time.Millisecond)
		if _, err := st.DeviceGrantByUserCode(ctx, g.UserCode); !errors.Is(err, session.ErrNoDeviceGrant) {
			t.Errorf("by user code: got %v, want ErrNoDeviceGrant", err)
		}
		if err := st.DecideDeviceGrant(ctx, g.UserCode, true, "session-of-alice", "alice@example.com"); !errors.Is(err, session.ErrNoDeviceGrant) {
			t.Errorf("approve: got %v, want ErrNoDeviceGrant", err)
		}
		if _, r := pollAfter(t, st, g); r != session.PollExpired {
			t.Errorf("poll: got %v, want PollExpired", r)
		}
		// Its user code is free again.
		again := deviceGrant()
		again.UserCode = g.UserCode
		must(t, st.PutDeviceGrant(ctx, again, max))
	})
	t.Run("a device code is redeemed on its own route only, and unknown codes are unknown", func(t *testing.T) {
		st := newStore(t)
		g := deviceGrant()
		must(t, st.PutDeviceGrant(ctx, g, max))
		must(t, st.DecideDeviceGrant(ctx, g.UserCode, true, "session-of-alice", "alice@example.com"))
		if _, _, err := st.PollDeviceGrant(ctx, g.DeviceCode, "other.example.com"); !errors.Is(err, session.ErrNoDeviceGrant) {
			t.Errorf("on another route: got %v, want ErrNoDeviceGrant", err)
		}
		if _, _, err := st.PollDeviceGrant(ctx, session.NewDeviceCode(), g.Audience); !errors.Is(err, session.ErrNoDeviceGrant) {
			t.Errorf("an unknown device code: got %v, want ErrNoDeviceGrant", err)
		}
		if _, _, err := st.PollDeviceGrant(ctx, g.UserCode, g.Audience); !errors.Is(err, session.ErrNoDeviceGrant) {
			t.Errorf("the user code as a device code: got %v, want ErrNoDeviceGrant", err)
		}
		// None of that was a poll: the grant's own is neither too soon nor spent.
		if _, r, err := st.PollDeviceGrant(ctx, g.DeviceCode, g.Audience); err != nil || r != session.PollApproved {
			t.Errorf("its own client: got %v, %v; want PollApproved", r, err)
		}
	})
	t.Run("user codes are unique among unexpired device sign-ins", func(t *testing.T) {
		st := newStore(t)
		g, twin := deviceGrant(), deviceGrant()
		twin.UserCode = g.UserCode
		must(t, st.PutDeviceGrant(ctx, g, max))
		if err := st.PutDeviceGrant(ctx, twin, max); !errors.Is(err, session.ErrUserCodeTaken) {
			t.Errorf("got %v, want ErrUserCodeTaken", err)
		}
		if got, err := st.DeviceGrantByUserCode(ctx, g.UserCode); err != nil || got.Client != g.Client {
			t.Errorf("the first keeps its code: got %+v, %v", got, err)
		}
	})
	t.Run("pending device sign-ins are bounded; answered ones do not count", func(t *testing.T) {
		st := newStore(t)
		a, b, c := deviceGrant(), deviceGrant(), deviceGrant()
		must(t, st.PutDeviceGrant(ctx, a, 2))
		must(t, st.PutDeviceGrant(ctx, b, 2))
		if err := st.PutDeviceGrant(ctx, c, 2); !errors.Is(err, session.ErrTooManyPending) {
			t.Fatalf("past the bound: got %v, want ErrTooManyPending", err)
		}
		must(t, st.DecideDeviceGrant(ctx, a.UserCode, false, "", "alice@example.com"))
		if _, r := pollAfter(t, st, a); r != session.PollDenied {
			t.Fatalf("got %v, want PollDenied", r)
		}
		must(t, st.PutDeviceGrant(ctx, c, 2))
	})
	t.Run("a device sign-in's copies are its own", func(t *testing.T) {
		st := newStore(t)
		g := deviceGrant()
		must(t, st.PutDeviceGrant(ctx, g, max))
		g.Status, g.Client = session.DeviceApproved, "changed"
		got, err := st.DeviceGrantByUserCode(ctx, g.UserCode)
		if err != nil || got.Status != session.DevicePending || got.Client == "changed" {
			t.Fatalf("got %+v, %v; want the grant as put", got, err)
		}
		got.Status = session.DeviceApproved
		if _, r := pollAfter(t, st, g); r != session.PollPending {
			t.Errorf("got %v, want PollPending", r)
		}
	})
}

// runDeviceShared checks that replicas share device sign-ins: a client
// polling one replica sees the approval given through another.
func runDeviceShared(t *testing.T, newReplicas func(t *testing.T) (a, b session.Store)) {
	ctx := context.Background()
	t.Run("a device sign-in requested on one replica is approved on the other and redeemed on the first", func(t *testing.T) {
		a, b := newReplicas(t)
		g := deviceGrant()
		must(t, a.PutDeviceGrant(ctx, g, 100))
		if got, err := b.DeviceGrantByUserCode(ctx, g.UserCode); err != nil || got.Client != g.Client {
			t.Fatalf("b by user code: got %+v, %v", got, err)
		}
		must(t, b.DecideDeviceGrant(ctx, g.UserCode, true, "session-of-alice", "alice@example.com"))
		got, r, err := a.PollDeviceGrant(ctx, g.DeviceCode, g.Audience)
		if err != nil || r != session.PollApproved || got.SessionID != "session-of-alice" {
			t.Fatalf("a's poll: got %v, %v, %+v; want PollApproved", r, err, got)
		}
		time.Sleep(g.Interval + 20*time.Millisecond)
		if _, r, err := b.PollDeviceGrant(ctx, g.DeviceCode, g.Audience); err != nil || r != session.PollAnswered {
			t.Errorf("the same code on b: got %v, %v; want PollAnswered", r, err)
		}
	})
}

// deviceGrant is a new pending device sign-in with a short interval, so
// that tests can poll without waiting five seconds.
func deviceGrant() *session.DeviceGrant {
	now := time.Now().Truncate(time.Microsecond) // what databases keep
	return &session.DeviceGrant{
		DeviceCode: session.NewDeviceCode(), UserCode: session.NewUserCode(),
		Audience: "k8s.example.com", Client: "192.0.2.7", UserAgent: "portcullis-cli/test (linux/amd64)",
		CreatedAt: now, ExpiresAt: now.Add(session.DeviceLifetime), Interval: 100 * time.Millisecond,
	}
}
