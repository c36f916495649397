package load

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Target is what to request and how to reach it.
type Target struct {
	URL    string // full URL of the GET
	Header http.Header
	TLS    *tls.Config
}

// Result is one measured run.
type Result struct {
	Requests int64
	Errors   int64
	// FirstError says what went wrong, if anything did.
	FirstError string
	Bytes      int64
	Elapsed    time.Duration
	Hist       *Histogram
	// CPU is the load generator's own CPU time (user+system) during the
	// measured phase: with Elapsed, its share of the machine.
	CPU time.Duration
}

// RPS is requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// NewTransport is an HTTP client transport the way kubectl's is: HTTP/2
// over TLS when the server offers it, connections kept and reused.
func NewTransport(tlsConfig *tls.Config, conns int) *http.Transport {
	return &http.Transport{
		TLSClientConfig:     tlsConfig.Clone(),
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
	}
}

// Run makes total requests from concurrency workers that each send one
// request at a time (a closed loop), and measures them. A client shared by
// all workers is used, as one kubectl or one informer shares its
// connection. A warm-up is a Run whose result is dropped.
func Run(ctx context.Context, client *http.Client, t Target, concurrency int, total int64) Result {
	cpu0 := cpuTime()
	start := time.Now()
	r := phase(ctx, client, t, concurrency, total)
	r.Elapsed = time.Since(start)
	r.CPU = cpuTime() - cpu0
	return r
}

func phase(ctx context.Context, client *http.Client, t Target, concurrency int, total int64) Result {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		wg       sync.WaitGroup
		res      = Result{Hist: &Histogram{}}
		firstErr atomic.Pointer[string]
	)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &Histogram{}
			var n, errs, bytes int64
			for next.Add(1) <= total && ctx.Err() == nil {
				start := time.Now()
				nb, err := get(ctx, client, t)
				d := time.Since(start)
				n++
				bytes += nb
				if err != nil {
					errs++
					s := err.Error()
					firstErr.CompareAndSwap(nil, &s)
					continue
				}
				h.Record(d)
			}
			mu.Lock()
			res.Hist.Merge(h)
			res.Requests += n
			res.Errors += errs
			res.Bytes += bytes
			mu.Unlock()
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	return res
}

// get makes one request and reads the whole body.
func get(ctx context.Context, client *http.Client, t Target) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return 0, err
	}
	for k, v := range t.Header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return n, err
	}
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("GET %s: %s", t.URL, resp.Status)
	}
	return n, nil
}

// cpuTime is this process's CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
