package proxy

import (
	"math"
	"net/url"
	"testing"
)

// TestPickWrapsAround is a regression test: the round-robin counter
// wraps after 2^32 requests, and converting it to int made a negative
// index on 32-bit platforms (GOARCH=386, arm), where int is 32 bits.
func TestPickWrapsAround(t *testing.T) {
	a, b, c := &url.URL{Host: "a"}, &url.URL{Host: "b"}, &url.URL{Host: "c"}
	f := &failover{targets: []*url.URL{a, b, c}}
	f.next.Store(math.MaxInt32 - 1)
	seen := map[string]int{}
	for range 12 {
		seen[f.pick().Host]++ // must not panic
	}
	f.next.Store(math.MaxUint32 - 1)
	for range 12 {
		seen[f.pick().Host]++
	}
	for _, u := range f.targets {
		if seen[u.Host] < 6 {
			t.Errorf("upstream %s picked %d times of 24, want about 8: %v", u.Host, seen[u.Host], seen)
		}
	}
}
