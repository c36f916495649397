// Package storetest is the conformance suite of session.Store: every
// store (memory, PostgreSQL) runs it, so that they keep one contract.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/session"
)

// Run checks the contract of session.Store on stores made by newStore,
// each empty, with the default cap of sessions per person
// (session.DefaultMaxPerPerson).
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	ctx := context.Background()
	t.Run("put then get gives a copy", func(t *testing.T) {
		st := newStore(t)
		s := sample("alice")
		must(t, st.Put(ctx, s))
		got, err := st.Get(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Email != s.Email || !slices.Equal(got.Groups, s.Groups) || got.IDPRefreshToken != s.IDPRefreshToken ||
			!slices.Equal(got.Claims["department"], s.Claims["department"]) || !got.ExpiresAt.Equal(s.ExpiresAt) || !got.IDPExpiry.Equal(s.IDPExpiry) {
			t.Errorf("got %+v, want %+v", got, s)
		}
		if fresh, err := st.Refetch(ctx, s.ID); err != nil || fresh.Email != s.Email {
			t.Errorf("Refetch: got %+v, %v", fresh, err)
		}
		// Neither the caller's nor the store's copy changes the other.
		got.Groups[0], got.Claims["department"][0] = "changed", "changed"
		s.Groups[0] = "changed too"
		again, err := st.Get(ctx, s.ID)
		if err != nil || again.Groups[0] != "dev" || again.Claims["department"][0] != "platform" {
			t.Errorf("after changing copies: got %+v, %v; want the stored session unchanged", again, err)
		}
	})
	t.Run("unknown and expired sessions are not there", func(t *testing.T) {
		st := newStore(t)
		if _, err := st.Get(ctx, session.NewSessionID()); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("unknown: got %v, want ErrNoSession", err)
		}
		s := sample("bob")
		s.ExpiresAt = time.Now().Add(-time.Second)
		must(t, st.Put(ctx, s))
		if _, err := st.Get(ctx, s.ID); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("expired: got %v, want ErrNoSession", err)
		}
	})
	t.Run("delete revokes", func(t *testing.T) {
		st := newStore(t)
		s, other := sample("carol"), sample("carol")
		must(t, st.Put(ctx, s))
		must(t, st.Put(ctx, other))
		must(t, st.Delete(ctx, s.ID))
		if _, err := st.Get(ctx, s.ID); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("after delete: got %v, want ErrNoSession", err)
		}
		if _, err := st.Refetch(ctx, s.ID); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Refetch after delete: got %v, want ErrNoSession", err)
		}
		if _, err := st.Get(ctx, other.ID); err != nil {
			t.Errorf("the person's other session: %v, want it live", err)
		}
		must(t, st.Delete(ctx, s.ID))                   // again: nothing to do
		must(t, st.Delete(ctx, session.NewSessionID())) // unknown: nothing to do
	})
	t.Run("put replaces", func(t *testing.T) {
		st := newStore(t)
		s := sample("dave")
		must(t, st.Put(ctx, s))
		s.Groups = []string{"ops"}
		must(t, st.Put(ctx, s))
		if got, err := st.Get(ctx, s.ID); err != nil || !slices.Equal(got.Groups, []string{"ops"}) {
			t.Errorf("after put again: got %+v, %v; want groups [ops]", got, err)
		}
	})
	t.Run("update replaces a live session only", func(t *testing.T) {
		st := newStore(t)
		s := sample("erin")
		must(t, st.Put(ctx, s))
		s.Groups, s.IDPRefreshToken = []string{"sre"}, "rotated-refresh-token"
		must(t, st.Update(ctx, s))
		if got, err := st.Get(ctx, s.ID); err != nil || !slices.Equal(got.Groups, []string{"sre"}) || got.IDPRefreshToken != "rotated-refresh-token" {
			t.Errorf("after update: got %+v, %v", got, err)
		}
		// A refresh that ends after a sign-out must not bring the session back.
		must(t, st.Delete(ctx, s.ID))
		if err := st.Update(ctx, s); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("update after delete: got %v, want ErrNoSession", err)
		}
		if _, err := st.Get(ctx, s.ID); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("get after update after delete: got %v, want ErrNoSession", err)
		}
		if err := st.Update(ctx, sample("erin")); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("update of an unknown session: got %v, want ErrNoSession", err)
		}
	})
	t.Run("a person's sessions are capped, the oldest ending", func(t *testing.T) {
		st := newStore(t)
		first := sample("frank")
		first.CreatedAt = time.Now().Add(-time.Hour)
		must(t, st.Put(ctx, first))
		bystander := sample("grace")
		must(t, st.Put(ctx, bystander))
		var last *session.Session
		for i := range session.DefaultMaxPerPerson {
			last = sample("frank")
			last.CreatedAt = time.Now().Add(time.Duration(i) * time.Millisecond)
			must(t, st.Put(ctx, last))
		}
		if _, err := st.Get(ctx, first.ID); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("the oldest session past the cap: got %v, want ErrNoSession", err)
		}
		for _, s := range []*session.Session{last, bystander} {
			if _, err := st.Get(ctx, s.ID); err != nil {
				t.Errorf("session of %s: %v, want live", s.Subject, err)
			}
		}
	})
	t.Run("a sign-in state is redeemed once", func(t *testing.T) {
		st := newStore(t)
		const ttl = 10 * time.Minute
		must(t, st.RedeemState(ctx, "state-1", ttl, 3))
		if err := st.RedeemState(ctx, "state-1", ttl, 3); !errors.Is(err, session.ErrStateUsed) {
			t.Errorf("replayed: got %v, want ErrStateUsed", err)
		}
		must(t, st.RedeemState(ctx, "state-2", ttl, 3))
		must(t, st.RedeemState(ctx, "state-3", ttl, 3))
		if err := st.RedeemState(ctx, "state-4", ttl, 3); !errors.Is(err, session.ErrTooManyPending) {
			t.Errorf("past the maximum: got %v, want ErrTooManyPending", err)
		}
	})
	t.Run("a lease has one holder at a time", func(t *testing.T) {
		st := newStore(t)
		name := "refresh " + session.NewSessionID()
		took := func(holder string, ttl time.Duration) bool {
			t.Helper()
			ok, err := st.TryLease(ctx, name, holder, ttl)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		const soon = time.Minute
		if !took("a", soon) || took("b", soon) || !took("a", soon) {
			t.Errorf("want a to take and keep the lease, b refused")
		}
		must(t, st.ReleaseLease(ctx, name, "b")) // not b's: nothing
		if took("b", soon) {
			t.Errorf("b took a's lease after releasing one it did not hold")
		}
		must(t, st.ReleaseLease(ctx, name, "a"))
		if !took("b", 300*time.Millisecond) {
			t.Errorf("b could not take the released lease")
		}
		// A holder that vanished loses the lease when it runs out.
		deadline := time.Now().Add(5 * time.Second)
		for !took("c", soon) {
			if time.Now().After(deadline) {
				t.Fatalf("c never took b's lease after it ran out")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

var n atomic.Int64

// sample is a new live session of subject, with everything set.
func sample(subject string) *session.Session {
	now := time.Now().Truncate(time.Microsecond) // what databases keep
	return &session.Session{
		ID: session.NewSessionID(), Subject: subject, Email: subject + "@example.com", Name: fmt.Sprintf("%s %d", subject, n.Add(1)),
		Groups:          []string{"dev", "oncall"},
		Claims:          map[string][]string{"department": {"platform"}},
		CreatedAt:       now,
		ExpiresAt:       now.Add(time.Hour),
		IDPRefreshToken: "refresh-token-of-" + subject,
		IDPIDToken:      "id-token-of-" + subject,
		IDPExpiry:       now.Add(5 * time.Minute),
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
