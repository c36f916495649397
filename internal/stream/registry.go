package stream

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what a stream is, as the metrics and the admin API name it.
type Kind string

// The kinds of stream.
const (
	Watch       Kind = "watch"       // a Kubernetes watch
	Log         Kind = "log"         // a followed pod log (kubectl logs -f)
	Exec        Kind = "exec"        // pods/exec
	Attach      Kind = "attach"      // pods/attach
	PortForward Kind = "portforward" // pods/portforward
	Upgrade     Kind = "upgrade"     // any other upgraded connection (a WebSocket application)
)

// Kinds lists every Kind, for metrics that show zero counts too.
var Kinds = []Kind{Watch, Log, Exec, Attach, PortForward, Upgrade}

// Info is who opened a stream and what for. The server fills it in once;
// it is not changed afterwards.
type Info struct {
	Kind Kind
	// Route is the route's label (its `from` URL); Host the canonical
	// host the request was routed by, to find the route again after a
	// reload.
	Route, Host string
	// Method and Path are the request's, for the admin API.
	Method, Path string
	// User, Email and SessionID are the person's as authentication
	// established them ("" on a public route). Expiry is when the
	// credential that proved them ends: it bounds a stream with no
	// session behind it.
	User, Email, SessionID string
	Expiry                 time.Time
	// Attrs is what the server needs to decide again whether the request
	// would be allowed now (its policy input); opaque here.
	Attrs any
}

// endGrace is how long, after End, the client connection is left to the
// last message and an orderly close before it is closed outright: a
// client that stopped reading must not keep a stream open.
const endGrace = 500 * time.Millisecond

// errEnded is the cause of an ended stream's context.
var errEnded = errors.New("the stream was ended: the access it was opened with ended")

// Stream is one open long-lived request.
type Stream struct {
	// ID numbers the streams of one Registry, for the admin API.
	ID     uint64
	Info   Info
	Opened time.Time

	reg    *Registry
	cancel context.CancelCauseFunc
	closed chan struct{} // closed by Close: the handler has returned

	// started, if set (OnStart), is told when the upstream has answered.
	started func(code int)

	mu     sync.Mutex
	ending *Ending // set once by End
	body   *Body   // the upstream response's body, once there is one
	w      http.ResponseWriter
	conn   net.Conn // the client's connection, once hijacked (upgrades)
}

// Registry is the set of open streams of one server.
type Registry struct {
	mu      sync.Mutex
	streams map[*Stream]struct{}
	next    atomic.Uint64
	// counts is how many are open by kind.
	counts map[Kind]int
	// ended counts streams ended by End, by kind.
	ended map[Kind]uint64
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{streams: make(map[*Stream]struct{}), counts: make(map[Kind]int), ended: make(map[Kind]uint64)}
}

type contextKey struct{}

// Open registers a stream for the request whose context is ctx and whose
// response goes to w. It returns the stream, a context to serve the
// request with (ended streams cancel it), and the writer to serve it with
// (which records the client's connection when it is hijacked). The
// handler must call Close when it returns.
func (r *Registry) Open(ctx context.Context, w http.ResponseWriter, info Info) (*Stream, context.Context, http.ResponseWriter) {
	ctx, cancel := context.WithCancelCause(ctx)
	// Complete before it is registered: the stream checker may end it
	// the moment it is.
	s := &Stream{ID: r.next.Add(1), Info: info, Opened: time.Now(), reg: r, cancel: cancel, closed: make(chan struct{}), w: w}
	r.mu.Lock()
	r.streams[s] = struct{}{}
	r.counts[info.Kind]++
	r.mu.Unlock()
	return s, context.WithValue(ctx, contextKey{}, s), &writer{ResponseWriter: w, s: s}
}

// FromContext returns the stream a request is served as, or nil.
func FromContext(ctx context.Context) *Stream {
	s, _ := ctx.Value(contextKey{}).(*Stream)
	return s
}

// Close unregisters the stream; its handler has returned.
func (s *Stream) Close() {
	r := s.reg
	r.mu.Lock()
	if _, ok := r.streams[s]; ok {
		delete(r.streams, s)
		r.counts[s.Info.Kind]--
		close(s.closed)
	}
	r.mu.Unlock()
	s.cancel(context.Canceled)
}

// Snapshot returns the streams open now.
func (r *Registry) Snapshot() []*Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Stream, 0, len(r.streams))
	for s := range r.streams {
		out = append(out, s)
	}
	return out
}

// Counts returns how many streams are open, and how many were ended, by
// kind.
func (r *Registry) Counts() (open map[Kind]int, ended map[Kind]uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	open, ended = make(map[Kind]int, len(r.counts)), make(map[Kind]uint64, len(r.ended))
	for k, n := range r.counts {
		open[k] = n
	}
	for k, n := range r.ended {
		ended[k] = n
	}
	return open, ended
}

// OnStart has f called with the upstream's status code when the upstream
// answers the stream's request and the stream begins (the audit trail
// records it). Call it before the request is forwarded.
func (s *Stream) OnStart(f func(code int)) { s.started = f }

