package builtin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/identity"
)

// The limits that keep one client from locking others out or guessing
// passwords. Without them, ten thousand anonymous authorize calls (about a
// second's work) filled the table of sign-ins in progress for ten minutes,
// and guessing from ever new sign-in requests dodged the per-request
// failure limit.
const (
	// maxSignInsPerAddr is how many sign-in requests one client address may
	// have in progress (waiting for a login, or signed in and waiting for
	// the code exchange). A person needs one; an office behind one NAT a
	// few. It is far below maxAuthRequests: one address cannot fill the
	// table, it would take over three hundred.
	maxSignInsPerAddr = 32

	// freeFailures wrong passwords for one email, or from one client
	// address, are allowed at their own pace; after that each further check
	// waits firstPause, doubling with every failure up to maxPause. Across
	// sign-in requests, unlike maxLoginFailures.
	freeFailures = 5
	firstPause   = time.Second
	maxPause     = 15 * time.Minute
	// forgetFailures after its last failure, a count is dropped. It is
	// longer than maxPause, so that a guesser who waits out the pause comes
	// back to the longest pause, not to freeFailures free guesses.
	forgetFailures = time.Hour
	// maxFailureKeys bounds each failure table (emails, client addresses),
	// so that an attacker rotating emails cannot grow it without end.
	maxFailureKeys = 10_000

	// hashWait is how long a password check waits for a hashing slot
	// before it is refused: long enough to ride out a burst of real
	// sign-ins, short enough that a person is not left staring at a
	// spinning page.
	hashWait = time.Second
)

var (
	errTooManySignIns = errors.New("too many sign-ins in progress from this client address")
	errSignInsFull    = errors.New("too many sign-ins in progress")
	errHashBusy       = errors.New("too many password checks at once")
)

// pausedError refuses a password check while its email or its client
// address is paused after too many wrong passwords.
type pausedError struct {
	wait time.Duration // until the pause ends
}

func (e *pausedError) Error() string {
	return fmt.Sprintf("too many wrong passwords: paused for %v", e.wait)
}

// accountKey is what failures for an email are counted under: the email as
// the users file compares it (lowerASCII), hashed so that an entry's size
// does not depend on what was typed. Every email is counted, a user's or
// not, so that a pause does not tell a known email from an unknown one.
func accountKey(email string) [32]byte {
	return sha256.Sum256([]byte(identity.EmailKey(email)))
}

// backoff counts wrong passwords per key (an email, a client address) and
// pauses a key after freeFailures of them, for a time that doubles with
// every further one (pause). It holds at most max keys: a key with no
// failures and no check in flight is not kept, one whose failures are
// forgotten is dropped when room is needed, and when it is full the key
// whose loss forgets the least is dropped (roomLocked).
type backoff[K comparable] struct {
	max int

	mu      sync.Mutex
	entries map[K]*strikes
}

// strikes is one key's count.
type strikes struct {
	failures int       // wrong passwords not yet forgotten
	inFlight int       // checks begun and not yet ended
	until    time.Time // no check begins before this
	forget   time.Time // failures are dropped at this time
}

func newBackoff[K comparable](max int) *backoff[K] {
	return &backoff[K]{max: max, entries: map[K]*strikes{}}
}

// forgotten reports whether e may be dropped: no check in flight, and its
// failures forgotten.
func (e *strikes) forgotten(now time.Time) bool {
	return e.inFlight == 0 && !now.Before(e.forget)
}

// begin asks whether a password check may begin for k. If it returns nil,
// the caller must call end once the check is over.
func (b *backoff[K]) begin(now time.Time, k K) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[k]
	switch {
	case e == nil:
		if !b.roomLocked(now) {
			return errHashBusy // every entry has a check in flight
		}
		e = &strikes{}
		b.entries[k] = e
	case e.forgotten(now):
		*e = strikes{}
	}
	if wait := e.until.Sub(now); wait > 0 {
		return &pausedError{wait: wait}
	}
	// A check in flight counts as a failure until it ends, so that guesses
	// sent all at once cannot all begin before the first is counted: while
	// free failures are left, as many may run together as are left; past
	// them, one at a time.
	if e.failures+e.inFlight >= max(freeFailures, e.failures+1) {
		return &pausedError{wait: firstPause}
	}
	e.inFlight++
	return nil
}

// end ends a check that begin let begin; wrong says the password was
// wrong. It returns the pause that failure started, if it started one.
func (b *backoff[K]) end(now time.Time, k K, wrong bool) (paused time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[k]
	if e == nil {
		return 0 // cannot happen: an entry with a check in flight is kept
	}
	e.inFlight--
	if wrong {
		e.failures++
		e.forget = now.Add(forgetFailures)
		if e.failures >= freeFailures {
			paused = pause(e.failures)
			e.until = now.Add(paused)
		}
	}
	if e.failures == 0 && e.inFlight == 0 {
		delete(b.entries, k)
	}
	return paused
}

// clear forgets k's failures: the right password for an account. Not for
// a client address, whose count an attacker could otherwise clear by
// signing in to an account of their own between guesses.
func (b *backoff[K]) clear(k K) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[k]
	if e == nil {
		return
	}
	e.failures, e.until, e.forget = 0, time.Time{}, time.Time{}
	if e.inFlight == 0 {
		delete(b.entries, k)
	}
}

// roomLocked reports whether a new key fits, making room when the table is
// full: first by dropping forgotten entries, then the one entry whose loss
// forgets the least (the fewest failures, and of those the one nearest to
// being forgotten anyway). So an attacker who fills the table with fresh
// emails pushes out other single failures, not the long count of the
// account they are guessing at. Entries with a check in flight stay.
func (b *backoff[K]) roomLocked(now time.Time) bool {
	if len(b.entries) < b.max {
		return true
	}
	var (
		victim K
		least  *strikes
	)
	for k, e := range b.entries {
		switch {
		case e.forgotten(now):
			delete(b.entries, k)
		case e.inFlight > 0:
		case least == nil || e.failures < least.failures || e.failures == least.failures && e.forget.Before(least.forget):
			victim, least = k, e
		}
	}
	if len(b.entries) < b.max {
		return true
	}
	if least == nil {
		return false
	}
	delete(b.entries, victim)
	return true
}

// pause is how long a key waits after its n-th wrong password, n at least
// freeFailures: firstPause, doubled for each failure past freeFailures, at
// most maxPause.
func pause(n int) time.Duration {
	d := firstPause
	for i := freeFailures; i < n && d < maxPause; i++ {
		d *= 2
	}
	return min(d, maxPause)
}

// hashSlots bounds how many bcrypt comparisons run at once: each takes a
// CPU for tens of milliseconds, by design, so a flood of login posts
// could otherwise take every CPU the process has.
type hashSlots struct {
	slots chan struct{}
	wait  time.Duration
}

// hashSlotCount is how many bcrypt comparisons may run at once with procs
// CPUs (GOMAXPROCS): half of them, at least one, so that a flood of login
// posts leaves the other half to the proxy, which is Portcullis's job.
// More would only queue inside the scheduler.
func hashSlotCount(procs int) int { return max(procs/2, 1) }

func newHashSlots(n int, wait time.Duration) *hashSlots {
	return &hashSlots{slots: make(chan struct{}, max(n, 1)), wait: wait}
}

// run runs f in a slot. It returns errHashBusy, without running f, if no
// slot frees up within the wait, and ctx's error if ctx ends first.
func (h *hashSlots) run(ctx context.Context, f func()) error {
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
	case <-t.C:
		return errHashBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-h.slots }()
	f()
	return nil
}
