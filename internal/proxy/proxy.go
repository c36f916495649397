package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/kube"
	"github.com/portcullis-proxy/portcullis/internal/respond"
	"github.com/portcullis-proxy/portcullis/internal/stream"
)

// Proxy forwards the requests of one route. It is built once per route and
// safe for concurrent use.
type Proxy struct {
	route       *config.Route
	kubernetes  bool
	saToken     kube.TokenSource // Kubernetes routes only
	imp         kube.Impersonator
	assert      func(*identity.Identity, string) (string, error)
	auditID     func(context.Context) string
	traceCtx    func(context.Context, http.Header)
	forwardedAs func(ctx context.Context, user string, groups []string, impersonator string)
	failed      func(kind string)
	cookieName  string
	targets     *failover
	reviews     *impersonationReviews // kubectl --as, on a Kubernetes route
	rp          *httputil.ReverseProxy
	rpStream    *httputil.ReverseProxy // rp with small copy buffers, for watches
	logger      *slog.Logger
}

// Options are what a Proxy needs besides its route.
type Options struct {
	// CookieName is the session cookie, removed before a request goes
	// upstream.
	CookieName string
	// Assert signs the identity assertion of a route with
	// pass_identity_headers (the X-Pomerium-Jwt-Assertion header) for the
	// person and the route's host; required for such a route.
	Assert func(id *identity.Identity, audience string) (string, error)
	// AuditID returns the audit id of the request whose context it is
	// given: a Kubernetes route sends it to kube-apiserver as Audit-ID, so
	// that the cluster's audit event for the request carries Portcullis's
	// id. Optional.
	AuditID func(ctx context.Context) string
	// UpstreamFailed, if set, is told the kind of every failed round trip
	// to the upstream (see upstreamProblem; "idle_timeout" for idle_timeout),
	// for the metrics.
	UpstreamFailed func(kind string)
	// ForwardedAs, if set, is told, for each request a Kubernetes route
	// forwards, who the cluster is asked to act as: the person as the
	// route maps them, or whom kubectl --as asked for, with the person
	// as impersonator (else ""). For the audit trail.
	ForwardedAs func(ctx context.Context, user string, groups []string, impersonator string)
	// TraceContext, if set, sets the trace context of the request whose
	// context it is given on the upstream request's header (the W3C
	// traceparent), so that the upstream's spans join Portcullis's trace.
	TraceContext func(ctx context.Context, h http.Header)
	Logger       *slog.Logger
}

// The W3C trace context headers (https://www.w3.org/TR/trace-context/).
const (
	headerTraceParent = "Traceparent"
	headerTraceState  = "Tracestate"
)

// headerAssertion carries the signed identity assertion to the upstream,
// under Pomerium's name.
const headerAssertion = "X-Pomerium-Jwt-Assertion"

// New builds the proxy of a route: its transports, its upstream list and,
// for a Kubernetes route, its service-account token source (a token file is
// read now, so a missing file fails start-up, and re-read when it changes).
func New(route *config.Route, opts Options) (*Proxy, error) {
	if len(route.To) == 0 {
		return nil, fmt.Errorf("route %s: no upstream (`to`)", route.From)
	}
	if route.PassIdentityHeaders && opts.Assert == nil {
		return nil, fmt.Errorf("route %s: pass_identity_headers, but nothing to sign the assertion with", route.From)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("route", route.From.String())
	tlsConfig, err := upstreamTLS(route)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", route.From, err)
	}
	h2, h1 := newTransports(tlsConfig)
	if opts.UpstreamFailed == nil {
		opts.UpstreamFailed = func(string) {}
	}
	p := &Proxy{
		route:       route,
		kubernetes:  route.IsKubernetes(),
		assert:      opts.Assert,
		auditID:     opts.AuditID,
		traceCtx:    opts.TraceContext,
		forwardedAs: opts.ForwardedAs,
		failed:      opts.UpstreamFailed,
		imp:         kube.Impersonator{AllowSystemNames: route.KubernetesAllowSystemNames},
		cookieName:  opts.CookieName,
		targets:     &failover{targets: route.To, rt: byProtocol{h2: h2, h1: h1}},
		logger:      logger,
	}
	if p.kubernetes {
		if route.KubernetesServiceAccountTokenFile != "" {
			ft, err := kube.NewFileToken(route.KubernetesServiceAccountTokenFile, logger)
			if err != nil {
				return nil, fmt.Errorf("route %s: %w", route.From, err)
			}
			p.saToken = ft
		} else {
			p.saToken = kube.StaticToken(route.KubernetesServiceAccountToken)
		}
	}
	p.reviews = &impersonationReviews{rt: p.targets, target: p.targets.pick, imp: p.imp}
	var rt http.RoundTripper = requireFraming{p.targets}
	if p.kubernetes {
		rt = requireImpersonation{rt}
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		ModifyResponse: p.modifyResponse,
		Transport:      rt,
		ErrorHandler:   p.upstreamError,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BufferPool:     &bufferPool{},
	}
	// A watch or a followed log holds its copy buffer for as long as it
	// is open, minutes to hours, mostly idle, and its events are small:
	// 4 KiB instead of 32 KiB each keeps 10,000 open watches from holding
	// 320 MB of buffers (bench/ANALYSIS.md).
	stream := *p.rp
	stream.BufferPool = streamBuffers{}
	p.rpStream = &stream
	// No FlushInterval: ReverseProxy already flushes the headers and every
	// write of a response without a Content-Length (a watch, `kubectl logs
	// -f`) at once, so events reach kubectl as they happen. A response of
	// known length is left to the server's buffering instead of costing an
	// HTTP/2 frame, a TLS record and a write system call per 32 KiB copy.
	return p, nil
}

