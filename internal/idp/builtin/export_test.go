package builtin

import "time"

// What the external tests (package builtin_test) may reach of a Provider.

// SetClock makes p read the time from now instead of time.Now: for the
// lives of sign-ins and tokens and for the pauses after wrong passwords,
// so that a test moves time on rather than waiting. now is called from
// the handlers' goroutines. Call SetClock before p serves.
func SetClock(p *Provider, now func() time.Time) { p.store.now = now }

// HoldHashing takes every password-hashing slot of p, as a flood of login
// posts would, and returns how many there are and a function that gives
// them back.
func HoldHashing(p *Provider) (slots int, release func()) {
	n := cap(p.hashing.slots)
	for range n {
		p.hashing.slots <- struct{}{}
	}
	return n, func() {
		for range n {
			<-p.hashing.slots
		}
	}
}

// The limits, for tests that reach them.
const (
	MaxAuthRequests   = maxAuthRequests
	MaxSignInsPerAddr = maxSignInsPerAddr
	UnboundTTL        = unboundTTL
	AuthRequestTTL    = authRequestTTL
	FreeFailures      = freeFailures
)
