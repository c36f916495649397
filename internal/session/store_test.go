package session

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestMemoryStorePerPersonCap signs one person in again and again: the
// store keeps their newest MaxPerPerson sessions and ends the oldest,
// refreshes end nothing, and another person's sessions are untouched.
func TestMemoryStorePerPersonCap(t *testing.T) {
	m := NewMemoryStore()
	m.MaxPerPerson = 3
	now := time.Unix(1_800_000_000, 0)
	m.Now = func() time.Time { return now }
	ctx := t.Context()
	put := func(subject string, i int) *Session {
		t.Helper()
		s := &Session{ID: fmt.Sprintf("%s-%d", subject, i), Subject: subject,
			CreatedAt: now.Add(time.Duration(i) * time.Second), ExpiresAt: now.Add(time.Hour)}
		if err := m.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	live := func(id string) bool {
		_, err := m.Get(ctx, id)
		if err != nil && !errors.Is(err, ErrNoSession) {
			t.Fatal(err)
		}
		return err == nil
	}
	other := put("bob", 0)
	var first *Session
	for i := range 1000 {
		s := put("alice", i)
		if i == 0 {
			first = s
		}
	}
	for i := range 1000 {
		if want := i >= 997; live(fmt.Sprintf("alice-%d", i)) != want {
			t.Errorf("alice-%d live: got %v, want %v", i, !want, want)
		}
	}
	if !live(other.ID) {
		t.Error("another person's session was ended")
	}
	if len(m.sessions) != 4 || len(m.bySubject["alice"]) != 3 {
		t.Errorf("store holds %d sessions, %d of alice's; want 4 and 3", len(m.sessions), len(m.bySubject["alice"]))
	}
	// A refresh of a kept session (Put with its ID) ends none.
	refreshed := &Session{ID: "alice-997", Subject: "alice", CreatedAt: first.CreatedAt, ExpiresAt: now.Add(2 * time.Hour)}
	if err := m.Put(ctx, refreshed); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"alice-997", "alice-998", "alice-999"} {
		if !live(id) {
			t.Errorf("%s ended by a refresh", id)
		}
	}
	// Deleting frees a place: the next sign-in ends nothing.
	m.Delete(ctx, "alice-998")
	put("alice", 2000)
	for _, id := range []string{"alice-997", "alice-999", "alice-2000"} {
		if !live(id) {
			t.Errorf("%s ended after a sign-out freed a place", id)
		}
	}
	// Expired sessions leave the index when swept.
	now = now.Add(3 * time.Hour)
	for i := range 64 {
		put("carol", 5000+i)
	}
	if _, ok := m.bySubject["alice"]; ok {
		t.Errorf("expired sessions are still indexed: %v", m.bySubject["alice"])
	}
}

// TestRedeemStateForgetsExpired: used states are dropped once their state
// has expired, but not swept on every call (which cost quadratic time
// under a flood of callbacks).
func TestRedeemStateForgetsExpired(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryStore()
	now := time.Now()
	m.Now = func() time.Time { return now }
	for i := range 100 {
		if m.RedeemState(ctx, fmt.Sprint("csrf-", i), 10*time.Minute, 1000) != nil {
			t.Fatalf("fresh state %d refused", i)
		}
	}
	if err := m.RedeemState(ctx, "csrf-7", 10*time.Minute, 1000); !errors.Is(err, ErrStateUsed) {
		t.Errorf("a used state redeemed twice: got %v, want ErrStateUsed", err)
	}
	now = now.Add(10*time.Minute + time.Second)
	if err := m.RedeemState(ctx, "csrf-7", 10*time.Minute, 1000); err != nil {
		t.Errorf("a used state whose time is over was not forgotten: %v", err)
	}
	if n := len(m.states); n != 1 {
		t.Errorf("got %d used states after a sweep, want 1", n)
	}
}

// BenchmarkRedeemState: redeeming a state costs the same however many
// sign-ins are remembered (it used to sweep them all every time).
func BenchmarkRedeemState(b *testing.B) {
	ctx := context.Background()
	m := NewMemoryStore()
	for i := range 100_000 {
		m.RedeemState(ctx, fmt.Sprint("old-", i), 10*time.Minute, 1<<30)
	}
	b.ResetTimer()
	for i := range b.N {
		m.RedeemState(ctx, fmt.Sprint("new-", i), 10*time.Minute, 1<<30)
	}
}