// copyBufferSize is the size of the buffers a response body is copied
// through: the size ReverseProxy allocates when it has no pool.
const copyBufferSize = 32 << 10

// bufferPool lends ReverseProxy its copy buffers. Without one it allocates
// 32 KiB for every response, the largest allocation of a proxied request
// by far (BenchmarkProxyKubernetesGET). Buffers are kept as array
// pointers, so that neither Get nor Put allocates.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[copyBufferSize]byte); ok {
		return b[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (p *bufferPool) Put(b []byte) {
	if len(b) == copyBufferSize {
		p.pool.Put((*[copyBufferSize]byte)(b))
	}
}

// streamBufferSize is the copy buffer of a long stream (isLongStream).
const streamBufferSize = 4 << 10

// streamBuffers gives each long stream a buffer of its own, which the
// garbage collector takes back when the stream ends: one allocation per
// watch is nothing next to how long a watch lives.
type streamBuffers struct{}

func (streamBuffers) Get() []byte { return make([]byte, streamBufferSize) }

func (streamBuffers) Put([]byte) {}

// upstreamAuth is what the handler resolved for the rewrite, which cannot
// fail: the service-account token and the person to impersonate.
type upstreamAuth struct {
	token     string // the service account's, on a Kubernetes route
	id        *identity.Identity
	as        *kube.Requested // kubectl --as, once the cluster said id may
	assertion string          // pass_identity_headers: the signed identity assertion
}

type upstreamAuthKey struct{}

// ServeHTTP forwards r. On a Kubernetes route the request must carry an
// identity (identity.NewContext); without one it is refused with 401 and
// never forwarded.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := Servable(r); err != nil {
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Message: "portcullis: " + err.Error()})
		return
	}
	if up := r.Header.Get("Upgrade"); up != "" && IsUpgrade(r.Header) && !p.allowsUpgrade(up) {
		respond.Error(w, r, respond.Problem{Code: http.StatusForbidden, Message: fmt.Sprintf("portcullis: upgrade to %q is not allowed on this route (allow_spdy: %t, allow_websockets: %t)",
			up, p.route.AllowSPDY, p.route.AllowWebsockets)})
		return
	}
	ctx := r.Context()
	id := identity.FromContext(ctx)
	auth := &upstreamAuth{id: id}
	if p.route.PassIdentityHeaders && id != nil {
		a, err := p.assert(id, p.route.From.Host)
		if err != nil {
			// The upstream asked to be told who is calling: without it,
			// it could take the request as anonymous, or worse.
			p.logger.Error("signing the identity assertion", "error", err)
			respond.Error(w, r, respond.Problem{Code: http.StatusInternalServerError, Message: "portcullis: internal error: the request was not forwarded"})
			return
		}
		auth.assertion = a
	}
	if p.kubernetes {
		if id == nil {
			respond.Error(w, r, respond.Unauthenticated("no signed-in user"))
			return
		}
		if err := p.imp.Check(id.Kubernetes()); err != nil {
			p.logger.Warn("refusing to impersonate", "error", err)
			respond.Error(w, r, respond.Problem{Code: http.StatusForbidden, Message: "portcullis: your identity cannot be passed to Kubernetes: " + err.Error()})
			return
		}
		tok, err := p.saToken.Token()
		if err != nil {
			p.logger.Error("no service-account token", "error", err)
			respond.Error(w, r, respond.Problem{Code: http.StatusServiceUnavailable, Message: "portcullis: the proxy has no service-account token for this cluster; an administrator must check kubernetes_service_account_token"})
			return
		}
		auth.token = tok
		if as, ok, err := kube.RequestedImpersonation(r.Header); ok {
			if !p.impersonationAllowed(w, r, id, tok, as, err) {
				return
			}
			auth.as = &as
		}
		if p.forwardedAs != nil {
			if auth.as != nil {
				p.forwardedAs(ctx, auth.as.User, auth.as.Groups, id.Email)
			} else {
				user, groups := id.Kubernetes()
				p.forwardedAs(ctx, user, groups, "")
			}
		}
	}
	ctx = context.WithValue(ctx, upstreamAuthKey{}, auth)
	if p.route.Timeout > 0 && !IsUpgrade(r.Header) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.route.Timeout)
		defer cancel()
	}
	r = r.WithContext(ctx)
	if p.route.IdleTimeout > 0 && !IsUpgrade(r.Header) {
		var stop func()
		w, r, stop = withIdleTimeout(w, r, p.route.IdleTimeout)
		defer stop()
	}
	p.reverseProxyFor(r).ServeHTTP(w, r)
}

