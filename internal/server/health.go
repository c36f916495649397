package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// Portcullis's own health endpoints. On the main listener (router.go):
//
//   - /ping, liveness, on every host: 200 "OK" while the process serves.
//     kube-apiserver has no /ping (its ping check is /healthz/ping).
//   - /.pomerium/healthz, readiness, on every host: the one to probe.
//     Pomerium keeps /.pomerium/ on every route host for itself, so no
//     upstream of a migrated route has anything there.
//   - /healthz, readiness, on every host but a Kubernetes route's, as
//     Pomerium serves it; on a Kubernetes route it is kube-apiserver's.
//
// On the metrics listener (METRICS_ADDRESS), which no route shares:
// /ping, and readiness as /healthz and /readyz.
const (
	pathPing      = "/ping"
	pathHealthz   = "/healthz"
	pathReadiness = "/.pomerium/healthz"
)

// servePing answers liveness checks: the process is up and serving. It
// checks nothing else, so that a dependency that is down makes the server
// not ready, never restarted.
func servePing(w http.ResponseWriter, r *http.Request) {
	if !allowGetOrHead(w, r) {
		return
	}
	const body = "OK\n"
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(body))
}

// A readinessCheck checks a condition the server needs in order to take
// new work. While it returns an error, readiness answers 503 and shows the
// error's text: it must say what is wrong without a secret in it (no
// password, no connection string), since anyone who can probe reads it.
type readinessCheck func(context.Context) error

// errShuttingDown is the shutdown check's error: once shutdown has begun,
// load balancers must move new work elsewhere while in-flight requests
// finish.
var errShuttingDown = errors.New("shutting down")

// readinessChecks lists what readiness checks, in order. A dependency the
// server cannot serve without (a shared session store) belongs here.
func (s *Server) readinessChecks() []readinessCheck {
	return []readinessCheck{
		func(context.Context) error {
			if s.shuttingDown.Load() {
				return errShuttingDown
			}
			return nil
		},
		func(context.Context) error {
			// A replica that cannot reach the shared session store
			// cannot sign anyone in: let the load balancer prefer
			// another.
			if s.storeReady != nil {
				return s.storeReady()
			}
			return nil
		},
	}
}

// serveHealthz answers readiness checks: 200 {"status":"ready"} when every
// readiness check passes; else 503 with the failures' texts as the status,
// e.g. {"status":"shutting down"}.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	serveReadiness(w, r, s.readinessChecks())
}

func serveReadiness(w http.ResponseWriter, r *http.Request, checks []readinessCheck) {
	if !allowGetOrHead(w, r) {
		return
	}
	var failed []string
	for _, check := range checks {
		if err := check(r.Context()); err != nil {
			failed = append(failed, err.Error())
		}
	}
	code, status := http.StatusOK, "ready"
	if failed != nil {
		code, status = http.StatusServiceUnavailable, strings.Join(failed, "; ")
	}
	writeJSON(w, code, struct {
		Status string `json:"status"`
	}{status})
}

func allowGetOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	respond.Error(w, r, respond.Problem{Code: http.StatusMethodNotAllowed,
		Message: fmt.Sprintf("portcullis: %s is not allowed on %s; use GET or HEAD", r.Method, r.URL.Path)})
	return false
}

// metricsHandler serves the metrics listener: Prometheus /metrics, and
// the health endpoints for probes that should reach neither TLS nor the
// routes: /ping (liveness), /healthz and /readyz (readiness, as
// kube-apiserver and Pomerium's health listener name it); and the admin
// API (admin.go).
func (s *Server) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.handler(s.logger))
	mux.HandleFunc(pathPing, servePing)
	mux.HandleFunc(pathHealthz, s.serveHealthz)
	mux.HandleFunc("/readyz", s.serveHealthz)
	mux.Handle(adminPrefix, s.adminHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		respond.Error(w, r, respond.Problem{Code: http.StatusNotFound,
			Message: "portcullis: the metrics listener serves GET /metrics, /ping, /healthz, /readyz and the admin API at /admin/v1/ only"})
	})
	return mux
}
