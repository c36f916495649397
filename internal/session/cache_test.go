package session

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// userClaims are validClaims for user i, so that tokens differ in content
// and a mix-up between cache entries shows.
func userClaims(i int) Claims {
	c := validClaims()
	c.Subject = fmt.Sprintf("user-%d", i)
	c.Email = fmt.Sprintf("user%d@example.com", i)
	c.ID = fmt.Sprintf("token-%d", i)
	return c
}

func TestVerifyCacheHitAndMiss(t *testing.T) {
	k := derivedKeys(t)
	// 32: 16 shards of two, so the two tokens below are both kept even
	// when they hash to one shard (with 8, one token per shard, one in
	// eight runs evicted the first).
	c := NewVerifyCache(k, 32)
	tok := issue(t, k, validClaims())

	first, err := c.Verify(tok, testAudience, testNow)
	if err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	want, err := k.Verify(tok, testAudience, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, first); diff != "" {
		t.Errorf("cached Verify claims differ from Keys.Verify (-want +got):\n%s", diff)
	}
	if got := c.Len(); got != 1 {
		t.Errorf("Len after a miss: got %d, want 1", got)
	}

	// A hit returns the remembered claims themselves: Keys.Verify would
	// have built new ones.
	second, err := c.Verify(tok, testAudience, testNow.Add(time.Minute))
	if err != nil {
		t.Fatalf("second Verify: %v", err)
	}
	if second != first {
		t.Errorf("second Verify of the same token was not a hit")
	}

	// Another token is a miss, and is remembered beside the first.
	other := issue(t, k, userClaims(2))
	got, err := c.Verify(other, testAudience, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if got == first || got.Email != "user2@example.com" {
		t.Errorf("other token: got %+v, want user2's own claims", got)
	}
	if got := c.Len(); got != 2 {
		t.Errorf("Len: got %d, want 2", got)
	}
	if hits, misses := c.Stats(); hits != 1 || misses != 2 {
		t.Errorf("Stats: got %d hits and %d misses, want 1 and 2", hits, misses)
	}
}

// TestVerifyCacheAgreesWithVerify checks the hit path against Verify at
// every time boundary: a cached token must be refused exactly when Verify
// refuses it, with the same error.
func TestVerifyCacheAgreesWithVerify(t *testing.T) {
	k := derivedKeys(t)
	claims := validClaims()
	// Distinct nbf and iat, so each boundary is tested on its own.
	claims.NotBefore = testNow.Add(-2 * time.Minute)
	claims.IssuedAt = testNow.Add(-time.Minute)
	tok := issue(t, k, claims)
	exp, nbf, iat := claims.Expiry, claims.NotBefore, claims.IssuedAt

	tests := []struct {
		name     string
		audience string
		now      time.Time
		wantErr  error // nil: accepted
	}{
		{"now", testAudience, testNow, nil},
		{"just before exp", testAudience, exp.Add(-time.Nanosecond), nil},
		{"at exp, within leeway", testAudience, exp, nil},
		{"last instant of leeway after exp", testAudience, exp.Add(Leeway - time.Nanosecond), nil},
		{"end of leeway after exp", testAudience, exp.Add(Leeway), ErrExpired},
		{"long after exp", testAudience, exp.Add(24 * time.Hour), ErrExpired},
		{"at nbf minus leeway", testAudience, nbf.Add(-Leeway), ErrNotYetValid},
		{"just after nbf minus leeway, before iat minus leeway", testAudience, nbf.Add(-Leeway + time.Nanosecond), ErrNotYetValid},
		{"just before iat minus leeway", testAudience, iat.Add(-Leeway - time.Nanosecond), ErrNotYetValid},
		{"at iat minus leeway", testAudience, iat.Add(-Leeway), nil},
		{"before nbf", testAudience, nbf.Add(-time.Hour), ErrNotYetValid},
		{"other audience", "https://other.example.com", testNow, ErrWrongAudience},
		{"audience differing in case", strings.ToUpper(testAudience), testNow, ErrWrongAudience},
		{"audience with trailing slash", testAudience + "/", testNow, ErrWrongAudience},
		{"no audience", "", testNow, ErrWrongAudience},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewVerifyCache(k, 8)
			primed, err := c.Verify(tok, testAudience, testNow)
			if err != nil {
				t.Fatalf("priming the cache: %v", err)
			}

			want, wantErr := k.Verify(tok, tt.audience, tt.now)
			got, gotErr := c.Verify(tok, tt.audience, tt.now)

			if (wantErr == nil) != (tt.wantErr == nil) || (tt.wantErr != nil && !errors.Is(wantErr, tt.wantErr)) {
				t.Fatalf("the test is wrong: Keys.Verify gave %v, want %v", wantErr, tt.wantErr)
			}
			if tt.wantErr != nil {
				checkSentinel(t, gotErr, tt.wantErr)
				if gotErr.Error() != wantErr.Error() {
					t.Errorf("error: got %q, want Verify's %q", gotErr, wantErr)
				}
				if got != nil {
					t.Errorf("claims with an error: %+v", got)
				}
				return
			}
			if gotErr != nil {
				t.Fatalf("got error %v, want the token accepted", gotErr)
			}
			if got != primed {
				t.Errorf("accepted, but not from the cache")
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
}

// A token accepted for one route is refused for another on a hit, and the
// refusal does not evict it for its own route.
func TestVerifyCacheAudienceMismatchOnHit(t *testing.T) {
	k := derivedKeys(t)
	// 32: 16 shards of two, so the two tokens below are both kept even
	// when they hash to one shard (with 8, one token per shard, one in
	// eight runs evicted the first).
	c := NewVerifyCache(k, 32)
	tok := issue(t, k, validClaims())
	first, err := c.Verify(tok, testAudience, testNow)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Verify(tok, "https://other-cluster.example.com", testNow)
	checkSentinel(t, err, ErrWrongAudience)
	again, err := c.Verify(tok, testAudience, testNow)
	if err != nil || again != first {
		t.Errorf("after a refusal for another audience: got %p, %v; want the cached claims %p", again, err, first)
	}
}

// Expiry is enforced on hits: a cached token stops working when it
// expires, with Verify's error, and does not come back.
func TestVerifyCacheExpiryEnforcedOnHit(t *testing.T) {
	k := derivedKeys(t)
	c := NewVerifyCache(k, 8)
	claims := validClaims()
	tok := issue(t, k, claims)
	if _, err := c.Verify(tok, testAudience, testNow); err != nil {
		t.Fatal(err)
	}
	late := claims.Expiry.Add(Leeway)
	_, err := c.Verify(tok, testAudience, late)
	checkSentinel(t, err, ErrExpired)
	if !strings.Contains(err.Error(), "sign in again") {
		t.Errorf("error %q does not say what to do", err)
	}
	_, err = c.Verify(tok, testAudience, late.Add(time.Hour))
	checkSentinel(t, err, ErrExpired)
}

func TestVerifyCacheNeverCachesFailures(t *testing.T) {
	k := derivedKeys(t)
	other := newTestKeys(t, sec1PEM(t, fixtures().otherEC), nil)
	valid := issue(t, k, validClaims())
	parts := strings.Split(valid, ".")
	expired := func() Claims {
		c := validClaims()
		c.IssuedAt, c.NotBefore, c.Expiry = testNow.Add(-2*time.Hour), time.Time{}, testNow.Add(-time.Hour)
		return c
	}()

	tests := []struct {
		name     string
		token    string
		audience string
		wantErr  error
	}{
		{"empty", "", testAudience, ErrMalformed},
		{"garbage", "not.a.token", testAudience, ErrMalformed},
		{"too large", strings.Repeat("a", MaxTokenSize+1), testAudience, ErrMalformed},
		{"bad signature", parts[0] + "." + parts[1] + "." + b64(make([]byte, 64)), testAudience, ErrInvalidSignature},
		{"unknown key", issue(t, other, validClaims()), testAudience, ErrUnknownKey},
		{"expired", issue(t, k, expired), testAudience, ErrExpired},
		{"wrong audience on first sight", valid, "https://other.example.com", ErrWrongAudience},
		{"no audience asked for", valid, "", ErrWrongAudience},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewVerifyCache(k, 8)
			for range 2 { // the second time must not be a hit either
				_, err := c.Verify(tt.token, tt.audience, testNow)
				checkSentinel(t, err, tt.wantErr)
			}
			if got := c.Len(); got != 0 {
				t.Errorf("Len after a refused token: got %d, want 0", got)
			}
		})
	}
	// The token refused for the wrong audience is still verified, and
	// then remembered, for its own.
	c := NewVerifyCache(k, 8)
	c.Verify(valid, "https://other.example.com", testNow)
	if _, err := c.Verify(valid, testAudience, testNow); err != nil {
		t.Fatal(err)
	}
	if got := c.Len(); got != 1 {
		t.Errorf("Len: got %d, want 1", got)
	}
}

func TestVerifyCacheSize(t *testing.T) {
	k := derivedKeys(t)
	for _, tt := range []struct{ size, wantCap int }{
		{0, DefaultVerifyCacheSize},
		{-1, DefaultVerifyCacheSize},
		{1, 1}, {2, 2}, {3, 3}, {15, 15}, {16, 16}, {17, 17}, {100, 100}, {10_001, 10_001},
	} {
		c := NewVerifyCache(k, tt.size)
		total := 0
		for i := range c.shards {
			total += len(c.shards[i].slots)
		}
		if total != tt.wantCap {
			t.Errorf("NewVerifyCache(size %d): capacity %d, want %d", tt.size, total, tt.wantCap)
		}
		if len(c.shards)&(len(c.shards)-1) != 0 || int(c.mask) != len(c.shards)-1 {
			t.Errorf("NewVerifyCache(size %d): %d shards, mask %d: want a power of two and its mask", tt.size, len(c.shards), c.mask)
		}
	}
}

// TestVerifyCacheEvictionBound fills small caches with many more tokens
// than they hold: the size is never exceeded, and a token in use all along
// is not the one evicted.
func TestVerifyCacheEvictionBound(t *testing.T) {
	k := derivedKeys(t)
	const n = 200
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = issue(t, k, userClaims(i))
	}
	hotToken := issue(t, k, userClaims(-1))
	for _, size := range []int{1, 5, 40} {
		t.Run(fmt.Sprint("size ", size), func(t *testing.T) {
			c := NewVerifyCache(k, size)
			hot, err := c.Verify(hotToken, testAudience, testNow)
			if err != nil {
				t.Fatal(err)
			}
			for i, tok := range tokens {
				got, err := c.Verify(tok, testAudience, testNow)
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("user%d@example.com", i); got.Email != want {
					t.Fatalf("token %d: got claims of %s, want %s", i, got.Email, want)
				}
				if l := c.Len(); l > size {
					t.Fatalf("after %d tokens: Len %d, more than the size %d", i+1, l, size)
				}
				// The hot token is used between every two new ones: the
				// CLOCK keeps it, given a shard with room for two.
				h, err := c.Verify(hotToken, testAudience, testNow)
				if err != nil {
					t.Fatal(err)
				}
				if size >= 2*verifyCacheShards && h != hot {
					t.Fatalf("after %d tokens: the hot token was evicted", i+1)
				}
				hot = h
			}
		})
	}
}