// impersonationAllowed decides a request that asks to impersonate (kubectl
// --as, --as-group), whose headers asked for as (err if they are
// malformed): the requested names must pass the route's checks, and the
// cluster's RBAC must let the person impersonate them. Otherwise it answers
// with a Status that says why and returns false: a request is never
// forwarded as the person when they asked to be someone else, nor with
// the headers dropped.
func (p *Proxy) impersonationAllowed(w http.ResponseWriter, r *http.Request, id *identity.Identity, saToken string, as kube.Requested, err error) bool {
	switch {
	case errors.Is(err, kube.ErrImpersonationUnsupported):
		respond.Error(w, r, respond.Problem{Code: http.StatusForbidden, Message: "portcullis: " + err.Error()})
		return false
	case err != nil:
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Message: "portcullis: kubectl --as: " + err.Error()})
		return false
	}
	if err := p.imp.Check(as.User, as.Groups); err != nil {
		respond.Error(w, r, respond.Problem{Code: http.StatusForbidden, Message: "portcullis: kubectl --as: " + err.Error()})
		return false
	}
	if err := p.reviews.allow(r.Context(), id, saToken, as); err != nil {
		if errorIsDenial(err) {
			p.logger.Info("refused an impersonation the cluster does not allow", "email", id.Email, "error", err)
			respond.Error(w, r, respond.Problem{Code: http.StatusForbidden, Message: "portcullis: " + err.Error()})
			return false
		}
		p.logger.Warn("could not review an impersonation", "email", id.Email, "error", err)
		respond.Error(w, r, respond.Problem{Code: http.StatusServiceUnavailable,
			Message: "portcullis: could not ask the cluster whether you may impersonate " + strconv.Quote(as.User) + "; try again"})
		return false
	}
	return true
}

// reverseProxyFor picks the ReverseProxy whose copy buffers suit r.
func (p *Proxy) reverseProxyFor(r *http.Request) *httputil.ReverseProxy {
	if p.kubernetes && isLongStream(r) {
		return p.rpStream
	}
	return p.rp
}

// isLongStream reports whether r is a Kubernetes request whose response
// stays open: a watch, or a followed log. kube.ParseRequestInfo decides,
// as kube-apiserver would; a request whose URL holds neither "watch" nor
// "follow" cannot be either and is not parsed.
func isLongStream(r *http.Request) bool {
	u := r.URL
	if !strings.Contains(u.Path, "/watch/") && !strings.Contains(u.RawQuery, "watch") && !strings.Contains(u.RawQuery, "follow") {
		return false
	}
	info, err := kube.ParseRequestInfo(r.Method, u.Path, u.RawQuery)
	if err != nil {
		return false
	}
	if info.Verb == "watch" {
		return true
	}
	if info.Resource != "pods" || info.Subresource != "log" {
		return false
	}
	v, ok := u.Query()["follow"]
	return ok && kube.QueryBool(v[0])
}

