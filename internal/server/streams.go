package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-proxy/portcullis/internal/authenticate"
	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/kube"
	"github.com/portcullis-proxy/portcullis/internal/policy"
	"github.com/portcullis-proxy/portcullis/internal/proxy"
	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/stream"
)

// streamCheckInterval is how often every open stream's access is checked
// again: a sign-out on any replica, an expired session or a policy change
// ends the streams it opened within this and the time to end them.
// Checking is a lookup in the session store's memory and a policy
// evaluation per stream, microseconds each.
const streamCheckInterval = 250 * time.Millisecond

// streamKind says whether r opens a long-lived request that must end when
// the person's access does, and what kind. info is the Kubernetes
// request, on a Kubernetes route.
func streamKind(r *http.Request, kubernetes bool, info *kube.RequestInfo) (stream.Kind, bool) {
	upgrade := proxy.IsUpgrade(r.Header)
	if !kubernetes {
		return stream.Upgrade, upgrade
	}
	switch {
	case info.Verb == "watch":
		return stream.Watch, true
	case info.Resource == "pods" && info.Subresource == "log":
		v, ok := r.URL.Query()["follow"]
		return stream.Log, ok && len(v) > 0 && kube.QueryBool(v[0])
	case info.Subresource == "exec" && upgrade:
		return stream.Exec, true
	case info.Subresource == "attach" && upgrade:
		return stream.Attach, true
	case info.Subresource == "portforward" && upgrade:
		return stream.PortForward, true
	}
	return stream.Upgrade, upgrade
}

// streamAttrs is what a stream keeps to be decided again: the policy
// input its request was allowed with.
type streamAttrs struct {
	req policy.Request
}

// streamInfo describes the stream r opens on route, allowed with req.
func (s *Server) streamInfo(kind stream.Kind, route *config.Route, r *http.Request, req *policy.Request) stream.Info {
	attrs := &streamAttrs{req: *req}
	info := stream.Info{Kind: kind, Route: route.From.String(), Host: config.CanonicalHost(r.Host),
		Method: r.Method, Path: r.URL.Path, Attrs: attrs}
	if id := identity.FromContext(r.Context()); id != nil {
		info.User, info.Email, info.SessionID, info.Expiry = id.User, id.Email, id.SessionID, id.Expiry
		if id.SessionID != "" {
			// streamAccess decides a session's stream on the person as
			// the session describes them then; the request's person,
			// with the session's groups and claims they point to, would
			// only be held for the stream's life.
			attrs.req.Email, attrs.req.Groups, attrs.req.Claims = "", nil, nil
		}
	}
	return info
}

// checkStreamsNow asks the stream checker to look at once (a reload).
func (s *Server) checkStreamsNow() {
	select {
	case s.streamCheck <- struct{}{}:
	default: // one is already asked for
	}
}

// watchStreams checks every open stream's access every
// streamCheckInterval, and when asked to, until ctx is done.
func (s *Server) watchStreams(ctx context.Context) {
	t := time.NewTicker(streamCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.streamCheck:
		}
		s.checkStreams(ctx)
	}
}

// checkStreams ends every open stream whose access has ended.
func (s *Server) checkStreams(ctx context.Context) {
	g := s.current()
	now := time.Now()
	sessions := make(map[string]sessionLookup) // one store lookup per session
	for _, st := range s.streams.Snapshot() {
		if st.Ended() != nil {
			continue
		}
		e, end := s.streamAccess(ctx, g, st, now, sessions)
		if !end {
			continue
		}
		s.logger.Info("ending a stream: the access it was opened with ended",
			"kind", st.Info.Kind, "route", st.Info.Route, "email", st.Info.Email, "path", st.Info.Path,
			"opened", st.Opened, "reason", e.Message)
		st.End(e)
	}
}

// sessionEnded is what a stream whose session ended says, however it
// ended: a sign-out, an expiry, an administrator.
var sessionEnded = stream.Ending{Code: http.StatusUnauthorized,
	Message: "portcullis: your session ended (signed out, expired or revoked by an administrator); sign in again"}

type sessionLookup struct {
	sess *session.Session
	err  error
}

// streamAccess decides whether stream st may go on: its session must be
// live and still the person's (or, with no session, its credential
// unexpired), and its route's policy in g must still allow its request,
// for the person as the session now describes them (a refresh may have
// changed their groups).
func (s *Server) streamAccess(ctx context.Context, g *generation, st *stream.Stream, now time.Time, sessions map[string]sessionLookup) (stream.Ending, bool) {
	info := st.Info
	attrs, _ := info.Attrs.(*streamAttrs)
	if attrs == nil {
		return stream.Ending{}, false
	}
	req := attrs.req
	req.Time = now
	switch {
	case info.SessionID != "":
		l, ok := sessions[info.SessionID]
		if !ok {
			l.sess, l.err = s.auth.CurrentSession(ctx, info.SessionID)
			sessions[info.SessionID] = l
		}
		switch {
		case errors.Is(l.err, authenticate.ErrStoreUnavailable):
			// Past the store's grace: as a new request would be refused,
			// so is going on.
			return stream.Ending{Code: http.StatusServiceUnavailable,
				Message: "portcullis: " + authenticate.ErrStoreUnavailable.Error()}, true
		case l.err != nil || l.sess.Subject != info.User:
			return sessionEnded, true
		}
		setPerson(&req, authenticate.SessionIdentity(l.sess))
	case info.User != "" && !info.Expiry.IsZero() && !now.Before(info.Expiry):
		return stream.Ending{Code: http.StatusUnauthorized,
			Message: "portcullis: the credential this stream was opened with expired; run the command again"}, true
	}
	rs := g.routes[info.Host]
	if rs == nil {
		return stream.Ending{Code: http.StatusForbidden,
			Message: fmt.Sprintf("portcullis: the route %s is no longer configured", info.Route)}, true
	}
	if d := rs.policy.Evaluate(&req); !d.Allow {
		// The same words a new request gets, after what changed.
		return stream.Ending{Code: http.StatusForbidden, Message: "portcullis: this stream is no longer allowed: " + d.Message()}, true
	}
	return stream.Ending{}, false
}

// streamCollector exports the open streams by kind, and how many were
// ended because access ended.
type streamCollector struct{ reg *stream.Registry }

var (
	streamsOpenDesc = prometheus.NewDesc("portcullis_streams_open",
		"Long-lived requests open (watch, log, exec, attach, portforward, upgrade), by kind.", []string{"kind"}, nil)
	streamsEndedDesc = prometheus.NewDesc("portcullis_streams_ended_total",
		"Long-lived requests Portcullis ended because the access they were opened with ended (sign-out, expiry, policy), by kind.", []string{"kind"}, nil)
)

func (c streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- streamsOpenDesc
	ch <- streamsEndedDesc
}

func (c streamCollector) Collect(ch chan<- prometheus.Metric) {
	open, ended := c.reg.Counts()
	for _, k := range stream.Kinds {
		ch <- prometheus.MustNewConstMetric(streamsOpenDesc, prometheus.GaugeValue, float64(open[k]), string(k))
		ch <- prometheus.MustNewConstMetric(streamsEndedDesc, prometheus.CounterValue, float64(ended[k]), string(k))
	}
}