// TestVerifyCacheConcurrent runs hits, misses, evictions and refusals at
// once; with -race it checks the locking, and each answer must belong to
// the token asked about.
func TestVerifyCacheConcurrent(t *testing.T) {
	k := derivedKeys(t)
	const nTokens = 24
	tokens := make([]string, nTokens)
	for i := range tokens {
		tokens[i] = issue(t, k, userClaims(i))
	}
	c := NewVerifyCache(k, 8) // smaller than the working set: evictions all the time
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for j := range 150 {
				i := (g*7 + j*5) % nTokens
				audience, now := testAudience, testNow.Add(time.Duration(j)*time.Second)
				switch j % 10 {
				case 3:
					audience = "https://other.example.com"
				case 7:
					now = testNow.Add(3 * time.Hour)
				}
				got, err := c.Verify(tokens[i], audience, now)
				switch {
				case audience != testAudience:
					if !errors.Is(err, ErrWrongAudience) {
						t.Errorf("token %d, other audience: got %v, want ErrWrongAudience", i, err)
					}
				case j%10 == 7:
					if !errors.Is(err, ErrExpired) {
						t.Errorf("token %d, 3h later: got %v, want ErrExpired", i, err)
					}
				case err != nil:
					t.Errorf("token %d: %v", i, err)
				case got.Email != fmt.Sprintf("user%d@example.com", i):
					t.Errorf("token %d: got the claims of %s", i, got.Email)
				}
			}
		})
	}
	wg.Wait()
	if l := c.Len(); l > 8 {
		t.Errorf("Len %d, more than the size 8", l)
	}
}

// BenchmarkVerifyCache compares Keys.Verify with a hit of the cache in
// front of it, for the token a kubectl session sends with every request.
func BenchmarkVerifyCache(b *testing.B) {
	k := derivedKeys(b)
	tok := issue(b, k, validClaims())
	now := testNow.Add(time.Second)
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Verify(tok, testAudience, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hit", func(b *testing.B) {
		c := NewVerifyCache(k, 0)
		if _, err := c.Verify(tok, testAudience, now); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Verify(tok, testAudience, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hit-parallel", func(b *testing.B) {
		// Many sessions at once: 64 tokens spread over the shards.
		c := NewVerifyCache(k, 0)
		toks := make([]string, 64)
		for i := range toks {
			toks[i] = issue(b, k, userClaims(i))
			if _, err := c.Verify(toks[i], testAudience, now); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := c.Verify(toks[i%len(toks)], testAudience, now); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}