// allowsUpgrade applies allow_spdy and allow_websockets.
func (p *Proxy) allowsUpgrade(protocol string) bool {
	switch {
	case strings.HasPrefix(strings.ToUpper(protocol), "SPDY/"):
		return p.route.AllowSPDY
	case strings.EqualFold(protocol, "websocket"):
		return p.route.AllowWebsockets
	default:
		return false
	}
}

// rewrite builds the upstream request. It runs after ReverseProxy removed
// hop-by-hop headers, so what it sets survives even a client's
// "Connection: Authorization" (STYLE: Rewrite, not Director).
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.targets.pick())
	if p.route.PreserveHostHeader {
		pr.Out.Host = pr.In.Host
	}
	pr.SetXForwarded()
	// Nothing a client sent may choose the identity the upstream sees:
	// every credential and identity header goes, on every route.
	kube.StripCredentials(pr.Out.Header, p.cookieName)
	auth, _ := pr.In.Context().Value(upstreamAuthKey{}).(*upstreamAuth)
	if auth == nil {
		return // a Kubernetes request: requireImpersonation refuses it
	}
	if auth.assertion != "" {
		pr.Out.Header[headerAssertion] = []string{auth.assertion}
	}
	if p.kubernetes {
		// Like the Audit-ID, a client does not choose the trace the
		// cluster's spans are recorded under or link to, nor make the
		// cluster sample its requests.
		for k := range pr.Out.Header {
			if strings.EqualFold(k, headerTraceParent) || strings.EqualFold(k, headerTraceState) {
				delete(pr.Out.Header, k) // in any letter case, as StripCredentials does
			}
		}
	}
	if p.traceCtx != nil {
		p.traceCtx(pr.In.Context(), pr.Out.Header)
	}
	if !p.kubernetes {
		return
	}
	if p.auditID != nil {
		// StripCredentials removed any Audit-ID the client sent.
		if id := p.auditID(pr.In.Context()); id != "" {
			pr.Out.Header[kube.HeaderAuditID] = []string{id}
		}
	}
	var err error
	if auth.as != nil {
		err = p.imp.SetAs(pr.Out.Header, auth.token, *auth.as, auth.id.Email)
	} else {
		user, groups := auth.id.Kubernetes()
		err = p.imp.Set(pr.Out.Header, auth.token, user, groups)
	}
	if err != nil {
		// ServeHTTP checked these; Set left no credential
		// behind, and requireImpersonation refuses the request.
		p.logger.Error("setting impersonation headers", "error", err)
	}
}

// errNoImpersonation is the transport's refusal of a Kubernetes request
// that lacks the impersonation headers.
var errNoImpersonation = errors.New("refusing to forward a Kubernetes request without impersonation headers")

// requireImpersonation is the last check before a Kubernetes request leaves:
// it must carry the service account's token and a user to impersonate, or
// it would run with the service account's own rights.
type requireImpersonation struct{ rt http.RoundTripper }

func (t requireImpersonation) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Impersonate-User") == "" || !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errNoImpersonation
	}
	return t.rt.RoundTrip(r)
}

// sandboxCSP is the Content-Security-Policy of every response from a
// Kubernetes route. kube-apiserver serves more than API objects on its
// origin: pods/NAME/proxy, services/NAME/proxy and nodes/NAME/proxy relay
// whatever a pod or a node serves, HTML and scripts included, so anyone
// who can run a pod can put a page on the API's origin. "sandbox" gives
// such a page a unique origin of its own and no scripts, forms or pop-ups:
// it cannot call the API as the person viewing it. API clients ignore the
// header; a policy the upstream set as well still applies, as browsers
// enforce every policy they get.
const sandboxCSP = "sandbox"

// modifyResponse applies the route's rules to what the upstream answers:
// an upstream may not set Portcullis's cookies (a page could otherwise
// plant a session or a sign-in cookie of someone else's in the browser),
// and a Kubernetes route's responses are sandboxed (sandboxCSP).
func (p *Proxy) modifyResponse(resp *http.Response) error {
	kube.StripSetCookie(resp.Header, p.cookieName)
	if p.kubernetes {
		resp.Header.Add("Content-Security-Policy", sandboxCSP)
	}
	// A long-lived request's stream (a watch's events, an exec session)
	// must stop when the person's access does: the stream can end it at
	// a message boundary with a last word. An error answer is short and
	// left alone.
	if st := stream.FromContext(resp.Request.Context()); st != nil &&
		(resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusSwitchingProtocols) {
		st.AttachBody(resp)
	}
	return nil
}

