package server

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-proxy/portcullis/internal/audit"
	"github.com/portcullis-proxy/portcullis/internal/authenticate"
	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/kube"
	"github.com/portcullis-proxy/portcullis/internal/policy"
	"github.com/portcullis-proxy/portcullis/internal/respond"
	"github.com/portcullis-proxy/portcullis/internal/stream"
	"github.com/portcullis-proxy/portcullis/internal/tracing"
)

// auditor writes Portcullis's audit trail: an audit.k8s.io/v1 Event for
// every request on a Kubernetes route, as kube-apiserver writes its own,
// joined to the cluster's by the Audit-ID Portcullis sends it (AuditID),
// and one when each stream starts and ends. Sinks never hold a request:
// events wait in each sink's bounded queue (audit.Backend), and those a
// full queue turns away are counted and logged.
type auditor struct {
	policy   *audit.Policy
	backends []*audit.Backend
	written  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	sessions sessionExtras
}

// sessionExtras hands out the UserInfo.Extra that names a session in its
// events (audit.ExtraSessionID: the SessionHash of its id), one map per
// session, shared by all of the session's events and never changed once
// made. Made for each request, the hash and the map were a third of what
// auditing allocated per request.
//
// It keeps at most about maxSessionExtras sessions, and starts afresh past
// that: by then most of those it holds have ended, and one still going
// gets its map made again.
type sessionExtras struct {
	m sync.Map // session id → map[string][]string
	n atomic.Int64
}

// maxSessionExtras bounds sessionExtras: about 2 MiB.
const maxSessionExtras = 4096

// get returns the Extra of the session sessionID.
func (c *sessionExtras) get(sessionID string) map[string][]string {
	if v, ok := c.m.Load(sessionID); ok {
		return v.(map[string][]string)
	}
	extra := map[string][]string{audit.ExtraSessionID: {audit.SessionHash(sessionID)}}
	if c.n.Add(1) > maxSessionExtras {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(sessionID, extra)
	return extra
}

// auditWebhookTimeout bounds one POST of a batch to the audit webhook.
const auditWebhookTimeout = 10 * time.Second

// newAuditor opens the sinks AUDIT_LOG_PATH and AUDIT_WEBHOOK_CONFIG_FILE
// name, with the policy of AUDIT_POLICY_FILE (Metadata for every request
// without one); nil when neither sink is set.
func (s *Server) newAuditor() (*auditor, error) {
	o := s.opts
	if o.AuditLogPath == "" && o.AuditWebhookConfigFile == "" {
		return nil, nil
	}
	pol := audit.DefaultPolicy()
	if o.AuditPolicyFile != "" {
		var err error
		if pol, err = audit.LoadPolicy(o.AuditPolicyFile); err != nil {
			return nil, err
		}
	}
	a := &auditor{
		policy: pol,
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_audit_events_total",
			Help: "Audit events written, by sink: log (AUDIT_LOG_PATH) or webhook (AUDIT_WEBHOOK_CONFIG_FILE).",
		}, []string{"sink"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_audit_events_dropped_total",
			Help: "Audit events a sink lost, by sink and reason: queue_full (the sink is down or slow and its queue is full) or shutdown.",
		}, []string{"sink", "reason"}),
	}
	s.metrics.registry.MustRegister(a.written, a.dropped)
	add := func(name string, sink audit.Sink) {
		written := a.written.WithLabelValues(name)
		a.dropped.WithLabelValues(name, "queue_full")
		a.backends = append(a.backends, audit.NewBackend(sink, audit.BackendOptions{
			OnWritten: func(n int) { written.Add(float64(n)) },
			OnDropped: func(n int, reason string) { a.dropped.WithLabelValues(name, reason).Add(float64(n)) },
			Logger:    s.logger.With("component", "audit", "sink", name),
		}))
	}
	if o.AuditLogPath != "" {
		sink, err := audit.NewFileSink(o.AuditLogPath, o.AuditLogMaxSize, o.AuditLogMaxBackup)
		if err != nil {
			return nil, err
		}
		add("log", sink)
	}
	if o.AuditWebhookConfigFile != "" {
		sink, err := audit.NewWebhookSink(o.AuditWebhookConfigFile, auditWebhookTimeout)
		if err != nil {
			a.shutdown(context.Background())
			return nil, err
		}
		add("webhook", sink)
	}
	return a, nil
}

// closeAudit closes the audit sinks of a server that will not serve.
func (s *Server) closeAudit() {
	if s.audit != nil {
		s.audit.shutdown(context.Background())
	}
}

func (a *auditor) log(ev *audit.Event) {
	for _, b := range a.backends {
		b.Log(ev)
	}
}

// shutdown writes what the sinks still hold, until ctx ends.
func (a *auditor) shutdown(ctx context.Context) {
	for _, b := range a.backends {
		b.Shutdown(ctx) //nolint:errcheck // the backend counts and logs what it could not write
	}
}

