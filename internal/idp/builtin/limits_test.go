package builtin

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPause(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{failures: 5, want: time.Second},
		{failures: 6, want: 2 * time.Second},
		{failures: 7, want: 4 * time.Second},
		{failures: 14, want: 512 * time.Second},
		{failures: 15, want: 15 * time.Minute},
		{failures: 1000, want: 15 * time.Minute},
	}
	for _, tt := range tests {
		if got := pause(tt.failures); got != tt.want {
			t.Errorf("pause(%d): got %v, want %v", tt.failures, got, tt.want)
		}
	}
}

// fail counts n wrong passwords for k from *now on, moving *now past each
// pause but the last.
func fail[K comparable](t *testing.T, b *backoff[K], now *time.Time, k K, n int) {
	t.Helper()
	for i := range n {
		if err := b.begin(*now, k); err != nil {
			t.Fatalf("check %d for %v: %v", i+1, k, err)
		}
		if d := b.end(*now, k, true); i < n-1 {
			*now = now.Add(d)
		}
	}
}

// pausedFor returns how long begin says k is paused, or 0 if it lets a
// check begin (and ends it, right).
func pausedFor[K comparable](b *backoff[K], now time.Time, k K) time.Duration {
	var p *pausedError
	if err := b.begin(now, k); errors.As(err, &p) {
		return p.wait
	} else if err != nil {
		return -1
	}
	b.end(now, k, false)
	return 0
}

func TestBackoff(t *testing.T) {
	t0 := time.Unix(1_000_000_000, 0)

	t.Run("pauses after the free failures, for longer each time", func(t *testing.T) {
		b := newBackoff[string](10)
		now := t0
		fail(t, b, &now, "k", freeFailures-1)
		if got := pausedFor(b, now, "k"); got != 0 {
			t.Fatalf("after %d failures: paused for %v, want no pause", freeFailures-1, got)
		}
		fail(t, b, &now, "k", 1)
		if got := pausedFor(b, now, "k"); got != time.Second {
			t.Fatalf("after %d failures: paused for %v, want 1s", freeFailures, got)
		}
		now = now.Add(time.Second)
		if got := pausedFor(b, now, "k"); got != 0 {
			t.Fatalf("after the pause: paused for %v, want no pause", got)
		}
		fail(t, b, &now, "k", 1)
		if got := pausedFor(b, now, "k"); got != 2*time.Second {
			t.Fatalf("after %d failures: paused for %v, want 2s", freeFailures+1, got)
		}
		if got := pausedFor(b, now, "other"); got != 0 {
			t.Errorf("another key: paused for %v, want no pause", got)
		}
	})
	t.Run("checks in flight count until they end", func(t *testing.T) {
		b := newBackoff[string](10)
		for i := range freeFailures {
			if err := b.begin(t0, "k"); err != nil {
				t.Fatalf("check %d at once: %v", i+1, err)
			}
		}
		if got := pausedFor(b, t0, "k"); got != firstPause {
			t.Fatalf("check %d at once: paused for %v, want %v", freeFailures+1, got, firstPause)
		}
		for range freeFailures {
			b.end(t0, "k", true)
		}
		now := t0.Add(time.Second)
		if err := b.begin(now, "k"); err != nil {
			t.Fatalf("first check past the free failures: %v", err)
		}
		if got := pausedFor(b, now, "k"); got != firstPause {
			t.Errorf("second check at once past the free failures: paused for %v, want %v", got, firstPause)
		}
	})
	t.Run("right passwords are not counted; clear forgets", func(t *testing.T) {
		b := newBackoff[string](10)
		now := t0
		fail(t, b, &now, "k", freeFailures-1)
		for range 10 {
			if got := pausedFor(b, t0, "k"); got != 0 {
				t.Fatalf("a check with the right password: paused for %v, want no pause", got)
			}
		}
		b.clear("k")
		fail(t, b, &now, "k", freeFailures-1)
		if got := pausedFor(b, now, "k"); got != 0 {
			t.Errorf("after clear and %d failures: paused for %v, want no pause", freeFailures-1, got)
		}
		b.clear("k")
		if len(b.entries) != 0 {
			t.Errorf("entries after clear: got %d, want 0", len(b.entries))
		}
	})
	t.Run("failures are forgotten an hour after the last", func(t *testing.T) {
		b := newBackoff[string](10)
		now := t0
		fail(t, b, &now, "k", 20)
		// Within the hour, a guesser who waited out the pause is back at
		// the longest one.
		now = now.Add(forgetFailures - time.Second)
		fail(t, b, &now, "k", 1)
		if got := pausedFor(b, now, "k"); got != maxPause {
			t.Fatalf("a failure within the hour: paused for %v, want %v", got, maxPause)
		}
		now = now.Add(forgetFailures)
		fail(t, b, &now, "k", freeFailures-1)
		if got := pausedFor(b, now, "k"); got != 0 {
			t.Errorf("%d failures an hour after the last: paused for %v, want no pause", freeFailures-1, got)
		}
	})
}

