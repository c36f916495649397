package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/authenticate"
	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/stream"
	"github.com/portcullis-proxy/portcullis/internal/tracing"
)

// DefaultShutdownTimeout is how long Run and Serve let in-flight requests
// and upgraded streams go on after their context is done, unless
// Server.ShutdownTimeout says otherwise.
const DefaultShutdownTimeout = 30 * time.Second

const (
	// readHeaderTimeout bounds the time a client may take to send a
	// request's headers (slowloris). It is the only read bound on the main
	// listener: see newMainServer.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes keep-alive connections with no request in flight.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds request headers; Kubernetes' own default is 1 MiB.
	maxHeaderBytes = 1 << 20
	// metricsTimeout bounds a whole scrape on the metrics listener, which
	// has no long-lived streams.
	metricsTimeout = 30 * time.Second
)

// Server serves Portcullis's main listener and, when configured, its
// metrics listener. Create it with New; serve with Run (listens on the
// configured addresses) or Serve (on listeners the caller made).
type Server struct {
	// ShutdownTimeout bounds graceful shutdown: how long in-flight requests
	// and upgraded streams may go on after the context passed to Run or
	// Serve is done, before their connections are closed. New sets it to
	// DefaultShutdownTimeout (as does zero); change it before calling Run
	// or Serve.
	ShutdownTimeout time.Duration

	opts      *config.Options
	logger    *slog.Logger
	tlsConfig *tls.Config // nil: plain HTTP (INSECURE_SERVER)
	metrics   *metrics
	handler   http.Handler  // the whole pipeline: see pipeline
	hijacked  *connTracker  // connections handlers took over (upgrades)
	keys      *session.Keys // signs and verifies Portcullis tokens

	// live is the configuration in force: routes, policies, proxies, the
	// identity provider, the certificate (generation.go). A reload swaps
	// it whole (reload.go).
	live atomic.Pointer[generation]
	// forRoute, if set, replaces the route handler (tests).
	forRoute func(*config.Route) (http.Handler, error)
	// streams are the long-lived requests open, ended when the access
	// they were opened with ends (streams.go).
	streams *stream.Registry
	// streamCheck asks the stream checker to look now (after a reload).
	streamCheck chan struct{}
	// reload is what reloading needs (reload.go).
	reload reloadState
	// audit writes the audit trail (audit.go); nil without a sink.
	audit *auditor
	// tracer makes the spans of requests; nil with tracing off (see
	// SetTracer).
	tracer *tracing.Tracer

	// tokens remembers the tokens keys verified, for every route: see
	// verifyToken (route.go).
	tokens *session.VerifyCache
	auth   *authenticate.Authenticator // sign-in and identification
	// closeStore ends the session store's connections and goroutines,
	// after shutdown; storeReady, if set, says whether a shared store's
	// database answers (readiness).
	closeStore func()
	storeReady func() error

	// bodyReadTimeout bounds the arrival of a request body (guard.go);
	// defaultBodyReadTimeout unless a test shortens it.
	bodyReadTimeout time.Duration

	// refusals paces the log lines of refusals at a limit (limits.go).
	refusals refusalLog

	// shuttingDown turns readiness (health.go) to 503 once shutdown has
	// begun, so load balancers stop sending new work while in-flight
	// requests finish.
	shuttingDown atomic.Bool

	mu          sync.Mutex
	served      bool
	addr        net.Addr
	metricsAddr net.Addr
	ready       chan struct{} // closed once Serve is accepting connections
}

// New checks opts for what the server itself needs (a certificate unless
// INSECURE_SERVER is set, routes with distinct hosts) and builds the
// request pipeline. It does not listen: see Run and Serve. A nil logger
// discards logs.
func New(opts *config.Options, logger *slog.Logger) (*Server, error) {
	return newServer(opts, logger, nil)
}