// Bytes returns how many bytes the stream carried from the upstream to
// the client and from the client to the upstream (upgrades only), once
// the upstream answered; zeros before.
func (s *Stream) Bytes() (fromUpstream, toUpstream int64) {
	s.mu.Lock()
	b := s.body
	s.mu.Unlock()
	if b == nil {
		return 0, 0
	}
	return b.Bytes()
}

// Ended returns why the stream was ended, or nil if it was not.
func (s *Stream) Ended() *Ending {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ending
}

// AttachBody puts the stream's ending in the way of the upstream's
// response: resp.Body is replaced with a Body that End can stop at a
// message boundary. The proxy calls it on the response to the stream's
// request.
func (s *Stream) AttachBody(resp *http.Response) {
	if s.started != nil {
		s.started(resp.StatusCode)
	}
	b := NewBody(resp)
	resp.Body = b
	s.mu.Lock()
	s.body = b
	e := s.ending
	s.mu.Unlock()
	if e != nil {
		b.End(*e) // ended while the upstream was answering
	}
}

// End ends the stream, telling the person e where the protocol allows.
// Only the first call counts; it returns at once.
//
// In order: the upstream's bytes stop at the next message boundary and the
// last message follows (Body.End); the request's context is cancelled
// (with errEnded as its cause), so that a request still waiting for the
// upstream's answer gives up and the proxy answers it with e; once the
// last message is out, or after endGrace, the client's connection is
// closed if it was hijacked, and a response still being written gets a
// deadline that has passed.
func (s *Stream) End(e Ending) {
	s.mu.Lock()
	if s.ending != nil {
		s.mu.Unlock()
		return
	}
	s.ending = &e
	body := s.body
	s.mu.Unlock()
	s.reg.mu.Lock()
	s.reg.ended[s.Info.Kind]++
	s.reg.mu.Unlock()

	var delivered <-chan struct{}
	if body != nil {
		body.End(e)
		delivered = body.Done()
	}
	// A request still waiting for the upstream's answer gives up now; a
	// response being copied sees its body end first, at a boundary.
	s.cancel(errEnded)
	go s.finish(delivered)
}

// finish closes what End leaves open, once the last message is delivered
// (delivered is closed; nil if there is no body) or endGrace has passed.
func (s *Stream) finish(delivered <-chan struct{}) {
	timer := time.NewTimer(endGrace)
	defer timer.Stop()
	select {
	case <-s.closed:
		return
	case <-delivered:
		// The last message is written to the client's connection. An
		// upgraded client closes its side when it reads it (a WebSocket
		// close frame); give it a moment, so that closing first does not
		// turn into a reset that drops the message.
		select {
		case <-s.closed:
			return
		case <-time.After(endGrace / 2):
		}
	case <-timer.C:
	}
	s.mu.Lock()
	conn, w := s.conn, s.w
	s.mu.Unlock()
	if conn != nil {
		conn.Close()
		return
	}
	// A response the client does not read (flow control) must not hold the
	// handler: a deadline in the past fails the pending write.
	http.NewResponseController(w).SetWriteDeadline(time.Now()) //nolint:errcheck // best effort: not every writer has deadlines
	select {
	case <-s.closed:
	case <-time.After(endGrace):
	}
}

// writer is the ResponseWriter a stream is served with: it records the
// client's connection when the proxy hijacks it for an upgrade.
type writer struct {
	http.ResponseWriter
	s *Stream
}

func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.s.mu.Lock()
	w.s.conn = c
	ended := w.s.ending != nil
	w.s.mu.Unlock()
	if ended {
		// Ended between the upstream's answer and the hijack: the body
		// delivers the last message; close after the grace.
		go w.s.finish(nil)
	}
	return &clientConn{Conn: c, s: w.s}, brw, nil
}

// clientConn is the client's connection of an upgraded stream, as the
// proxy copies to it.
type clientConn struct {
	net.Conn
	s *Stream
}

// errNotEnded is CloseWrite's refusal on a stream that was not ended.
var errNotEnded = errors.New("half-closing is only for a stream Portcullis ended")

// CloseWrite half-closes the connection once an ended stream's last
// message is written: ReverseProxy calls it when the upstream side is done
// (the Body's io.EOF), and then waits for the client to close its side.
// Closing outright instead would make the kernel reset the connection if
// the client had sent anything not yet read (a WebSocket close frame in
// answer to ours), and a reset can destroy the last message before the
// client reads it. The client closes as soon as it reads the message; one
// that does not is closed by finish after the grace.
//
// A stream that was not ended gets an error, and ReverseProxy closes the
// connection at once, as it always has: no client can hold a half-closed
// connection open.
func (c *clientConn) CloseWrite() error {
	if c.s.Ended() == nil {
		return errNotEnded
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (w *writer) Flush() { http.NewResponseController(w.ResponseWriter).Flush() } //nolint:errcheck // http.Flusher has no error

// Unwrap lets http.ResponseController reach the writer's other methods
// (deadlines, full duplex), as ReverseProxy uses them.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
