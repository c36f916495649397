package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// errIdle is the cause of a request canceled by idle_timeout.
var errIdle = errors.New("no data in either direction for longer than idle_timeout")

// withIdleTimeout cancels the request when no bytes have moved, in either
// direction, for d: a stream that has gone quiet is closed, one that keeps
// talking lives on. (Kubernetes routes default to no idle timeout: a watch
// may be quiet for a long time.) The returned writer and request must be
// used for the rest of the request; stop releases the timer.
func withIdleTimeout(w http.ResponseWriter, r *http.Request, d time.Duration) (http.ResponseWriter, *http.Request, func()) {
	ctx, cancel := context.WithCancelCause(r.Context())
	timer := time.AfterFunc(d, func() { cancel(errIdle) })
	active := func() { timer.Reset(d) }
	r = r.WithContext(ctx)
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &idleBody{ReadCloser: r.Body, active: active}
	}
	return &idleWriter{ResponseWriter: w, active: active}, r, func() {
		timer.Stop()
		cancel(nil)
	}
}

type idleWriter struct {
	http.ResponseWriter
	active func()
}

func (w *idleWriter) Write(p []byte) (int, error) {
	w.active()
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController (which ReverseProxy flushes through)
// reach the connection's own Flush.
func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type idleBody struct {
	io.ReadCloser
	active func()
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.active()
	}
	return n, err
}
