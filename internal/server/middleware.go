package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/portcullis-proxy/portcullis/internal/policy"
	"github.com/portcullis-proxy/portcullis/internal/respond"
	"github.com/portcullis-proxy/portcullis/internal/tracing"
)

// pipeline composes the request pipeline. The order is fixed and matters:
//
//  0. presizeStack: before anything, while the goroutine's stack is
//     shallow, so the pipeline below never copies it again (stack.go);
//  1. recoverPanics: outermost of the handlers, so a panic anywhere below becomes a 500
//     instead of a dropped connection and is logged with its stack;
//  2. assignRequestID: before logging, so every log line and the response
//     carry the id;
//  3. traceRequests: the request's span (tracing on), carrying both ids,
//     around everything that follows, so that the access log names the
//     trace;
//  4. logAccess: sees the final status, including the 500 of a panic;
//  5. countRequests: the same for metrics;
//  6. refuseUnservable: CONNECT, TRACE and targets that are not a path
//     never reach a handler (guard.go), but are logged and counted;
//  7. boundBodyRead: a request body must arrive in bounded time, whoever
//     sends it (guard.go);
//  8. the router, then the route's own handler (authentication,
//     authorization and proxying, in that order, live behind it).
func (s *Server) pipeline(router http.Handler) http.Handler {
	return presizeStack(
		s.recoverPanics(
			assignRequestID(
				s.traceRequests(
					s.logAccess(
						s.countRequests(
							refuseUnservable(
								s.boundBodyRead(
									router))))))))
}

// recoverPanics turns a handler's panic into a logged error and a 500, so
// that one bad request never takes down the process or the connection's
// other requests.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := wrapResponseWriter(w, s.hijacked)
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				// The documented way to abort a response; net/http closes
				// the connection (or resets the HTTP/2 stream) without
				// logging a stack. Keep that behaviour.
				panic(v)
			}
			// The request id is in the response header: assignRequestID
			// runs inside this middleware, so r's context lacks it.
			id := rw.Header().Get(headerRequestID)
			s.logger.Error("panic serving request",
				"request_id", id,
				"method", r.Method, "host", r.Host, "path", r.URL.Path,
				"panic", fmt.Sprint(v),
				"stack", string(debug.Stack()))
			switch {
			case rw.hijacked:
				// The connection belongs to the handler now; nothing can be
				// written to it as HTTP.
			case rw.status != 0:
				// Part of a response is out; a 500 now would be spliced
				// into it. Abort so the client sees a broken response, not
				// a truncated one that looks whole.
				panic(http.ErrAbortHandler)
			default:
				h := rw.Header()
				clear(h) // drop what the handler set for the response it never sent
				h.Set(headerRequestID, id)
				respond.Error(rw, r, respond.Problem{Code: http.StatusInternalServerError,
					Message: fmt.Sprintf("portcullis: internal error (request id %s)", id)})
			}
		}()
		next.ServeHTTP(rw, r)
	})
}

const (
	headerRequestID = "X-Request-Id"
	maxRequestIDLen = 64
)