// requestAudit is the audit record of one request on a Kubernetes route,
// filled in as the request goes: begun at authorization, written when the
// handler returns (and, for a stream, when it starts). The event's slice
// and pointers point into the record, so that it is one allocation, and
// the ResponseComplete event is the record's own: nothing changes it after.
type requestAudit struct {
	a    *auditor
	ev   audit.Event
	omit []audit.Stage // the stages the policy leaves out

	sourceIPs [1]string
	objectRef audit.ObjectReference
	status    audit.ResponseStatus
}

// finishAnnotations is how many annotations finish adds to every
// ResponseComplete event: latency and response-bytes (a stream's five
// more grow the map).
const finishAnnotations = 2

// beginAudit starts the audit record of r, a request on route authorized
// by d for id (nil on a public route), unless the policy's level for it is
// None. start is when the request arrived.
func (s *Server) beginAudit(r *http.Request, start time.Time, route string, info *kube.RequestInfo, id *identity.Identity, d policy.Decision) *requestAudit {
	a := s.audit
	if a == nil {
		return nil
	}
	attrs := audit.Attributes{Verb: info.Verb, ResourceRequest: info.IsResourceRequest, APIGroup: info.APIGroup,
		Resource: info.Resource, Subresource: info.Subresource, Namespace: info.Namespace, Name: info.Name, Path: r.URL.Path}
	if id != nil {
		attrs.User, attrs.Groups = id.Email, id.Groups
	}
	level, omit := a.policy.Level(attrs)
	if level == audit.LevelNone {
		return nil
	}
	ra := &requestAudit{a: a, ev: *audit.NewEvent(level, AuditID(r.Context()), start), omit: omit}
	ev := &ra.ev
	ev.RequestURI = r.URL.RequestURI()
	ev.Verb = info.Verb
	if id != nil {
		ev.User = audit.UserInfo{Username: id.Email, UID: id.User, Groups: id.Groups}
		if id.SessionID != "" {
			ev.User.Extra = a.sessions.get(id.SessionID)
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ra.sourceIPs[0] = host
		ev.SourceIPs = ra.sourceIPs[:]
	}
	ev.UserAgent = r.UserAgent()
	if info.IsResourceRequest {
		ra.objectRef = audit.ObjectReference{Resource: info.Resource, Subresource: info.Subresource,
			Namespace: info.Namespace, Name: info.Name, APIGroup: info.APIGroup, APIVersion: info.APIVersion}
		ev.ObjectRef = &ra.objectRef
	}
	// What an exec, attach or port-forward runs, as kube-apiserver's own
	// event does not say.
	var command, container, ports string
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		command, container, ports = strings.Join(q["command"], " "), q.Get("container"), strings.Join(q["ports"], ",")
	}
	traceID := tracing.TraceID(r.Context())
	// Sized for the annotations below and finish's, so that the
	// annotations of a request that is not a stream never grow.
	n := 3 + finishAnnotations
	for _, v := range []string{traceID, command, container, ports} {
		if v != "" {
			n++
		}
	}
	if d.Rule != nil {
		n++
	}
	if len(d.Reasons) > 0 {
		n++
	}
	ev.Annotations = make(audit.Annotations, 0, n)
	ev.Annotations.Set("portcullis.io/route", route)
	if d.Allow {
		ev.Annotations.Set("authorization.k8s.io/decision", "allow")
	} else {
		ev.Annotations.Set("authorization.k8s.io/decision", "forbid")
	}
	ev.Annotations.Set("authorization.k8s.io/reason", d.Message())
	if traceID != "" {
		ev.Annotations.Set("portcullis.io/trace-id", traceID)
	}
	if d.Rule != nil {
		ev.Annotations.Set("portcullis.io/rule", d.Rule.Path)
	}
	if len(d.Reasons) > 0 {
		ev.Annotations.Set("portcullis.io/reasons", strings.Join(d.Reasons, ","))
	}
	if command != "" {
		ev.Annotations.Set("portcullis.io/command", command)
	}
	if container != "" {
		ev.Annotations.Set("portcullis.io/container", container)
	}
	if ports != "" {
		ev.Annotations.Set("portcullis.io/ports", ports)
	}
	if st := stateFrom(r.Context()); st != nil {
		st.audit = ra // for forwardedAs
	}
	return ra
}

// forwardedAs completes the audit event of the request whose context ctx
// is with who the cluster was asked to act as (proxy.Options.ForwardedAs),
// when that is not the person as they are: a route's identity mapping, or
// kubectl --as with the person as impersonator. kube-apiserver's event for
// the request records the same impersonatedUser.
func forwardedAs(ctx context.Context, user string, groups []string, impersonator string) {
	st := stateFrom(ctx)
	if st == nil || st.audit == nil {
		return
	}
	ev := &st.audit.ev
	if impersonator == "" && user == ev.User.Username && slices.Equal(groups, ev.User.Groups) {
		return
	}
	u := audit.UserInfo{Username: user, Groups: groups}
	if impersonator != "" {
		u.Extra = map[string][]string{kube.ExtraImpersonator: {impersonator}}
	}
	ev.ImpersonatedUser = &u
}