// newServer is New with the per-route handler as a parameter, so tests can
// put a handler of their own behind the real middleware and router.
// A nil forRoute means the real route handler (routeHandler).
func newServer(opts *config.Options, logger *slog.Logger, forRoute func(*config.Route) (http.Handler, error)) (*Server, error) {
	if opts == nil {
		return nil, errors.New("creating server: no options")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The same checks as --check-config (Checks): what it refuses, the
	// server refuses, with the same problems, all at once.
	if err := opts.Check(Checks()...); err != nil {
		return nil, &ConfigError{err}
	}
	for _, w := range opts.Warnings() {
		logger.Warn(w.Error())
	}
	s := &Server{
		ShutdownTimeout: DefaultShutdownTimeout,
		opts:            opts,
		logger:          logger,
		metrics:         newMetrics(),
		hijacked:        newConnTracker(),
		forRoute:        forRoute,
		streams:         stream.NewRegistry(),
		streamCheck:     make(chan struct{}, 1),
		bodyReadTimeout: defaultBodyReadTimeout,
		ready:           make(chan struct{}),
	}
	s.metrics.registry.MustRegister(streamCollector{s.streams}, s.reload.metrics())
	if !opts.InsecureServer {
		s.tlsConfig = s.newTLSConfig()
	}
	keys, err := newKeys(opts)
	if err != nil {
		return nil, fmt.Errorf("creating server: %w", err)
	}
	s.keys = keys
	s.tokens = session.NewVerifyCache(keys, session.DefaultVerifyCacheSize)
	s.metrics.registry.MustRegister(tokenCacheCollector(s.tokens.Stats))
	// The provider first: it fills in settings of opts (the built-in one's
	// issuer and client), which the generation then holds.
	provider, builtinIDP, err := s.newProvider(opts)
	if err != nil {
		return nil, fmt.Errorf("creating server: %w", err)
	}
	if s.audit, err = s.newAuditor(); err != nil {
		return nil, fmt.Errorf("creating server: opening the audit trail: %w", err)
	}
	if s.auth, err = s.newAuthenticator(provider); err != nil {
		s.closeAudit()
		return nil, fmt.Errorf("creating server: %w", err)
	}
	first := &generation{opts: opts, provider: provider, builtinIDP: builtinIDP}
	g, err := s.newGeneration(opts, first)
	if err != nil {
		if s.closeStore != nil {
			s.closeStore() // opened by newAuthenticator, and of no use now
		}
		s.closeAudit()
		return nil, fmt.Errorf("creating server: %w", err)
	}
	s.live.Store(g)
	s.handler = s.pipeline(http.HandlerFunc(s.serveRoutes))
	return s, nil
}

// Run listens on the configured ADDRESS and, if set, METRICS_ADDRESS, and
// serves until ctx is done; then it shuts down gracefully (see Serve).
// SetTracer turns tracing on: every request gets spans for itself, its
// authentication, its authorization and its round trip upstream, and the
// upstream gets its traceparent. Call it before Run or Serve; the caller
// shuts t down after they return.
func (s *Server) SetTracer(t *tracing.Tracer) { s.tracer = t }

func (s *Server) Run(ctx context.Context) error {
	if s.opts.Address == "" {
		return errors.New("listening: no address configured (ADDRESS)")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("listening on %s (ADDRESS): %w", s.opts.Address, err)
	}
	var metricsLn net.Listener
	if s.opts.MetricsAddress != "" {
		metricsLn, err = lc.Listen(ctx, "tcp", s.opts.MetricsAddress)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening on %s (METRICS_ADDRESS): %w", s.opts.MetricsAddress, err)
		}
	}
	return s.Serve(ctx, ln, metricsLn)
}

// Serve serves the main pipeline on ln (with TLS unless INSECURE_SERVER is
// set) and Prometheus metrics on metricsLn, which may be nil. It returns
// when ctx is done and shutdown has finished, or when a listener fails.
//
// Shutdown: readiness turns to 503, the listeners close, and in-flight
// requests and hijacked (upgraded) connections get ShutdownTimeout to
// finish; whatever is left is then closed. Serve closes both listeners and
// may be called only once per Server.
func (s *Server) Serve(ctx context.Context, ln, metricsLn net.Listener) error {
	fail := func(err error) error {
		for _, l := range []net.Listener{ln, metricsLn} {
			if l != nil {
				l.Close()
			}
		}
		return err
	}
	if ln == nil {
		return fail(errors.New("serving: no listener"))
	}
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return fail(errors.New("serving: Serve was already called on this server"))
	}
	s.served = true
	s.addr = ln.Addr()
	if metricsLn != nil {
		s.metricsAddr = metricsLn.Addr()
	}
	s.mu.Unlock()

	ln = s.limitListener(ln)
	errc := make(chan error, 2)
	pending := 1 // servers whose Serve has not returned

	main := s.newMainServer()
	go func() {
		var err error
		if s.tlsConfig != nil {
			err = main.ServeTLS(ln, "", "")
		} else {
			err = main.Serve(ln)
		}
		errc <- fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	}()
	var others []*http.Server
	if metricsLn != nil {
		msrv := s.newMetricsServer()
		others = append(others, msrv)
		pending++
		go func() {
			errc <- fmt.Errorf("serving metrics on %s: %w", metricsLn.Addr(), msrv.Serve(metricsLn))
		}()
	}

	if s.tlsConfig == nil {
		// Dangerous switches log at start (STYLE.md): without TLS, session
		// cookies and bearer tokens cross the network in the clear.
		s.logger.Warn("INSECURE_SERVER is set: serving plain HTTP without TLS; "+
			"only do this behind a proxy or load balancer that terminates TLS",
			"address", ln.Addr().String())
	}
	attrs := []any{"address", ln.Addr().String(), "tls", s.tlsConfig != nil, "routes", len(s.opts.Routes)}
	if metricsLn != nil {
		attrs = append(attrs, "metrics_address", metricsLn.Addr().String())
	}
	s.logger.Info("serving", attrs...)
	close(s.ready)

	// Open streams are checked until the very end: through the drain too.
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	go s.watchStreams(bg)
	s.reload.mu.Lock()
	reloadable := s.reload.load != nil
	s.reload.mu.Unlock()
	if reloadable {
		go s.watchFiles(ctx)
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		pending--
		s.logger.Error("listener failed; shutting down", "error", err)
	}

	// Stop the main listener first and the metrics one last, so the drain
	// itself can still be scraped.
	s.shutdown(ctx, main, others...)
	for ; pending > 0; pending-- {
		if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
			err = e
		}
	}
	return err
}

