package load

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 123456, 1 << 40, 1<<62 + 12345} {
		b := bucket(v)
		if lo, hi := lowest(b), lowest(b+1); v < lo || v >= hi {
			t.Errorf("value %d in bucket %d = [%d, %d)", v, b, lo, hi)
		}
	}
	// Buckets are contiguous and increasing.
	for b := 1; b < 40<<subBits; b++ {
		if lowest(b) <= lowest(b-1) {
			t.Fatalf("bucket %d starts at %d, not after bucket %d at %d", b, lowest(b), b-1, lowest(b-1))
		}
	}
}

func TestQuantileWithinOnePercent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var vals []int64
	for range 100000 {
		v := int64(r.ExpFloat64() * 200e3) // around 200 µs
		vals = append(vals, v)
		h.Record(time.Duration(v))
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := vals[int(q*float64(len(vals)))-1]
		got := int64(h.Quantile(q))
		if d := float64(got-want) / float64(want); d > 0.01 || d < -0.01 {
			t.Errorf("quantile %v: got %d, want %d (±1%%)", q, got, want)
		}
	}
}

func TestMerge(t *testing.T) {
	var a, b Histogram
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	b.Record(2 * time.Millisecond)
	a.Merge(&b)
	if a.Count() != 3 {
		t.Errorf("count: got %d, want 3", a.Count())
	}
	if got := a.Quantile(0.5); got < 1980*time.Microsecond || got > 2020*time.Microsecond {
		t.Errorf("median: got %v, want 2ms", got)
	}
	if a.Max() != 3*time.Millisecond {
		t.Errorf("max: got %v, want 3ms", a.Max())
	}
}
