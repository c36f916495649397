package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Reasons a Backend drops events, as given to BackendOptions.OnDropped.
const (
	// DropQueueFull: the queue was full, so a new event was refused or a
	// batch that kept failing was given up to make room.
	DropQueueFull = "queue_full"
	// DropShutdown: the event was logged after Shutdown, or was still
	// queued when Shutdown's context ended.
	DropShutdown = "shutdown"
)

// BackendOptions tune a Backend. The zero value is usable.
type BackendOptions struct {
	// QueueSize is how many events wait for the sink; past it new events
	// are dropped. Default 10000.
	QueueSize int
	// BatchSize is the most events in one Write. Default 400. A sink that
	// does not batch (the file sink) gets whatever is queued, up to it.
	BatchSize int
	// BatchWait is how long a partial batch waits for more events. Zero
	// means the sink's default: 1s for a webhook, 10ms for a file. A
	// negative value writes at once.
	BatchWait time.Duration
	// RetryMin and RetryMax bound the back-off between failed Writes of a
	// batch, which doubles from RetryMin to RetryMax. Defaults 100ms, 30s.
	// A batch is retried until it is written or, once the queue has
	// filled up behind it, dropped (DropQueueFull) so that newer events
	// can go.
	RetryMin, RetryMax time.Duration
	// OnWritten, if set, is called with the number of events each
	// successful Write wrote.
	OnWritten func(n int)
	// OnDropped, if set, is called with the number of events dropped and
	// why (DropQueueFull, DropShutdown). It is called from Log: it must be
	// quick and must not call Log.
	OnDropped func(n int, reason string)
	// Logger receives failed writes and dropped events, each at most once
	// a minute. Default slog.Default().
	Logger *slog.Logger
}

// dropLogInterval is how often at most a Backend logs about dropped events
// and failed writes: an unreachable sink fails every batch, and a full
// queue drops every event, which would flood the log it shares with the
// server.
const dropLogInterval = time.Minute

// A Backend queues events between the request path and a Sink. Log never
// blocks; one goroutine takes the queue in batches and writes them,
// retrying a failed batch with back-off.
type Backend struct {
	sink   Sink
	opts   BackendOptions
	logger *slog.Logger

	mu       sync.Mutex
	queue    []*Event
	closing  bool
	given    int            // events of a batch given up when Shutdown's context ended
	dropped  map[string]int // dropped since the last log line
	lastLog  time.Time      // of dropped events
	lastFail time.Time      // of a failed write; the writer's alone
	spare    []*Event       // the last batch's slice, emptied, for the next; the writer's alone
	timer    *time.Timer    // for BatchWait; the writer's alone

	wake        chan struct{} // the queue's first event, or a full batch, was queued; capacity 1
	flush       chan struct{} // closed by Shutdown: write the queue out without waiting, then stop
	abort       chan struct{} // closed when Shutdown's context ends: stop now
	done        chan struct{} // closed when the writer has stopped
	writeCtx    context.Context
	cancelWrite context.CancelFunc
}

// NewBackend starts a Backend writing to sink. Call Shutdown to stop it.
func NewBackend(sink Sink, opts BackendOptions) *Backend {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 400
	}
	if opts.BatchWait == 0 {
		if d, ok := sink.(interface{ defaultBatchWait() time.Duration }); ok {
			opts.BatchWait = d.defaultBatchWait()
		}
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 100 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 30 * time.Second
	}
	opts.RetryMax = max(opts.RetryMax, opts.RetryMin)
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	b := &Backend{
		sink:    sink,
		opts:    opts,
		logger:  logger,
		dropped: map[string]int{},
		wake:    make(chan struct{}, 1),
		flush:   make(chan struct{}),
		abort:   make(chan struct{}),
		done:    make(chan struct{}),
	}
	b.writeCtx, b.cancelWrite = context.WithCancel(context.Background())
	go b.run()
	return b
}

// Log queues ev to be written. It never blocks: when the queue is full, or
// after Shutdown, it drops ev and counts it. ev must not be changed after.
func (b *Backend) Log(ev *Event) {
	if ev == nil {
		return
	}
	b.mu.Lock()
	reason, wake := "", false
	switch {
	case b.closing:
		reason = DropShutdown
	case len(b.queue) >= b.opts.QueueSize:
		reason = DropQueueFull
	default:
		b.queue = append(b.queue, ev)
		// The writer waits for the first event, and then for a full
		// batch or its deadline: only those need to wake it. Waking it
		// for every event would have it wake and sleep again for each.
		wake = len(b.queue) == 1 || len(b.queue) == b.opts.BatchSize
	}
	b.mu.Unlock()
	if reason != "" {
		b.drop(1, reason)
		return
	}
	if wake {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// Shutdown stops taking events, writes out what is queued until ctx ends,
// counts what is left as dropped (DropShutdown) and closes the sink. It
// returns ctx's error if events were left, and the sink's Close error.
func (b *Backend) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		<-b.done
		return nil
	}
	b.closing = true
	close(b.flush)
	b.mu.Unlock()

	var errs []error
	aborted := false
	select {
	case <-b.done:
	case <-ctx.Done():
		aborted = true
		close(b.abort)
		b.cancelWrite()
		<-b.done
	}
	b.cancelWrite()
	b.mu.Lock()
	left, given := len(b.queue), b.given
	b.queue = nil
	b.mu.Unlock()
	if left > 0 {
		b.drop(left, DropShutdown)
	}
	if aborted && left+given > 0 {
		errs = append(errs, fmt.Errorf("flushing audit events: %d left unwritten: %w", left+given, ctx.Err()))
	}
	b.logDrops(true)
	if err := b.sink.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing audit sink: %w", err))
	}
	return errors.Join(errs...)
}

