package session

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// DefaultVerifyCacheSize is the number of verified tokens a VerifyCache
// holds when NewVerifyCache is given no size: a token per signed-in person
// and route, for a few thousand people, in a few megabytes.
const DefaultVerifyCacheSize = 10_000

// verifyCacheShards is the most shards a VerifyCache is split into, so
// that concurrent requests seldom wait for the same lock. A power of two.
const verifyCacheShards = 16

// VerifyCache is Keys.Verify with a memory of the tokens it accepted, so
// that a kubectl session, which sends the same token with every request,
// pays for one signature verification (ECDSA P-256: 100 to 400 µs) instead
// of one per request.
//
// What is remembered is the outcome of the checks that do not depend on
// the time or the route: the token is well formed, signed by this Keys with
// its algorithm and key ID, and names this issuer. The checks that do
// depend on them run on every call, hit or miss, with the same rules and
// Leeway as Verify: "exp" not passed, "nbf" and "iat" not in the future,
// "aud" equal to the audience asked for. When a remembered token fails one
// of them, Verify itself runs, so the error is exactly Verify's.
//
// Failures are never remembered: garbage costs what Verify makes it cost
// (little, see Verify) and cannot push valid tokens out. Only a token this
// Keys signed can take a place, so the cache is filled by signed-in users,
// not by whoever sends requests.
//
// Entries are keyed by the SHA-256 of the token, so the cache holds no
// usable credential and two tokens share an entry only if SHA-256
// collides. It holds at most its size in entries and evicts with the CLOCK
// algorithm (an approximation of least-recently-used whose hits take only
// a read lock). It is safe for concurrent use; a hit does not allocate.
//
// A token stays valid until it expires whether it is cached or not: Verify
// is stateless. A future revocation list must be checked after the cache.
type VerifyCache struct {
	keys   *Keys
	mask   uint8 // len(shards)-1
	shards []verifyShard
}

// tokenHash is the key of a cached token: its SHA-256.
type tokenHash [sha256.Size]byte

// verifyShard is a part of a VerifyCache with its own lock: a fixed array
// of slots, an index into it, and the CLOCK hand.
type verifyShard struct {
	mu    sync.RWMutex
	index map[tokenHash]int32 // token hash → slot; guarded by mu
	slots []verifySlot        // fixed length: the shard's capacity
	n     int                 // slots in use, [0, len(slots)]; guarded by mu
	hand  int                 // next slot the CLOCK looks at; guarded by mu
	// hits and misses count lookups, for the hit rate operators watch
	// (Stats); per shard, so that counting adds no cache line shared by
	// every request.
	hits, misses atomic.Uint64
	_            [64]byte // keep shards' locks on separate cache lines
}

type verifySlot struct {
	key    tokenHash
	claims *Claims // never modified once stored
	// used is the CLOCK reference bit: set by hits, which hold only the
	// read lock (hence atomic), and cleared by the hand, which holds the
	// write lock.
	used atomic.Bool
}

// NewVerifyCache returns a cache in front of keys.Verify holding at most
// size verified tokens; size <= 0 means DefaultVerifyCacheSize.
func NewVerifyCache(keys *Keys, size int) *VerifyCache {
	if keys == nil {
		panic("session: NewVerifyCache: nil Keys")
	}
	if size <= 0 {
		size = DefaultVerifyCacheSize
	}
	n := verifyCacheShards
	for n > 1 && n > size {
		n /= 2
	}
	c := &VerifyCache{keys: keys, mask: uint8(n - 1), shards: make([]verifyShard, n)}
	for i := range c.shards {
		capacity := size / n
		if i < size%n {
			capacity++
		}
		c.shards[i].index = make(map[tokenHash]int32, capacity)
		c.shards[i].slots = make([]verifySlot, capacity)
	}
	return c
}

// Verify is Keys.Verify(token, audience, now), answered from the cache when
// the token was verified before. The returned Claims may be shared with
// other callers and must not be modified.
func (c *VerifyCache) Verify(token, audience string, now time.Time) (*Claims, error) {
	if token == "" || audience == "" || len(token) > MaxTokenSize {
		return c.keys.Verify(token, audience, now) // refused there, with the reason
	}
	// The hash reads the token's bytes in place: converting the string to
	// a []byte would copy up to MaxTokenSize bytes on every request, and
	// sha256 never writes to its input.
	key := tokenHash(sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token))))
	shard := &c.shards[key[0]&c.mask]
	if claims := shard.get(&key, audience, now); claims != nil {
		shard.hits.Add(1)
		return claims, nil
	}
	shard.misses.Add(1)
	// A miss, or a hit that fails the time or audience checks: Verify
	// decides, and explains a refusal in its own words.
	claims, err := c.keys.Verify(token, audience, now)
	if err != nil {
		return nil, err
	}
	shard.put(&key, claims)
	return claims, nil
}

// Stats returns how many lookups the cache answered (hits) and how many
// it sent on to Keys.Verify (misses) since it was made.
func (c *VerifyCache) Stats() (hits, misses uint64) {
	for i := range c.shards {
		hits += c.shards[i].hits.Load()
		misses += c.shards[i].misses.Load()
	}
	return hits, misses
}

// Len returns the number of tokens in the cache. Tests use it, here and
// in the server's, to see what the cache kept.
//
//deadcode:testonly tests count the tokens cached
func (c *VerifyCache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += s.n
		s.mu.RUnlock()
	}
	return n
}

// get returns the cached claims of the token hashed to key if they are
// still valid at now for audience, and nil otherwise.
func (s *verifyShard) get(key *tokenHash, audience string, now time.Time) *Claims {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.index[*key]
	if !ok {
		return nil
	}
	slot := &s.slots[i]
	if slot.claims.Audience != audience || !validAt(slot.claims, now) {
		return nil
	}
	// Load before Store: a hot entry's bit is already set, and reading
	// keeps the cache line shared between cores.
	if !slot.used.Load() {
		slot.used.Store(true)
	}
	return slot.claims
}

// put remembers claims for the token hashed to key, evicting the first
// entry the CLOCK hand finds unused since it last passed.
func (s *verifyShard) put(key *tokenHash, claims *Claims) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.slots) == 0 {
		return
	}
	if _, ok := s.index[*key]; ok {
		return // another request verified the same token meanwhile
	}
	var i int
	if s.n < len(s.slots) {
		i = s.n
		s.n++
	} else {
		for s.slots[s.hand].used.Load() {
			s.slots[s.hand].used.Store(false)
			s.hand = (s.hand + 1) % len(s.slots)
		}
		i = s.hand
		s.hand = (s.hand + 1) % len(s.slots)
		delete(s.index, s.slots[i].key)
	}
	slot := &s.slots[i]
	slot.key, slot.claims = *key, claims
	slot.used.Store(false)
	s.index[*key] = int32(i)
}

// validAt reports whether claims Verify accepted before still pass its
// time checks at now; a refusal goes back to Verify for its error.
func validAt(c *Claims, now time.Time) bool { return checkTimes(c, now) == nil }
