// Package storetest is the conformance suite of session.Store: every
// store (memory, PostgreSQL) runs Run, so that they keep one contract, and
// a store that replicas share (PostgreSQL) runs RunShared too.
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
	runDevice(t, newStore)
	t.Run("a renewal generation is spent once; its chain is the session's", func(t *testing.T) {
		st := newStore(t)
		s := sample("alice")
		must(t, st.Put(ctx, s))
		must(t, st.RotateRenewal(ctx, s.ID, "chain-a", 0))
		must(t, st.RotateRenewal(ctx, s.ID, "chain-a", 1))
		for _, gen := range []uint64{0, 1, 3} {
			if err := st.RotateRenewal(ctx, s.ID, "chain-a", gen); !errors.Is(err, session.ErrRenewalReused) {
				t.Errorf("generation %d of a chain at 2: got %v, want ErrRenewalReused", gen, err)
			}
		}
		// Another chain of the same session (a second device) is its own.
		must(t, st.RotateRenewal(ctx, s.ID, "chain-b", 0))
		// A refresh writes the session from an older copy: the chain
		// stays where it is.
		must(t, st.Update(ctx, s))
		if err := st.RotateRenewal(ctx, s.ID, "chain-a", 1); !errors.Is(err, session.ErrRenewalReused) {
			t.Errorf("after an Update, generation 1 again: got %v, want ErrRenewalReused", err)
		}
		must(t, st.RotateRenewal(ctx, s.ID, "chain-a", 2))
		// The same chain name in another session is another chain.
		other := sample("alice")
		must(t, st.Put(ctx, other))
		must(t, st.RotateRenewal(ctx, other.ID, "chain-a", 0))
		must(t, st.Delete(ctx, s.ID))
		if err := st.RotateRenewal(ctx, s.ID, "chain-a", 3); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("after sign-out: got %v, want ErrNoSession", err)
		}
		if err := st.RotateRenewal(ctx, "no-such-session", "chain-a", 0); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("unknown session: got %v, want ErrNoSession", err)
		}
	})
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
	t.Run("view gives the live session, and an update replaces it", func(t *testing.T) {
		st := newStore(t)
		s := sample("alice")
		must(t, st.Put(ctx, s))
		v, err := st.View(ctx, s.ID)
		if err != nil || v.Email != s.Email || !slices.Equal(v.Groups, s.Groups) ||
			!slices.Equal(v.Claims["department"], s.Claims["department"]) || !v.ExpiresAt.Equal(s.ExpiresAt) {
			t.Fatalf("View: got %+v, %v; want %+v", v, err, s)
		}
		// What a viewer holds is never changed under it: an update
		// replaces the session, and the next View sees the new one.
		u := s.Clone()
		u.Groups = []string{"ops"}
		must(t, st.Update(ctx, u))
		if v.Groups[0] != "dev" {
			t.Errorf("the viewed session's groups became %q after an update; want them as viewed", v.Groups)
		}
		if v2, err := st.View(ctx, s.ID); err != nil || !slices.Equal(v2.Groups, []string{"ops"}) {
			t.Errorf("View after the update: got %+v, %v; want groups [ops]", v2, err)
		}
		if _, err := st.View(ctx, session.NewSessionID()); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("View of an unknown session: got %v, want ErrNoSession", err)
		}
		must(t, st.Delete(ctx, s.ID))
		if _, err := st.View(ctx, s.ID); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("View after Delete: got %v, want ErrNoSession", err)
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
	t.Run("delete user ends one person's sessions, whatever the case of their email", func(t *testing.T) {
		st := newStore(t)
		alice, shouting := sample("alice"), sample("alice")
		shouting.Email = "Alice@Example.COM"
		expired := sample("alice")
		expired.ExpiresAt = time.Now().Add(-time.Second)
		bob := sample("bob")
		// Addresses that look like alice's and are someone else's, and a
		// session without an email.
		lookAlikes := []*session.Session{sample("malice"), sample("alice"), sample("alice"), sample("noemail")}
		lookAlikes[1].Email = "alice@example.com.evil.example"
		lookAlikes[2].Email = "alice@example.co"
		lookAlikes[3].Email = ""
		for _, s := range append([]*session.Session{alice, shouting, expired, bob}, lookAlikes...) {
			must(t, st.Put(ctx, s))
		}
		n, err := st.DeleteUser(ctx, "aLiCe@example.com")
		if err != nil || n != 2 {
			t.Errorf("DeleteUser: got %d, %v; want 2 (the expired session is not counted)", n, err)
		}
		for _, s := range []*session.Session{alice, shouting, expired} {
			if _, err := st.Get(ctx, s.ID); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Get of a session of %q: got %v, want ErrNoSession", s.Email, err)
			}
			if _, err := st.Refetch(ctx, s.ID); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Refetch of a session of %q: got %v, want ErrNoSession", s.Email, err)
			}
		}
		for _, s := range append([]*session.Session{bob}, lookAlikes...) {
			if _, err := st.Get(ctx, s.ID); err != nil {
				t.Errorf("Get of a session of %q: %v, want it live", s.Email, err)
			}
		}
		if n, err := st.DeleteUser(ctx, alice.Email); err != nil || n != 0 {
			t.Errorf("DeleteUser again: got %d, %v; want 0", n, err)
		}
		// The person signs in again, after the administrator ended their
		// sessions: that one is theirs, and is found next time.
		again := sample("alice")
		must(t, st.Put(ctx, again))
		if _, err := st.Get(ctx, again.ID); err != nil {
			t.Errorf("a sign-in after DeleteUser: %v, want it live", err)
		}
		if n, err := st.DeleteUser(ctx, alice.Email); err != nil || n != 1 {
			t.Errorf("DeleteUser after a new sign-in: got %d, %v; want 1", n, err)
		}
		// An empty email names no one: not every session without one.
		if n, err := st.DeleteUser(ctx, ""); !errors.Is(err, session.ErrNoEmail) || n != 0 {
			t.Errorf("DeleteUser of an empty email: got %d, %v; want 0, ErrNoEmail", n, err)
		}
		if _, err := st.Get(ctx, lookAlikes[3].ID); err != nil {
			t.Errorf("a session without an email after DeleteUser(\"\"): %v, want it live", err)
		}
	})
	t.Run("delete user compares ASCII letters only", func(t *testing.T) {
		st := newStore(t)
		// The Kelvin sign lower-cases (and case-folds) to k, but names
		// another mailbox: kim must not end its owner's sessions.
		kim, kelvin := sample("kim"), sample("kelvin")
		kelvin.Email = "\u212aim@example.com"
		must(t, st.Put(ctx, kim))
		must(t, st.Put(ctx, kelvin))
		if n, err := st.DeleteUser(ctx, "KIM@example.com"); err != nil || n != 1 {
			t.Errorf("DeleteUser: got %d, %v; want 1", n, err)
		}
		if _, err := st.Get(ctx, kelvin.ID); err != nil {
			t.Errorf("the session of %q: %v, want it live", kelvin.Email, err)
		}
	})
	t.Run("delete user, then an update does not bring a session back", func(t *testing.T) {
		st := newStore(t)
		s := sample("grace")
		must(t, st.Put(ctx, s))
		if n, err := st.DeleteUser(ctx, s.Email); err != nil || n != 1 {
			t.Fatalf("DeleteUser: got %d, %v; want 1", n, err)
		}
		if err := st.Update(ctx, s); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Update after DeleteUser: got %v, want ErrNoSession", err)
		}
	})
	t.Run("an update that changes the email is what delete user finds", func(t *testing.T) {
		st := newStore(t)
		s := sample("heidi")
		must(t, st.Put(ctx, s))
		// The identity provider renamed the person; a refresh saw it.
		oldEmail := s.Email
		s.Email = "heidi.new@example.com"
		must(t, st.Update(ctx, s))
		if n, err := st.DeleteUser(ctx, oldEmail); err != nil || n != 0 {
			t.Errorf("DeleteUser of the old email: got %d, %v; want 0", n, err)
		}
		if n, err := st.DeleteUser(ctx, "Heidi.New@example.com"); err != nil || n != 1 {
			t.Errorf("DeleteUser of the new email: got %d, %v; want 1", n, err)
		}
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

// prompt is how soon a change on one replica must reach another that
// shares its store: a notification's time, on a loaded machine.
const prompt = time.Second

// RunShared checks the contract between replicas that share a store, on
// pairs made by newReplicas: two stores on one empty database, as two
// replicas open it. Each must learn the other's changes by notification,
// within a second, not at a periodic reconcile: newReplicas sets that far
// away, so that what passes here is prompt in production too.
func RunShared(t *testing.T, newReplicas func(t *testing.T) (a, b session.Store)) {
	ctx := context.Background()
	runDeviceShared(t, newReplicas)
	t.Run("a renewal generation spent on one replica is spent on the other", func(t *testing.T) {
		a, b := newReplicas(t)
		s := sample("alice")
		must(t, a.Put(ctx, s))
		must(t, a.RotateRenewal(ctx, s.ID, "chain", 0))
		if err := b.RotateRenewal(ctx, s.ID, "chain", 0); !errors.Is(err, session.ErrRenewalReused) {
			t.Errorf("b, generation 0 that a spent: got %v, want ErrRenewalReused", err)
		}
		must(t, b.RotateRenewal(ctx, s.ID, "chain", 1))
	})
	t.Run("delete user on one replica ends the person's sessions on the other", func(t *testing.T) {
		a, b := newReplicas(t)
		onA, onB, bob := sample("alice"), sample("alice"), sample("bob")
		must(t, a.Put(ctx, onA))
		must(t, b.Put(ctx, onB))
		must(t, a.Put(ctx, bob))
		for _, s := range []*session.Session{onA, onB, bob} {
			if _, err := b.Get(ctx, s.ID); err != nil { // b holds it now
				t.Fatal(err)
			}
		}
		if n, err := a.DeleteUser(ctx, "Alice@Example.com"); err != nil || n != 2 {
			t.Errorf("a.DeleteUser: got %d, %v; want 2, one session signed in through each replica", n, err)
		}
		for _, s := range []*session.Session{onA, onB} {
			RefusedWithin(t, b, s.ID, prompt, "b refuses alice's session a ended")
		}
		if _, err := b.Get(ctx, bob.ID); err != nil {
			t.Errorf("b.Get of bob's session: %v, want it live", err)
		}
		if n, err := b.DeleteUser(ctx, onA.Email); err != nil || n != 0 {
			t.Errorf("b.DeleteUser after a's: got %d, %v; want 0", n, err)
		}
	})
}

// RefusedWithin waits until st refuses session id (ErrNoSession), failing
// the test if it still serves it after within: a revocation reaching a
// replica.
func RefusedWithin(t testing.TB, st session.Store, id string, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, err := st.Get(context.Background(), id)
		if errors.Is(err, session.ErrNoSession) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: Get: got %v, want ErrNoSession", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
