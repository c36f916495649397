package server

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portcullis-proxy/portcullis/internal/authenticate"
	"github.com/portcullis-proxy/portcullis/internal/policy"
)

// metrics are one Server's Prometheus collectors, on a registry of its own
// rather than the global one, so that servers (and tests) never share or
// collide.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// refused counts what a limit (LIMIT_*) refused, by the limit's name.
	refused *prometheus.CounterVec
	// connections is how many connections the main listener has open.
	connections prometheus.Gauge
	// decisions counts policy decisions by route, deciding rule and result.
	decisions *prometheus.CounterVec
	// signIns counts sign-in activity by action (sign-in, refused,
	// sign-out, ended); refreshes session refreshes by result.
	signIns, refreshes *prometheus.CounterVec
	// upstreamErrors counts failed round trips by route and cause.
	upstreamErrors *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_http_requests_total",
			Help: "HTTP requests served, by route (its `from` URL, \"internal\" or \"unmatched\"), status code and method. A stream counts when it ends.",
		}, []string{"route", "code", "method"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_http_request_duration_seconds",
			Help: "Time from a request's arrival to the end of its response, by route and method; streams (watch, exec) last as long as they are open.",
			// Prometheus' defaults stop at 10s; watches and logs -f run
			// for minutes, so add a few coarse buckets above.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route", "method"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_limit_refusals_total",
			Help: "Connections and requests refused at a limit (the LIMIT_* settings), by limit: connections, connections_per_client, sign_ins_per_minute, logins_per_minute, pending_sign_ins, sign_in_body_bytes, device_polls_per_minute (a fixed bound).",
		}, []string{"limit"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_connections_open",
			Help: "Connections open on the main listener (at most LIMIT_CONNECTIONS).",
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_policy_decisions_total",
			Help: "Policy decisions, by route (its `from` URL), deciding rule (\"policy[1].deny.or\"; \"none\" when no rule matched) and result: allow or deny.",
		}, []string{"route", "rule", "result"}),
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_sign_ins_total",
			Help: "Sign-in activity, by action: sign-in, sign-in-refused, sign-out, session-ended (by the identity provider at a refresh), and device sign-ins: device-approved, device-denied (by the person), device-sign-in (the device got its token).",
		}, []string{"action"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_upstream_errors_total",
			Help: "Failed round trips to a route's upstream, by route and cause: timeout, tls, refused, reset, unreachable, dns, closed, canceled, idle_timeout, other.",
		}, []string{"route", "cause"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_session_refreshes_total",
			Help: "Refreshes of sessions with the identity provider, by result: refreshed, refused, unreachable, grace_over, other_user.",
		}, []string{"result"}),
	}
	// Every action and result at zero from the start, so that a rate()
	// over them needs no first event.
	for _, a := range authenticate.Activities {
		m.signIns.WithLabelValues(a)
	}
	for _, r := range []string{authenticate.RefreshOK, authenticate.RefreshRefused, authenticate.RefreshUnreachable, authenticate.RefreshGraceOver, authenticate.RefreshOtherUser} {
		m.refreshes.WithLabelValues(r)
	}
	m.registry.MustRegister(
		m.requests,
		m.duration,
		m.refused,
		m.connections,
		m.decisions,
		m.signIns,
		m.refreshes,
		m.upstreamErrors,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) observe(route, method string, code int, d time.Duration) {
	method = methodLabel(method)
	m.requests.WithLabelValues(route, strconv.Itoa(code), method).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

// methodLabel bounds the method label: a client can send any token as a
// method, and every distinct label value is a new time series.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "OTHER"
}

// handler serves the Prometheus exposition of the registry, as /metrics on
// the metrics listener (metricsHandler).
func (m *metrics) handler(logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog: newErrorLog(logger.With("component", "promhttp")),
		// Also count scrape errors, on this registry.
		Registry: m.registry,
	})
}

// decisionCounters are a route's counters of portcullis_policy_decisions_total,
// found by rule without building label values on every request.
type decisionCounters struct {
	vec   *prometheus.CounterVec
	route string
	mu    sync.RWMutex
	m     map[decisionKey]prometheus.Counter // a struct key: a lookup allocates nothing
}

type decisionKey struct {
	rule  *policy.Rule
	allow bool
}

func (c *decisionCounters) inc(d policy.Decision) {
	k := decisionKey{d.Rule, d.Allow}
	c.mu.RLock()
	ctr, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		ctr.Inc()
		return
	}
	rule, result := "none", "deny"
	if d.Rule != nil {
		rule = d.Rule.Path
	}
	if d.Allow {
		result = "allow"
	}
	ctr = c.vec.WithLabelValues(c.route, rule, result)
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[decisionKey]prometheus.Counter)
	}
	c.m[k] = ctr
	c.mu.Unlock()
	ctr.Inc()
}

// tokenCacheCollector exports the hits and misses of the cache of verified
// tokens (session.VerifyCache): their ratio is the hit rate.
func tokenCacheCollector(stats func() (hits, misses uint64)) prometheus.Collector {
	return collectorSet{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "portcullis_token_cache_hits_total",
			Help: "Portcullis tokens answered from the cache of verified tokens, without verifying a signature.",
		}, func() float64 { h, _ := stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "portcullis_token_cache_misses_total",
			Help: "Portcullis tokens the cache of verified tokens did not hold, whose signature was verified.",
		}, func() float64 { _, m := stats(); return float64(m) }),
	}
}