// shutdown drains main, then the hijacked connections, then the others,
// all within one ShutdownTimeout, and closes whatever is still open then.
func (s *Server) shutdown(ctx context.Context, main *http.Server, others ...*http.Server) {
	s.shuttingDown.Store(true)
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	s.logger.Info("shutting down", "timeout", timeout)
	// The parent ctx is already done; keep its values, not its cancellation.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()

	// http.Server.Shutdown closes the listener and idle connections and
	// waits for active ones, but not for hijacked ones: net/http handed
	// those to the handler (ReverseProxy's 101 Switching Protocols path),
	// so the tracker waits for them.
	graceful := main.Shutdown(sctx) == nil
	graceful = s.hijacked.wait(sctx) == nil && graceful
	for _, o := range others {
		graceful = o.Shutdown(sctx) == nil && graceful
	}
	if !graceful {
		s.logger.Warn("graceful shutdown timed out; closing the remaining connections",
			"timeout", timeout, "upgraded_connections", s.hijacked.len())
		main.Close()
		s.hijacked.closeAll()
		for _, o := range others {
			o.Close()
		}
	}
	s.current().close() // idle upstream connections
	if s.closeStore != nil {
		// After every request that could use it, and the refreshes they
		// started, whose answers must be stored.
		s.auth.WaitForRefreshes(sctx)
		s.closeStore()
	}
	if s.audit != nil {
		// Last: every request and stream has written its events.
		s.audit.shutdown(sctx)
	}
	s.logger.Info("stopped")
}

// newMainServer builds the http.Server for the main listener.
func (s *Server) newMainServer() *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	var tlsConfig *tls.Config
	if s.tlsConfig != nil {
		// HTTP/2 only over TLS, negotiated by ALPN; h2c is not offered.
		// SPDY (kubectl exec on older clients) asks for http/1.1 by ALPN.
		protocols.SetHTTP2(true)
		tlsConfig = s.tlsConfig.Clone()
	}
	return &http.Server{
		Handler:           s.handler,
		TLSConfig:         tlsConfig,
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// No ReadTimeout or WriteTimeout: they bound a whole request, and
		// kubectl's watch, logs -f, exec and port-forward streams must
		// never be cut. Per-route timeouts belong to the proxy.
		ErrorLog: newErrorLog(s.logger.With("component", "net/http")),
	}
}

// newMetricsServer builds the http.Server for the metrics listener.
func (s *Server) newMetricsServer() *http.Server {
	return &http.Server{
		Handler:           s.metricsHandler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       metricsTimeout,
		WriteTimeout:      metricsTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          newErrorLog(s.logger.With("component", "net/http", "listener", "metrics")),
	}
}

// Ready is closed once Serve is accepting connections; after that Addr
// (and MetricsAddr, if metrics are served) report the bound addresses.
// Tests use it to wait for a server started on ":0".
//
//deadcode:testonly tests wait here for a server on ":0" to listen
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the main listener's address, or nil before Serve has begun.
// With ADDRESS=127.0.0.1:0 it is how a caller learns the port; tests use it.
//
//deadcode:testonly tests find the port of a server on ":0" here
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// MetricsAddr is the metrics listener's address, or nil when metrics are
// not served or Serve has not begun. Tests use it, as they use Addr.
//
//deadcode:testonly tests find the metrics port of a server on ":0" here
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metricsAddr
}