// streamStarted writes the ResponseStarted event of a stream, when the
// upstream has answered with code. It is called, if at all, while the
// handler runs: before finish.
func (ra *requestAudit) streamStarted(st *stream.Stream, code int) {
	if slices.Contains(ra.omit, audit.StageResponseStarted) {
		return
	}
	ev := ra.ev
	ev.Annotations = cloneAnnotations(ra.ev.Annotations, 1)
	ev.Stage, ev.StageTimestamp = audit.StageResponseStarted, time.Now()
	ev.ResponseStatus = &audit.ResponseStatus{Code: code}
	ev.Annotations.Set("portcullis.io/stream", string(st.Info.Kind))
	ra.a.log(&ev)
}

// finish writes the ResponseComplete event: the response's code and size,
// the time taken, and for a stream the bytes each way and how it ended.
// It is the record's last event, so it is the record's own event, filled
// in.
func (ra *requestAudit) finish(w *responseWriter, st *stream.Stream, panicked bool) {
	ev := &ra.ev
	ev.Stage, ev.StageTimestamp = audit.StageResponseComplete, time.Now()
	if panicked {
		ev.Stage = audit.StagePanic
	}
	if slices.Contains(ra.omit, ev.Stage) {
		return
	}
	code := w.finalStatus(panicked)
	ra.status = audit.ResponseStatus{Code: code}
	if code >= 400 {
		ra.status.Status = "Failure"
		ra.status.Reason = respond.StatusReason(code)
	}
	ev.ResponseStatus = &ra.status
	ev.Annotations.Set("portcullis.io/latency", ev.StageTimestamp.Sub(ev.RequestReceivedTimestamp).String())
	ev.Annotations.Set("portcullis.io/response-bytes", strconv.FormatInt(w.bytes, 10))
	if st != nil {
		from, to := st.Bytes()
		ev.Annotations.Set("portcullis.io/stream", string(st.Info.Kind))
		ev.Annotations.Set("portcullis.io/bytes-from-upstream", strconv.FormatInt(from, 10))
		ev.Annotations.Set("portcullis.io/bytes-to-upstream", strconv.FormatInt(to, 10))
		ev.Annotations.Set("portcullis.io/stream-ended-by", "client or upstream")
		if e := st.Ended(); e != nil {
			ev.Annotations.Set("portcullis.io/stream-ended-by", "portcullis")
			ev.Annotations.Set("portcullis.io/stream-ended-reason", e.Message)
		}
	}
	ra.a.log(ev)
}

// cloneAnnotations returns a copy of a with room for more.
func cloneAnnotations(a audit.Annotations, more int) audit.Annotations {
	return append(make(audit.Annotations, 0, len(a)+more), a...)
}

// recordActivity counts, and writes the audit event of, a sign-in, a refused sign-in, a
// sign-out or a session the identity provider ended (authenticate's
// Record), at the level the policy gives the person and the action (as
// the verb, on the request's path). r is nil for a session a background
// refresh ended. The query is never recorded: a sign-in's holds the
// provider's code.
func (s *Server) recordActivity(r *http.Request, act authenticate.Activity) {
	s.metrics.signIns.WithLabelValues(act.Action).Inc()
	a := s.audit
	if a == nil {
		return
	}
	attrs := audit.Attributes{User: act.Email, Verb: act.Action}
	received := time.Now()
	auditID := newAuditID()
	if r != nil {
		attrs.Path = r.URL.Path
		if id := AuditID(r.Context()); id != "" {
			auditID = id
		}
	}
	level, omit := a.policy.Level(attrs)
	if level == audit.LevelNone || slices.Contains(omit, audit.StageResponseComplete) {
		return
	}
	ev := audit.NewEvent(level, auditID, received)
	ev.Stage, ev.StageTimestamp = audit.StageResponseComplete, received
	ev.Verb = act.Action
	ev.User = audit.UserInfo{Username: act.Email, UID: act.Subject}
	if act.SessionID != "" {
		ev.User.Extra = a.sessions.get(act.SessionID)
	}
	ev.Annotations = audit.Annotations{{Key: "portcullis.io/activity", Value: act.Action}}
	if act.Reason != "" {
		ev.Annotations.Set("portcullis.io/reason", act.Reason)
	}
	if act.Route != "" {
		ev.Annotations.Set("portcullis.io/route", act.Route)
	}
	if r != nil {
		ev.RequestURI = r.URL.Path
		ev.UserAgent = r.UserAgent()
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			ev.SourceIPs = []string{host}
		}
	}
	a.log(ev)
}