// assignRequestID gives every request an id: the client's X-Request-Id if
// it is well formed (so a caller can correlate its own logs), a fresh
// random one otherwise. A malformed one is replaced, not cleaned, because
// it ends up in logs and headers and could carry anything.
func assignRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(headerRequestID)
		if !validRequestID(id) {
			id = rand.Text() // 26 characters of base32: 130 random bits
		}
		w.Header().Set(headerRequestID, id)
		ctx := context.WithValue(r.Context(), stateKey{}, &requestState{id: id, auditID: newAuditID()})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// validRequestID accepts 1 to 64 characters of [A-Za-z0-9._-].
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// logAccess logs one line per request when its handler returns. It logs
// the path but never the query (login callbacks carry tokens there) and
// no headers at all: Authorization, cookies and X-Pomerium-Authorization
// are credentials.
func (s *Server) logAccess(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := wrapResponseWriter(w, s.hijacked)
		start := time.Now()
		panicked := true
		defer func() {
			st := stateFrom(r.Context())
			level := slog.LevelInfo
			if st.route() == routeLabelInternal {
				// Probes hit the health endpoints every few seconds.
				level = slog.LevelDebug
			}
			// Room for every attribute below, so that appending the
			// optional ones does not copy the slice on every request.
			var room [15]slog.Attr
			attrs := append(room[:0],
				slog.String("request_id", st.requestID()),
				slog.String("method", r.Method),
				slog.String("host", r.Host),
				slog.String("path", r.URL.Path),
				slog.String("proto", r.Proto),
				slog.String("remote_addr", r.RemoteAddr),
				slog.Int("status", rw.finalStatus(panicked)),
				slog.Int64("bytes", rw.bytes),
				slog.Duration("duration", time.Since(start)),
				slog.String("audit_id", st.auditIDOrEmpty()),
			)
			if st != nil && st.decided {
				// The decision and its rule; a denial's reasons are in
				// its own log line ("request denied by policy").
				decision, rule := "deny", "none"
				if st.decision.Allow {
					decision = "allow"
				}
				if st.decision.Rule != nil {
					rule = st.decision.Rule.Path
				}
				attrs = append(attrs, slog.String("user", st.user), slog.String("decision", decision), slog.String("rule", rule))
			}
			if s.tracer != nil {
				if id := tracing.TraceID(r.Context()); id != "" {
					attrs = append(attrs, slog.String("trace_id", id))
				}
			}
			if rw.hijacked {
				attrs = append(attrs, slog.Bool("upgraded", true))
			}
			s.logger.LogAttrs(r.Context(), level, "request", attrs...)
		}()
		next.ServeHTTP(rw, r)
		panicked = false
	})
}

// traceRequests starts the request's server span when tracing is on, as a
// trace of its own (tracing.Tracer.StartRequest: a client's traceparent is
// only a link), and ends it with the final status. Its attributes are what
// the request says of itself, with the request and audit ids that join the
// trace to the access log and the audit trail; never who sent it.
func (s *Server) traceRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := s.tracer
		if t == nil {
			next.ServeHTTP(w, r)
			return
		}
		rw := wrapResponseWriter(w, s.hijacked)
		st := stateFrom(r.Context())
		method := methodLabel(r.Method)
		ctx, span := t.StartRequest(r, method,
			attribute.String("http.request.method", method),
			attribute.String("url.path", r.URL.Path),
			attribute.String("server.address", r.Host),
			attribute.String("network.protocol.version", strings.TrimPrefix(r.Proto, "HTTP/")),
			attribute.String("user_agent.original", r.UserAgent()),
			attribute.String("client.address", r.RemoteAddr),
			attribute.String("portcullis.request_id", st.requestID()),
			attribute.String("portcullis.audit_id", st.auditIDOrEmpty()),
		)
		panicked := true
		defer func() {
			status := rw.finalStatus(panicked)
			route := st.route()
			if route == "" {
				route = routeLabelUnmatched
			}
			// The span's name: the method and the route, as the
			// semantic conventions name a server span by its route.
			span.SetName(method + " " + route)
			span.SetAttributes(attribute.Int("http.response.status_code", status), attribute.String("portcullis.route", route))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
			span.End()
		}()
		next.ServeHTTP(rw, r.WithContext(ctx))
		panicked = false
	})
}

// countRequests records each request in the Prometheus metrics when its
// handler returns (for a stream, when the stream ends).
func (s *Server) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := wrapResponseWriter(w, s.hijacked)
		start := time.Now()
		panicked := true
		defer func() {
			route := stateFrom(r.Context()).route()
			if route == "" {
				route = routeLabelUnmatched
			}
			s.metrics.observe(route, r.Method, rw.finalStatus(panicked), time.Since(start))
		}()
		next.ServeHTTP(rw, r)
		panicked = false
	})
}

// requestState is the per-request state the middleware share through the
// context. Only the request's own goroutine touches it.
type requestState struct {
	id         string
	routeLabel string // set by the router
	// auditID names the request in audit records, Portcullis's and
	// kube-apiserver's (the Audit-ID it is sent with): unlike the request
	// id, never the client's choice.
	auditID string
	// user and decision are what authorization found, for the access
	// log: the person's email, and the decision with its deciding rule
	// (decided says there was one).
	user     string
	decision policy.Decision
	decided  bool
	// audit is the request's audit record, when it has one (beginAudit).
	audit *requestAudit
}

// newAuditID returns a random audit id in the form kube-apiserver gives
// its own: a version 4 UUID.
func newAuditID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	// Encoded by hand: on every request, fmt would cost several
	// allocations where this costs the string's one.
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

// AuditID returns the audit id of the request whose context ctx is, or ""
// outside a request.
func AuditID(ctx context.Context) string {
	if st := stateFrom(ctx); st != nil {
		return st.auditID
	}
	return ""
}

// setDecision records what authorization decided, for the access log.
func (st *requestState) setDecision(user string, d policy.Decision) {
	if st != nil {
		st.user, st.decision, st.decided = user, d, true
	}
}

type stateKey struct{}

func stateFrom(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}

func (st *requestState) setRoute(label string) {
	if st != nil {
		st.routeLabel = label
	}
}

func (st *requestState) route() string {
	if st == nil {
		return ""
	}
	return st.routeLabel
}

func (st *requestState) auditIDOrEmpty() string {
	if st == nil {
		return ""
	}
	return st.auditID
}

func (st *requestState) requestID() string {
	if st == nil {
		return ""
	}
	return st.id
}

// RequestID returns the id the server gave the request whose context ctx
// is (its X-Request-Id), or "" outside a request.
func RequestID(ctx context.Context) string {
	return stateFrom(ctx).requestID()
}

// responseWriter records what the middleware need to know about a
// response (status, size, whether it was hijacked) and registers hijacked
// connections with the server's tracker. One is made per request by the
// outermost middleware and reused by the others.
//
// It implements Flush and Hijack itself and Unwrap for everything else, so
// http.ResponseController (which ReverseProxy uses) reaches the underlying
// writer's deadlines and full-duplex mode.
type responseWriter struct {
	http.ResponseWriter
	tracker  *connTracker
	status   int // first final status written; 0 if none yet
	bytes    int64
	hijacked bool
}

// wrapResponseWriter returns w if it is already a *responseWriter, else wraps it.
func wrapResponseWriter(w http.ResponseWriter, tracker *connTracker) *responseWriter {
	if rw, ok := w.(*responseWriter); ok {
		return rw
	}
	return &responseWriter{ResponseWriter: w, tracker: tracker}
}

func (w *responseWriter) WriteHeader(code int) {
	// 1xx other than 101 are informational (e.g. 103 Early Hints): a final
	// status still follows.
	if w.status == 0 && (code < 100 || code > 199 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) Flush() { w.FlushError() }

func (w *responseWriter) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK // flushing sends the headers
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection to the handler and tracks it, since
// http.Server.Shutdown no longer sees it (see Server.shutdown).
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	if w.status == 0 {
		// Here a connection is hijacked only to switch protocols (SPDY,
		// WebSocket); ReverseProxy writes the upstream's 101 onto the raw
		// connection itself, so WriteHeader never sees it.
		w.status = http.StatusSwitchingProtocols
	}
	return w.tracker.track(c), brw, nil
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finalStatus is the status the client got, or will get once the handler
// returns: 500 if it panicked before writing (recoverPanics writes it),
// 200 if it returned without writing (net/http's implicit status).
func (w *responseWriter) finalStatus(panicked bool) int {
	switch {
	case w.status != 0:
		return w.status
	case panicked:
		return http.StatusInternalServerError
	default:
		return http.StatusOK
	}
}
