// Package load is the benchmark's load generator: a closed-loop HTTP
// client at a fixed concurrency and request count, and a log-linear
// latency histogram in the style of HdrHistogram (relative error under
// 1%, fixed memory, mergeable across workers).
package load

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the number of sub-buckets per power of two, as a bit count:
// 2^7 = 128 sub-buckets keep the relative error below 1/128.
const subBits = 7

// Histogram counts durations in nanoseconds.
type Histogram struct {
	counts [64 << subBits]uint64
	n      uint64
	max    int64
}

func bucket(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits - 1 // shift that leaves subBits+1 significant bits
	return (e+1)<<subBits + int(uint64(v)>>uint(e)&(1<<subBits-1))
}

// lowest returns the smallest value of bucket b.
func lowest(b int) int64 {
	if b < 1<<subBits {
		return int64(b)
	}
	e := b>>subBits - 1
	return (1<<subBits | int64(b&(1<<subBits-1))) << uint(e)
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucket(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Quantile returns the value at quantile q (0 < q ≤ 1): the middle of the
// bucket holding it, so within 1% of the recorded value.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			lo := lowest(b)
			hi := lowest(b + 1)
			mid := lo + (hi-lo)/2
			return time.Duration(min(mid, h.max))
		}
	}
	return time.Duration(h.max)
}

// Max is the largest recorded value.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }
