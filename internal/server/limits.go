package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/authenticate"
	"github.com/portcullis-proxy/portcullis/internal/limit"
	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// The limits the server enforces itself; the authenticator enforces the
// sign-in and login rates, the pending sign-ins and the device sign-in's
// polls (authenticate.Limit*), the session store the sessions per person.
// All but the polls, a fixed bound, are LIMIT_* settings (config.Limits).
const limitSignInBody = "sign_in_body_bytes"

// limitListener caps the connections open on ln (LIMIT_CONNECTIONS, and
// LIMIT_CONNECTIONS_PER_CLIENT for one client address): past a cap a
// connection is closed as soon as it is accepted (limit.Listener).
func (s *Server) limitListener(ln net.Listener) net.Listener {
	l := limit.NewListener(ln, s.opts.Limits.Connections, s.opts.Limits.ConnectionsPerClient)
	l.Refused = func(client netip.Addr, reason string) { s.limited(reason, client) }
	l.Opened = s.metrics.connections.Inc
	l.Closed = s.metrics.connections.Dec
	return l
}

// limited records a refusal at a limit: always in the metrics, in the log
// at most once a minute per limit (with how many there were), so that a
// flood of refusals cannot flood the log too.
func (s *Server) limited(name string, client netip.Addr) {
	s.metrics.refused.WithLabelValues(name).Inc()
	if n, ok := s.refusals.note(name, time.Now()); ok {
		if name == authenticate.LimitDevicePolls {
			s.logger.Warn("refused at a limit (a fixed one: a client polling for device sign-ins far faster than it is told to)",
				"limit", name, "client", client.String(), "refused_since_last_report", n)
			return
		}
		s.logger.Warn("refused at a limit; raise the setting if this is not an attack",
			"limit", name, "setting", "LIMIT_"+strings.ToUpper(name), "client", client.String(), "refused_since_last_report", n)
	}
}

// refusalLog decides when a refusal is logged: the first of each limit,
// then at most one a minute, carrying the count of those in between.
type refusalLog struct {
	mu    sync.Mutex
	next  map[string]time.Time
	count map[string]int
}

const refusalLogEvery = time.Minute

func (l *refusalLog) note(name string, now time.Time) (count int, log bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next == nil {
		l.next, l.count = map[string]time.Time{}, map[string]int{}
	}
	l.count[name]++
	if now.Before(l.next[name]) {
		return 0, false
	}
	count = l.count[name]
	l.count[name] = 0
	l.next[name] = now.Add(refusalLogEvery)
	return count, true
}

// boundSignInBody caps the body of a request to a sign-in, sign-out or
// login endpoint (LIMIT_SIGN_IN_BODY_BYTES): these take a form of a few
// fields at most, and anyone may send them before signing in. A body
// declared larger is refused at once with 413; one that turns out larger
// as it arrives fails the handler's read, and net/http closes the
// connection after the answer.
func (s *Server) boundSignInBody(next http.Handler) http.Handler {
	n := int64(s.opts.Limits.SignInBodyBytes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			s.limited(limitSignInBody, limit.Client(r))
			w.Header().Set("Connection", "close") // the body is not read
			respond.Error(w, r, respond.Problem{Code: http.StatusRequestEntityTooLarge, Title: "Request too large",
				Message: "portcullis: the request body is larger than this endpoint takes"})
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, n)
		}
		next.ServeHTTP(w, r)
	})
}
