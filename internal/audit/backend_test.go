package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// discard is a logger for tests that do not read the log.
var discard = slog.New(slog.DiscardHandler)

// counts tallies a Backend's OnWritten and OnDropped.
type counts struct {
	written   atomic.Int64
	queueFull atomic.Int64
	shutdown  atomic.Int64
}

func (c *counts) options(opts BackendOptions) BackendOptions {
	opts.OnWritten = func(n int) { c.written.Add(int64(n)) }
	opts.OnDropped = func(n int, reason string) {
		switch reason {
		case DropQueueFull:
			c.queueFull.Add(int64(n))
		case DropShutdown:
			c.shutdown.Add(int64(n))
		}
	}
	return opts
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBackendWebhookDown: while the webhook is down, Log still returns at
// once and drops what the queue cannot hold, counting it; once the
// webhook is back, events logged after arrive; every event logged is
// either written or counted dropped.
func TestBackendWebhookDown(t *testing.T) {
	ws := newWebhookServer(t, "tok")
	sink, err := NewWebhookSink(ws.writeKubeconfig(t), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var c counts
	var logBuf bytes.Buffer
	b := NewBackend(sink, c.options(BackendOptions{
		QueueSize: 100,
		BatchSize: 10,
		BatchWait: 10 * time.Millisecond,
		RetryMin:  time.Millisecond,
		RetryMax:  20 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(&syncWriter{w: &logBuf}, nil)),
	}))

	ws.setDown(true)
	const flood = 10000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range flood {
			b.Log(testEvent(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Log blocked while the webhook was down")
	}
	if c.queueFull.Load() == 0 {
		t.Errorf("dropped for a full queue: got 0, want some of %d", flood)
	}

	ws.setDown(false)
	waitFor(t, "the queue to drain", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.queue) == 0
	})
	var after []string
	for i := range 5 {
		ev := testEvent(flood + i)
		ev.AuditID = fmt.Sprintf("after-%d", i)
		after = append(after, ev.AuditID)
		b.Log(ev)
	}
	waitFor(t, "the events logged after the webhook came back", func() bool {
		seen := map[string]bool{}
		for _, ev := range ws.events() {
			seen[ev.AuditID] = true
		}
		for _, id := range after {
			if !seen[id] {
				return false
			}
		}
		return true
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	logged := int64(flood + len(after))
	accounted := c.written.Load() + c.queueFull.Load() + c.shutdown.Load()
	if accounted != logged {
		t.Errorf("written %d + dropped %d (queue full) + %d (shutdown) = %d, want %d logged",
			c.written.Load(), c.queueFull.Load(), c.shutdown.Load(), accounted, logged)
	}
	if got := int64(len(ws.events())); got != c.written.Load() {
		t.Errorf("events the webhook received: got %d, want %d counted written", got, c.written.Load())
	}
	if log := logBuf.String(); !strings.Contains(log, "audit events dropped") || strings.Contains(log, "tok\"") {
		t.Errorf("log: want the drops, no token; got:\n%s", log)
	}
}

// syncWriter lets the test read what the Backend's goroutines log.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// fakeSink records batches, failing while fail is set.
type fakeSink struct {
	mu      sync.Mutex
	fail    bool
	batches [][]*Event
	closed  bool
}

func (s *fakeSink) Write(ctx context.Context, events []*Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("sink failing")
	}
	s.batches = append(s.batches, slices.Clone(events)) // Write must not keep events
	return nil
}

func (s *fakeSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func TestBackendBatches(t *testing.T) {
	sink := &fakeSink{}
	var c counts
	b := NewBackend(sink, c.options(BackendOptions{BatchSize: 3, BatchWait: time.Hour, Logger: discard}))
	for i := range 7 {
		b.Log(testEvent(i))
	}
	// Two full batches go at once; the partial one waits for Shutdown.
	waitFor(t, "two full batches", func() bool { return c.written.Load() == 6 })
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	var ids []string
	for _, batch := range sink.batches {
		sizes = append(sizes, len(batch))
		for _, ev := range batch {
			ids = append(ids, ev.AuditID)
		}
	}
	if fmt.Sprint(sizes) != "[3 3 1]" {
		t.Errorf("batch sizes: got %v, want [3 3 1]", sizes)
	}
	if len(ids) != 7 || ids[0] != "audit-00000" || ids[6] != "audit-00006" {
		t.Errorf("events in order: got %v", ids)
	}
	if !sink.closed {
		t.Error("sink not closed by Shutdown")
	}
}

func TestBackendShutdownGivesUp(t *testing.T) {
	sink := &fakeSink{fail: true}
	var c counts
	b := NewBackend(sink, c.options(BackendOptions{BatchSize: 2, RetryMin: time.Millisecond, RetryMax: time.Millisecond, Logger: discard}))
	for i := range 5 {
		b.Log(testEvent(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := b.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: got %v, want the deadline", err)
	}
	b.Log(testEvent(5))
	if got := c.shutdown.Load(); got != 6 {
		t.Errorf("dropped at shutdown: got %d, want 6", got)
	}
	if !sink.closed {
		t.Error("sink not closed by Shutdown")
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: got %v, want nil", err)
	}
}

// TestBackendEveryEventOnce: events logged from many goroutines at once,
// through batches whose slices the Backend reuses and a writer woken only
// for a batch's first event or a full batch, are each written once, each
// goroutine's in order.
func TestBackendEveryEventOnce(t *testing.T) {
	for _, wait := range []time.Duration{-1, time.Millisecond} {
		t.Run(fmt.Sprint(wait), func(t *testing.T) {
			sink := &fakeSink{}
			b := NewBackend(sink, BackendOptions{BatchSize: 7, BatchWait: wait, Logger: discard})
			const writers, each = 4, 2000
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						b.Log(&Event{AuditID: fmt.Sprintf("%d-%d", w, i)})
						if i%100 == 0 {
							time.Sleep(time.Millisecond) // let the writer catch up and wait again
						}
					}
				})
			}
			wg.Wait()
			if err := b.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			next := make([]int, writers)
			n := 0
			for _, batch := range sink.batches {
				if len(batch) == 0 || len(batch) > 7 {
					t.Fatalf("a batch of %d events", len(batch))
				}
				for _, ev := range batch {
					var w, i int
					if _, err := fmt.Sscanf(ev.AuditID, "%d-%d", &w, &i); err != nil {
						t.Fatal(err)
					}
					if i != next[w] {
						t.Fatalf("writer %d: event %d after %d", w, i, next[w]-1)
					}
					next[w]++
					n++
				}
			}
			if n != writers*each {
				t.Errorf("%d events written, want %d", n, writers*each)
			}
		})
	}
}

// TestBackendBatchWaitDefaults: a partial batch waits 10ms for the file
// sink, a second for the webhook, unless BatchWait says otherwise.
func TestBackendBatchWaitDefaults(t *testing.T) {
	file, err := NewFileSink(filepath.Join(t.TempDir(), "audit.log"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		sink Sink
		opt  time.Duration
		want time.Duration
	}{
		{file, 0, 10 * time.Millisecond},
		{file, -1, -1},
		{&webhookSink{client: &http.Client{}}, 0, time.Second},
		{&fakeSink{}, 0, 0},
	} {
		b := NewBackend(tt.sink, BackendOptions{BatchWait: tt.opt, Logger: discard})
		if b.opts.BatchWait != tt.want {
			t.Errorf("%T with BatchWait %v: got %v, want %v", tt.sink, tt.opt, b.opts.BatchWait, tt.want)
		}
		b.Shutdown(context.Background())
	}
}
