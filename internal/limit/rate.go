package limit

import (
	"net/netip"
	"sync"
	"time"
)

// Rate allows each client perMinute events a minute, and as many at once:
// a token bucket per client holding perMinute tokens, refilled at
// perMinute a minute. A person signing in uses a few; a client that sends
// thousands gets the same few and is refused the rest.
//
// It remembers at most maxClients clients, so that an attacker with many
// addresses cannot grow it without end. A client whose bucket has filled
// up again is the same as one never seen and is dropped first; when every
// remembered client is still in debt, the one nearest to being forgiven
// is dropped (of a sample), which is the least an attacker gains by it.
type Rate struct {
	interval   time.Duration // time to earn one token back
	burst      float64
	maxClients int

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	nextSweep time.Time
}

type bucket struct {
	tokens float64   // at time at
	at     time.Time // when tokens was last brought up to date
}

// DefaultMaxClients is how many clients a Rate remembers unless told
// otherwise: each costs about a hundred bytes.
const DefaultMaxClients = 100_000

// evictSample is how many remembered clients a full Rate looks at to
// choose one to drop: enough to find one nearly forgiven, few enough to
// keep a refusal cheap under a flood from many addresses.
const evictSample = 32

// NewRate returns a Rate of perMinute events a minute per client (at least
// one), remembering at most maxClients clients (DefaultMaxClients if not
// positive).
func NewRate(perMinute, maxClients int) *Rate {
	perMinute = max(perMinute, 1)
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	return &Rate{
		interval:   time.Minute / time.Duration(perMinute),
		burst:      float64(perMinute),
		maxClients: maxClients,
		buckets:    make(map[netip.Addr]*bucket),
	}
}

// Allow takes one event for client c at now. When it refuses, wait says
// how long until c is allowed one again (for a Retry-After header).
func (r *Rate) Allow(c netip.Addr, now time.Time) (ok bool, wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[c]
	if b == nil {
		r.makeRoomLocked(now)
		b = &bucket{tokens: r.burst, at: now}
		r.buckets[c] = b
	}
	r.refill(b, now)
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) * float64(r.interval))
	}
	b.tokens--
	return true, 0
}

// refill brings b up to date at now.
func (r *Rate) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(r.burst, b.tokens+float64(d)/float64(r.interval))
		b.at = now
	}
}

// makeRoomLocked makes room for one more client when the table is full:
// first by dropping every client whose bucket is full again (at most once
// a second, as it walks the whole table), then, if none was, the most
// nearly full of a sample.
func (r *Rate) makeRoomLocked(now time.Time) {
	if len(r.buckets) < r.maxClients {
		return
	}
	if !now.Before(r.nextSweep) {
		r.nextSweep = now.Add(time.Second)
		for c, b := range r.buckets {
			if r.refill(b, now); b.tokens >= r.burst {
				delete(r.buckets, c)
			}
		}
		if len(r.buckets) < r.maxClients {
			return
		}
	}
	var (
		victim netip.Addr
		most   = -1.0
		n      = 0
	)
	for c, b := range r.buckets { // map order is random: a sample
		if r.refill(b, now); b.tokens > most {
			victim, most = c, b.tokens
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(r.buckets, victim)
}

// Len reports how many clients r remembers.
//
//deadcode:testonly tests check here that the table stays bounded
func (r *Rate) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}
