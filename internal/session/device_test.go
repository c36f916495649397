package session

import (
	"strings"
	"testing"
	"time"
)

func TestUserCode(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		c := NewUserCode()
		if len(c) != UserCodeLength || strings.Trim(c, userCodeAlphabet) != "" {
			t.Fatalf("NewUserCode: got %q, want %d letters of %s", c, UserCodeLength, userCodeAlphabet)
		}
		seen[c] = true
		if got, ok := NormalizeUserCode(FormatUserCode(c)); !ok || got != c {
			t.Fatalf("NormalizeUserCode(%q): got %q, %v", FormatUserCode(c), got, ok)
		}
	}
	if len(seen) < 1990 {
		t.Errorf("2000 user codes had only %d distinct", len(seen))
	}
	// Every letter of the alphabet turns up, none other.
	letters := map[rune]int{}
	for c := range seen {
		for _, r := range c {
			letters[r]++
		}
	}
	if len(letters) != len(userCodeAlphabet) {
		t.Errorf("letters used: %d, want %d", len(letters), len(userCodeAlphabet))
	}
	if got := FormatUserCode("BCDFGHJK"); got != "BCDF-GHJK" {
		t.Errorf("FormatUserCode: got %q", got)
	}
}

func TestNormalizeUserCode(t *testing.T) {
	tests := []struct {
		name, typed, want string
	}{
		{"as shown", "BCDF-GHJK", "BCDFGHJK"},
		{"lower case", "bcdf-ghjk", "BCDFGHJK"},
		{"no dash", "bcdfghjk", "BCDFGHJK"},
		{"spaces", " BCDF GHJK ", "BCDFGHJK"},
		{"a vowel", "BCDF-GHJA", ""},
		{"a digit", "BCDF-GHJ1", ""},
		{"too short", "BCDF-GHJ", ""},
		{"too long", "BCDF-GHJKL", ""},
		{"empty", "", ""},
		{"non-ASCII that upper-cases to a letter", "BCDF-GHJ\u017f", ""},
		{"long junk", strings.Repeat("-", 100) + "BCDFGHJK", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := NormalizeUserCode(tc.typed)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("got %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

func TestDeviceCodeEntropy(t *testing.T) {
	a, b := NewDeviceCode(), NewDeviceCode()
	// Two rand.Text of 26 base32 letters: 260 bits.
	if len(a) != 52 || a == b {
		t.Errorf("got %q and %q, want two distinct 52-letter codes", a, b)
	}
}

// TestDevicePoll is the state machine of one device sign-in, on a clock
// the test moves.
func TestDevicePoll(t *testing.T) {
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	fresh := func() *DeviceGrant {
		return &DeviceGrant{CreatedAt: start, ExpiresAt: start.Add(DeviceLifetime), Interval: DeviceInterval}
	}
	type step struct {
		at     time.Duration // after start
		decide string        // "approve", "deny" or "" (a poll)
		want   PollResult
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"pending, then approved once", []step{
			{at: 0, want: PollPending},
			{at: 5 * time.Second, want: PollPending},
			{at: 6 * time.Second, decide: "approve"},
			{at: 10 * time.Second, want: PollApproved},
			{at: 15 * time.Second, want: PollAnswered},
			{at: time.Hour, want: PollAnswered},
		}},
		{"denied once", []step{
			{at: 0, decide: "deny"},
			{at: 1 * time.Second, want: PollDenied},
			{at: 7 * time.Second, want: PollAnswered},
		}},
		{"a poll within the leeway is not too soon", []step{
			{at: 0, want: PollPending},
			{at: 4*time.Second + 100*time.Millisecond, want: PollPending},
		}},
		{"too soon slows down for good", []step{
			{at: 0, want: PollPending},
			{at: 2 * time.Second, want: PollSlowDown}, // interval now 10 s
			{at: 7 * time.Second, want: PollSlowDown}, // 5 s after the last: too soon for 10; now 15 s
			{at: 22 * time.Second, want: PollPending}, // 15 s after
			{at: 22*time.Second + time.Millisecond, decide: "approve"},
			{at: 37 * time.Second, want: PollApproved},
		}},
		{"expired: neither decided nor redeemed", []step{
			{at: 0, want: PollPending},
			{at: DeviceLifetime, decide: "approve"},
			{at: DeviceLifetime, want: PollExpired},
			{at: 2 * DeviceLifetime, want: PollExpired},
		}},
		{"approved, but polled only after it expired", []step{
			{at: time.Minute, decide: "approve"},
			{at: DeviceLifetime + time.Second, want: PollExpired},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := fresh()
			for i, s := range tc.steps {
				now := start.Add(s.at)
				switch s.decide {
				case "approve", "deny":
					err := g.Decide(now, s.decide == "approve", "sid", "alice@example.com")
					if pending := now.Before(g.ExpiresAt); (err == nil) != pending {
						t.Fatalf("step %d: Decide: got %v at %v", i, err, s.at)
					}
				default:
					if got := g.Poll(now); got != s.want {
						t.Fatalf("step %d (at %v): got %v, want %v", i, s.at, got, s.want)
					}
				}
			}
		})
	}
	t.Run("the interval stops growing at a minute", func(t *testing.T) {
		g := fresh()
		for i := range 30 {
			g.Poll(start.Add(time.Duration(i) * time.Millisecond))
		}
		if g.Interval != DeviceMaxInterval {
			t.Errorf("got %v, want %v", g.Interval, DeviceMaxInterval)
		}
	})
	t.Run("a decided grant is decided for good", func(t *testing.T) {
		g := fresh()
		if err := g.Decide(start, false, "", "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := g.Decide(start, true, "sid", "mallory@example.com"); err != ErrNoDeviceGrant || g.Status != DeviceDenied || g.SessionID != "" {
			t.Errorf("got %v, status %v, session %q; want ErrNoDeviceGrant and still denied", err, g.Status, g.SessionID)
		}
	})
}