// run is the writer: it takes batches off the queue and writes them until
// Shutdown.
func (b *Backend) run() {
	defer close(b.done)
	for {
		batch := b.next()
		if batch == nil {
			return
		}
		b.write(batch)
		// The slice holds the next batch, or the queue, rather than be
		// allocated again for every batch; it lets go of the events.
		clear(batch)
		if cap(batch) <= 2*b.opts.BatchSize {
			b.spare = batch[:0]
		}
	}
}

// next waits for a batch: BatchSize events, or fewer once the first has
// waited BatchWait, or whatever is queued once Shutdown has begun. It
// returns nil when the writer should stop.
func (b *Backend) next() []*Event {
	var deadline time.Time // when the partial batch waiting now must go
	for {
		select {
		case <-b.abort:
			return nil
		default:
		}
		b.mu.Lock()
		n, flushing := len(b.queue), b.closing
		if n > 0 && (n >= b.opts.BatchSize || flushing || b.opts.BatchWait <= 0 ||
			(!deadline.IsZero() && !time.Now().Before(deadline))) {
			var batch []*Event
			if k := min(n, b.opts.BatchSize); k == n {
				// The whole queue: it is the batch, and the last batch's
				// slice the queue.
				batch, b.queue = b.queue, b.spare
			} else {
				batch = append(b.spare, b.queue[:k]...)
				clear(b.queue[:k]) // let the events be collected once written
				b.queue = b.queue[k:]
			}
			b.spare = nil
			b.mu.Unlock()
			return batch
		}
		b.mu.Unlock()
		if n == 0 && flushing {
			return nil
		}
		var timeout <-chan time.Time
		if n > 0 {
			if deadline.IsZero() {
				deadline = time.Now().Add(b.opts.BatchWait)
			}
			if b.timer == nil {
				b.timer = time.NewTimer(time.Until(deadline))
			} else {
				b.timer.Reset(time.Until(deadline))
			}
			timeout = b.timer.C
		}
		stop := false
		select {
		case <-b.wake:
		case <-timeout:
		case <-b.flush:
		case <-b.abort:
			stop = true
		}
		if timeout != nil {
			b.timer.Stop()
		}
		if stop {
			return nil
		}
	}
}

// write writes batch, retrying with back-off until it is written, the
// queue fills up behind it, or Shutdown's context ends.
func (b *Backend) write(batch []*Event) {
	wait := b.opts.RetryMin
	for {
		err := b.sink.Write(b.writeCtx, batch)
		if err == nil {
			if b.opts.OnWritten != nil {
				b.opts.OnWritten(len(batch))
			}
			return
		}
		// Only the writer goroutine reads and sets lastFail.
		if time.Since(b.lastFail) >= dropLogInterval {
			b.lastFail = time.Now()
			b.logger.Warn("writing audit events failed; retrying", "events", len(batch), "error", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-b.abort:
			t.Stop()
			b.mu.Lock()
			b.given += len(batch)
			b.mu.Unlock()
			b.drop(len(batch), DropShutdown)
			return
		case <-t.C:
		}
		b.mu.Lock()
		full := len(b.queue) >= b.opts.QueueSize
		b.mu.Unlock()
		if full {
			b.drop(len(batch), DropQueueFull)
			return
		}
		wait = min(2*wait, b.opts.RetryMax)
	}
}

// drop counts n events dropped for reason and logs the drops at most once
// a minute.
func (b *Backend) drop(n int, reason string) {
	if b.opts.OnDropped != nil {
		b.opts.OnDropped(n, reason)
	}
	b.mu.Lock()
	b.dropped[reason] += n
	b.mu.Unlock()
	b.logDrops(false)
}

// logDrops logs the drops counted since the last time, if a minute has
// passed or final is set. The log line is written without b.mu held, so
// that a slow log handler does not hold up Log.
func (b *Backend) logDrops(final bool) {
	b.mu.Lock()
	if len(b.dropped) == 0 || (!final && time.Since(b.lastLog) < dropLogInterval) {
		b.mu.Unlock()
		return
	}
	b.lastLog = time.Now()
	var args []any
	for reason, n := range b.dropped {
		args = append(args, reason, n)
	}
	clear(b.dropped)
	b.mu.Unlock()
	b.logger.Warn("audit events dropped", args...)
}