// errUnframed is the transport's refusal of a request whose body the
// upstream could not tell from the next request on the connection.
var errUnframed = errors.New("refusing to forward a request the upstream could read as more than one")

// requireFraming is the last check before any request leaves: the server
// refuses CONNECT, TRACE and targets that are not a path before a request
// is authenticated, and this refuses them again, so that no handler
// reached some other way can forward one. A CONNECT is the one request
// whose body Go's HTTP/1.1 transport writes raw, with neither
// Content-Length nor chunked framing: the upstream would read the body as
// requests of its own, on a connection pooled with other people's (request
// smuggling). Every other request with a body goes out with a
// Content-Length or chunked.
type requireFraming struct{ rt http.RoundTripper }

func (t requireFraming) RoundTrip(r *http.Request) (*http.Response, error) {
	if Servable(r) != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errUnframed
	}
	return t.rt.RoundTrip(r)
}

// Servable reports why no upstream could take r as meant, or nil:
//
//   - CONNECT asks for a tunnel, not a resource. Go's HTTP/2 server accepts
//     one (only :method and :authority, a body of unknown length), and
//     Go's HTTP/1.1 transport writes its body onto the upstream connection
//     without framing (see requireFraming). kube-apiserver serves none.
//   - TRACE echoes the request back, headers included; upstream of
//     Portcullis those are the service account's token and the
//     impersonation headers.
//   - a request target that is not an absolute path ("*", or the empty
//     path of a CONNECT): nothing is served there, and neither a policy on
//     http_path nor a kubernetes_* criterion can describe it.
//
// The server refuses such requests before authentication; ServeHTTP and
// the transport refuse them again.
func Servable(r *http.Request) error {
	switch r.Method {
	case http.MethodConnect, http.MethodTrace:
		return fmt.Errorf("the %s method is not served here", r.Method)
	}
	if r.URL == nil || r.URL.Opaque != "" || !strings.HasPrefix(r.URL.Path, "/") {
		target := r.RequestURI
		if len(target) > 64 {
			target = target[:64] + "…"
		}
		return fmt.Errorf("the request target %q is not a path; send an absolute path beginning with /", target)
	}
	return nil
}

// upstreamError answers a failed round trip with a Status kubectl can show
// (a page for a browser) and logs the cause with the route.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if st := stream.FromContext(r.Context()); st != nil {
		if e := st.Ended(); e != nil {
			// Ended while the upstream was still answering: the person's
			// access ended, and that is the answer.
			respond.Error(w, r, respond.Problem{Code: e.Code, Message: e.Message})
			return
		}
	}
	if errors.Is(err, errNoImpersonation) || errors.Is(err, errUnframed) {
		p.logger.Error("upstream request refused", "error", err)
		respond.Error(w, r, respond.Problem{Code: http.StatusInternalServerError, Message: "portcullis: internal error: the request was not forwarded"})
		return
	}
	if errors.Is(context.Cause(r.Context()), errIdle) {
		p.failed("idle_timeout")
		p.logger.Info("upstream request idle too long", "path", r.URL.Path, "idle_timeout", p.route.IdleTimeout)
		respond.Error(w, r, respond.Problem{Code: http.StatusGatewayTimeout, Message: fmt.Sprintf("portcullis: the upstream sent nothing for %s (idle_timeout)", p.route.IdleTimeout)})
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody reads the answer.
		p.logger.Debug("client canceled request", "path", r.URL.Path)
		w.WriteHeader(499) // nginx's "client closed request", for the access log only
		return
	}
	// Transport failures come with the outgoing request, or name the
	// upstream failover moved on to; the others (a refused protocol
	// switch) may come with the incoming one.
	upstream := p.route.To[0].String()
	var fe *failoverError
	switch {
	case errors.As(err, &fe):
		upstream = fe.upstream
	case r.URL.Host != "":
		upstream = r.URL.Scheme + "://" + r.URL.Host
	}
	p.logger.Warn("upstream request failed", "upstream", upstream, "method", r.Method, "path", r.URL.Path, "error", err)
	problem, kind := upstreamProblem(upstream, err)
	p.failed(kind)
	respond.Error(w, r, problem)
}

// Close releases the route's idle upstream connections.
func (p *Proxy) Close() {
	if t, ok := p.targets.rt.(byProtocol); ok {
		t.h2.(*http.Transport).CloseIdleConnections()
		t.h1.(*http.Transport).CloseIdleConnections()
	}
}