// TestBackoffBounded: an attacker rotating keys cannot grow the table, nor
// push out the count of the key they are guessing at.
func TestBackoffBounded(t *testing.T) {
	t0 := time.Unix(1_000_000_000, 0)
	b := newBackoff[int](3)
	now := t0
	fail(t, b, &now, 1, 20) // the account under attack
	fail(t, b, &now, 2, 1)
	then := now.Add(time.Minute)
	fail(t, b, &then, 3, 1)
	then = now.Add(2 * time.Minute)
	for k := 100; k < 1000; k++ { // an attacker's fresh emails
		fail(t, b, &then, k, 1)
	}
	if got := len(b.entries); got != 3 {
		t.Errorf("entries: got %d, want 3", got)
	}
	if got := pausedFor(b, then, 1); got <= 0 {
		t.Errorf("the key with the most failures was dropped: paused for %v, want a pause", got)
	}

	// Forgotten entries make room before any is pushed out.
	then = then.Add(forgetFailures)
	fail(t, b, &then, 5000, 1)
	if _, ok := b.entries[1]; ok {
		t.Error("a forgotten entry was kept while the table was full")
	}

	// When every entry has a check in flight, a new key is refused.
	b = newBackoff[int](2)
	for k := range 2 {
		if err := b.begin(t0, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.begin(t0, 2); !errors.Is(err, errHashBusy) {
		t.Errorf("a new key with every entry in flight: got %v, want %v", err, errHashBusy)
	}
}

// TestHashSlots: no more comparisons run at once than there are slots; a
// check that finds none within the wait is refused.
func TestHashSlots(t *testing.T) {
	const n = 3
	h := newHashSlots(n, 20*time.Millisecond)
	var running, most atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	started := make(chan struct{}, n)
	for range n {
		wg.Go(func() {
			err := h.run(context.Background(), func() {
				r := running.Add(1)
				for {
					m := most.Load()
					if r <= m || most.CompareAndSwap(m, r) {
						break
					}
				}
				started <- struct{}{}
				<-release
				running.Add(-1)
			})
			if err != nil {
				t.Errorf("run with a free slot: %v", err)
			}
		})
	}
	for range n {
		<-started
	}
	ran := false
	if err := h.run(context.Background(), func() { ran = true }); !errors.Is(err, errHashBusy) || ran {
		t.Errorf("run with every slot taken: got error %v, ran %v; want %v, not run", err, ran, errHashBusy)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.run(ctx, func() { ran = true }); !errors.Is(err, context.Canceled) || ran {
		t.Errorf("run for a request gone: got error %v, ran %v; want %v, not run", err, ran, context.Canceled)
	}
	close(release)
	wg.Wait()
	if got := most.Load(); got != n {
		t.Errorf("comparisons at once: got %d, want %d", got, n)
	}
	if err := h.run(context.Background(), func() { ran = true }); err != nil || !ran {
		t.Errorf("run after the slots freed: got error %v, ran %v; want nil, run", err, ran)
	}
}
