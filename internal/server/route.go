package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-proxy/portcullis/internal/authenticate"
	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/idp"
	"github.com/portcullis-proxy/portcullis/internal/kube"
	"github.com/portcullis-proxy/portcullis/internal/limit"
	"github.com/portcullis-proxy/portcullis/internal/policy"
	"github.com/portcullis-proxy/portcullis/internal/proxy"
	"github.com/portcullis-proxy/portcullis/internal/respond"
	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/stream"
	"github.com/portcullis-proxy/portcullis/internal/tracing"
)

// routeHandler is the request path of one route, read top to bottom:
//
//  1. the endpoints every route host serves: /.well-known/pomerium (token
//     keys) and /.pomerium/ (sign-in hand-off, programmatic login, who am
//     I, sign-out, the person's routes);
//  2. authenticate: a Portcullis token or session cookie for this route →
//     an Identity; a browser without one is sent to sign in, kubectl gets
//     a 401 Status;
//  3. authorize: the route's policy on the person and, on a Kubernetes
//     route, on the API request as kube-apiserver parses it; a denial
//     names the rule that decided it;
//  4. on a Kubernetes route, the identity mapping: who Kubernetes sees
//     (kubernetes_username_claim and the others), after the policy, which
//     decides on the provider's names and groups;
//  5. proxy: credentials out, service-account token and Impersonate-* in,
//     forward, stream.
func (s *Server) routeHandler(g *generation, route *config.Route) (http.Handler, error) {
	pol, err := policy.Compile(route)
	if err != nil {
		return nil, err
	}
	failed := s.metrics.upstreamErrors.MustCurryWith(prometheus.Labels{"route": route.From.String()})
	var forwarded func(context.Context, string, []string, string)
	if s.audit != nil {
		forwarded = forwardedAs
	}
	p, err := proxy.New(route, proxy.Options{ForwardedAs: forwarded, CookieName: s.opts.CookieName, Assert: s.assert, AuditID: AuditID, Logger: s.logger,
		UpstreamFailed: func(kind string) { failed.WithLabelValues(kind).Inc() },
		TraceContext: func(ctx context.Context, h http.Header) {
			if s.tracer != nil {
				tracing.Inject(ctx, h)
			}
		}})
	if err != nil {
		return nil, err
	}
	g.proxies = append(g.proxies, p)
	rs := &routeState{route: route, policy: pol}
	audience := route.From.Host
	var proxied http.Handler = p
	if route.IsKubernetes() {
		if rs.mapping, err = kubernetesMapping(g.opts, route); err != nil {
			return nil, fmt.Errorf("route %s: %w", route.From, err)
		}
		if rs.mapping != nil {
			proxied = s.mapKubernetesIdentity(rs.mapping, p)
		}
	}
	g.addRoute(rs)
	// One set of decision counters for the route, whoever asks: the
	// proxy's requests and, in direct mode, kube-apiserver's reviews.
	decisions := &decisionCounters{vec: s.metrics.decisions, route: route.From.String()}
	next := s.authorize(route, pol, decisions, proxied)
	if !route.AllowPublicUnauthenticatedAccess {
		next = s.authenticate(route, next)
	}
	kubernetes := route.IsKubernetes()
	// The webhook's token is fixed for the generation: derive it once.
	reviewAuth := "Bearer " + webhookToken(g.opts.SharedSecret, route)
	wellKnown := s.keys.WellKnownHandler(s.opts.AuthenticateServiceURL)
	jwks := s.keys.JWKSHandler()
	// Portcullis's own endpoints on the route host (sign-in callback,
	// login API, sign-out, who am I) take small bodies only. The rest of
	// /.pomerium/ is Portcullis's too, as it is Pomerium's: a path there
	// that is none of them is not found, never sent to the upstream.
	endpoints := s.boundSignInBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.auth.RouteEndpoints(w, r, audience) {
			respond.Error(w, r, respond.Problem{Code: http.StatusNotFound, Title: "Not found",
				Message: "portcullis: " + r.URL.Path + " is not a Portcullis endpoint (/.pomerium/ is Portcullis's own on every route)"})
		}
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/.well-known/pomerium":
			wellKnown.ServeHTTP(w, r)
		case r.URL.Path == "/.well-known/pomerium/jwks.json":
			jwks.ServeHTTP(w, r)
		case r.URL.Path == pathRoutes:
			s.listRoutes(g, w, r, audience) // routelist.go
		case r.URL.Path == pathReview && kubernetes:
			s.serveReview(rs, reviewAuth, decisions, w, r) // direct.go
		case r.URL.Path == "/.pomerium" || strings.HasPrefix(r.URL.Path, "/.pomerium/"):
			endpoints.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	}), nil
}

// authenticate resolves who the request is from into an Identity for the
// rest of the path, or refuses it. A token must have been issued for this
// route (its audience is the route's host), so a token for one cluster does
// not open another.
//
// Which credentials count depends on what a browser could be made to do
// with them. A browser sends the session cookie by itself, with every
// request to the host, whichever page asked:
//
//   - on a Kubernetes route the API takes tokens only. kube-apiserver
//     serves pods' and nodes' pages on its own origin (the proxy
//     subresources), so anyone who can run a pod could otherwise send a
//     signed-in admin a link whose page calls the API as the admin. The
//     cookie opens Portcullis's own pages there (/.pomerium/), nothing
//     else; kubectl sends a token.
//   - elsewhere the cookie is how a browser application is used, but an
//     upgrade (WebSocket) the cookie authenticated must come from a page of
//     the route's own origin: browsers let any page open a WebSocket
//     anywhere, with the cookies of the target, and only Origin tells
//     (cross-site WebSocket hijacking).
func (s *Server) authenticate(route *config.Route, next http.Handler) http.Handler {
	audience := route.From.Host
	kubernetes := route.IsKubernetes()
	accept := authenticate.Token | authenticate.Cookie
	if kubernetes {
		accept = authenticate.Token
	}
	// What a browser that opens a Kubernetes API is told, instead of being
	// sent to sign in: it would come back with a cookie that opens nothing.
	useKubectl := fmt.Sprintf("%s is the Kubernetes API of a cluster. Browsers are not signed in to it, so that no page can act on the cluster as you. "+
		"Set up kubectl with: portcullis-cli k8s setup %s. To see who you are signed in as, open %s/.pomerium/.",
		route.From, route.From, route.From)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, span := s.tracer.Start(r.Context(), "authenticate", trace.SpanKindInternal)
		id, cred, err := s.auth.Identify(r, audience, accept)
		if span.IsRecording() {
			span.SetAttributes(attribute.Bool("portcullis.authenticated", err == nil), attribute.String("portcullis.credential", credentialName(cred)))
			if err != nil {
				span.SetStatus(codes.Error, "no identity")
			}
		}
		span.End()
		if err == nil {
			if cred == authenticate.Cookie && proxy.IsUpgrade(r.Header) && !s.sameOrigin(r) {
				s.logger.Warn("refused a cross-origin upgrade authenticated by the session cookie",
					"request_id", RequestID(r.Context()), "origin", r.Header.Get("Origin"), "email", id.Email)
				respond.Error(w, r, respond.Problem{Code: http.StatusForbidden,
					Message: "portcullis: a connection upgrade from a page of another origin is refused",
					Title:   "Request refused", Text: "A page of another site tried to open a connection here as you. It was refused."})
				return
			}
			next.ServeHTTP(w, r.WithContext(identity.NewContext(r.Context(), id)))
			return
		}
		if errors.Is(err, authenticate.ErrStoreUnavailable) {
			authenticate.RefuseStoreUnavailable(w, r)
			return
		}
		if respond.FromBrowser(r) && !kubernetes {
			s.auth.RedirectToSignIn(w, r)
			return
		}
		s.logger.Info("refused request credentials", "request_id", RequestID(r.Context()), "error", err)
		var p respond.Problem
		switch {
		case errors.Is(err, authenticate.ErrNoCredentials):
			p = respond.Unauthenticated("the request has no Portcullis token")
		case errors.Is(err, session.ErrExpired), errors.Is(err, authenticate.ErrSessionEnded):
			p = respond.SessionExpired()
		default:
			p = respond.Unauthenticated(err.Error())
		}
		if kubernetes {
			p.Title, p.Text = "Use kubectl for this cluster", useKubectl
		}
		respond.Error(w, r, p)
	})
}

// credentialName names the kind of credential a request was authenticated
// by, for its span.
func credentialName(c authenticate.Credential) string {
	switch c {
	case authenticate.Token:
		return "token"
	case authenticate.Cookie:
		return "cookie"
	}
	return "none"
}

// sameOrigin reports whether r's Origin header names the origin r was sent
// to: the same route, over https (or plain http when the server is, for a
// development setup). A missing or "null" Origin is not the same origin.
func (s *Server) sameOrigin(r *http.Request) bool {
	o, err := url.Parse(r.Header.Get("Origin"))
	if err != nil || o.Host == "" || o.User != nil || (o.Path != "" && o.Path != "/") || o.RawQuery != "" {
		return false
	}
	if o.Scheme != "https" && (o.Scheme != "http" || r.TLS != nil) {
		return false
	}
	hosts := s.current().router.hosts
	want, ok := hosts[config.CanonicalHost(r.Host)]
	got, ok2 := hosts[config.CanonicalHost(o.Host)]
	return ok && ok2 && want.label == got.label
}

// verifyToken is s.keys.Verify answered from the server's cache of
// verified tokens: kubectl sends the same token with every request, and a
// signature verification costs far more than the rest of authentication.
// The cache still checks expiry and audience on every request. The claims
// may be shared with other requests: read only.
func (s *Server) verifyToken(token, audience string, now time.Time) (*session.Claims, error) {
	if s.tokens == nil {
		return s.keys.Verify(token, audience, now)
	}
	return s.tokens.Verify(token, audience, now)
}

// assert signs the identity assertion a route with pass_identity_headers
// sends its upstream (X-Pomerium-Jwt-Assertion): the person as the request
// was authenticated, for the route's host, with the keys whose public half
// every route host publishes at /.well-known/pomerium/jwks.json.
func (s *Server) assert(id *identity.Identity, audience string) (string, error) {
	return s.keys.IssueAssertion(session.Assertion{Audience: audience, Subject: id.User, Email: id.Email,
		Name: id.Name, Groups: id.Groups, SessionID: id.SessionID})
}

// tokenIssuer is the "iss" of the tokens this server issues and accepts:
// the authenticate service URL, as Pomerium uses it.
func tokenIssuer(opts *config.Options) string {
	if opts.AuthenticateServiceURL != nil {
		return opts.AuthenticateServiceURL.String()
	}
	// Without a sign-in service no token can be issued here; a fixed
	// name still lets replicas sharing SHARED_SECRET verify each other's.
	return "portcullis"
}

func newKeys(opts *config.Options) (*session.Keys, error) {
	keys, err := session.NewKeys(opts.SigningKey, opts.SharedSecret, tokenIssuer(opts))
	if err != nil {
		return nil, fmt.Errorf("creating token keys (SIGNING_KEY or SHARED_SECRET): %w", err)
	}
	return keys, nil
}

// policyRequest is the policy's input for r from id (nil: nobody signed
// in), all but the Kubernetes attributes.
func policyRequest(r *http.Request, id *identity.Identity) policy.Request {
	req := policy.Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		CORSPreflight: r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" && r.Header.Get("Origin") != "",
		Time:          time.Now(),
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		req.SourceIP = ap.Addr().Unmap()
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.ClientCertificate = r.TLS.PeerCertificates[0]
	}
	if id != nil {
		setPerson(&req, id)
	}
	return req
}

// setPerson puts the person id into the policy's input: who they are,
// their groups and their claims.
func setPerson(req *policy.Request, id *identity.Identity) {
	req.Authenticated, req.User, req.Email, req.Groups = true, id.User, id.Email, id.Groups
	req.Claims = id
}

// authorize evaluates the route's compiled policy for the request and the
// identity authenticate found (none on a public route), and answers 403
// with the deciding rule when it denies.
func (s *Server) authorize(route *config.Route, pol *policy.Policy, decisions *decisionCounters, next http.Handler) http.Handler {
	kubernetes := route.IsKubernetes()
	from := route.From.String() // for the audit trail, once rather than per request
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		_, span := s.tracer.Start(r.Context(), "authorize", trace.SpanKindInternal)
		req := policyRequest(r, identity.FromContext(r.Context()))
		var info kube.RequestInfo
		if kubernetes {
			var err error
			info, err = kube.ParseRequestInfo(r.Method, r.URL.Path, r.URL.RawQuery)
			if err != nil {
				span.End()
				// kube-apiserver serves nothing for such a path either.
				respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Message: "portcullis: not a Kubernetes API request: " + err.Error()})
				return
			}
			req.Kubernetes = policy.Kubernetes{Verb: info.Verb, APIGroup: info.APIGroup, Resource: info.Resource,
				Subresource: info.Subresource, Namespace: info.Namespace, Name: info.Name}
		}
		d := pol.Evaluate(&req)
		stateFrom(r.Context()).setDecision(req.Email, d)
		decisions.inc(d)
		if span.IsRecording() {
			span.SetAttributes(decisionAttributes(d, &info)...)
		}
		span.End()
		var ra *requestAudit
		var st *stream.Stream
		completed := false // the handler returned, rather than panicked
		if kubernetes {
			if ra = s.beginAudit(r, start, from, &info, identity.FromContext(r.Context()), d); ra != nil {
				// Written when the handler returns, whatever it did.
				if rw, ok := w.(*responseWriter); ok {
					defer func() { ra.finish(rw, st, !completed) }()
				}
			}
		}
		if d.Allow {
			if kind, ok := streamKind(r, kubernetes, &info); ok {
				// Followed from here on: when the person's access ends,
				// so does the stream (streams.go).
				var ctx context.Context
				var sw http.ResponseWriter
				st, ctx, sw = s.streams.Open(r.Context(), w, s.streamInfo(kind, route, r, &req))
				defer st.Close()
				if ra != nil {
					st.OnStart(func(code int) { ra.streamStarted(st, code) })
				}
				w, r = sw, r.WithContext(ctx)
			}
			// The round trip upstream, streams included, in a span whose
			// traceparent the upstream gets (proxy.Options.TraceContext).
			ctx, span := s.tracer.Start(r.Context(), "upstream", trace.SpanKindClient)
			if span.IsRecording() {
				r = r.WithContext(ctx)
				defer func() {
					if rw, ok := w.(*responseWriter); ok {
						span.SetAttributes(attribute.Int("http.response.status_code", rw.finalStatus(!completed)))
					}
					span.End()
				}()
			}
			next.ServeHTTP(w, r)
			completed = true
			return
		}
		s.logger.Info("request denied by policy", "request_id", RequestID(r.Context()), "route", route.From.String(),
			"email", req.Email, "method", r.Method, "path", r.URL.Path, "decision", d)
		switch {
		case d.SignInRequired() && respond.FromBrowser(r):
			s.auth.RedirectToSignIn(w, r)
		case d.SignInRequired():
			respond.Error(w, r, respond.Unauthenticated(d.Message()))
		default:
			respond.Error(w, r, respond.Problem{Code: http.StatusForbidden, Message: "portcullis: " + d.Message(),
				Title: "Access denied", Text: "Portcullis " + d.Message() + "."})
		}
		completed = true
	})
}

// decisionAttributes describe a decision in the authorize span: its result,
// its rule, and the Kubernetes request it was made on.
func decisionAttributes(d policy.Decision, info *kube.RequestInfo) []attribute.KeyValue {
	result, rule := "deny", "none"
	if d.Allow {
		result = "allow"
	}
	if d.Rule != nil {
		rule = d.Rule.Path
	}
	attrs := []attribute.KeyValue{attribute.String("portcullis.decision", result), attribute.String("portcullis.rule", rule)}
	if info.Verb != "" {
		attrs = append(attrs,
			attribute.String("k8s.verb", info.Verb),
			attribute.String("k8s.api_group", info.APIGroup),
			attribute.String("k8s.resource", info.Resource),
			attribute.String("k8s.subresource", info.Subresource),
			attribute.String("k8s.namespace.name", info.Namespace),
			attribute.String("k8s.name", info.Name))
	}
	return attrs
}

// newProvider builds the identity provider IDP_PROVIDER names, or nil
// when sign-in is off; for the built-in provider also its handler, served
// on the authenticate host. It fills in the provider settings that the
// built-in provider implies in opts.
func (s *Server) newProvider(opts *config.Options) (idp.Provider, http.Handler, error) {
	if opts.IDPProvider == "" {
		return nil, nil, nil
	}
	// Checks (check.go) made sure of AUTHENTICATE_SERVICE_URL and the
	// provider's settings.
	var client *http.Client
	var builtinIDP http.Handler
	var err error
	if opts.IDPProvider == "builtin" {
		if builtinIDP, client, err = s.newBuiltinIDP(opts); err != nil {
			return nil, nil, err
		}
	}
	redirect := *opts.AuthenticateServiceURL
	redirect.Path = strings.TrimSuffix(redirect.Path, "/") + "/oauth2/callback"
	provider, err := idp.New(idp.Options{
		Provider:      opts.IDPProvider,
		ProviderURL:   opts.IDPProviderURL,
		ClientID:      opts.IDPClientID,
		ClientSecret:  opts.IDPClientSecret,
		Scopes:        opts.IDPScopes,
		RedirectURL:   redirect.String(),
		GroupsClaim:   opts.IDPGroupsClaim,
		RequestParams: opts.IDPRequestParams,
		HTTPClient:    client,
	})
	if err != nil {
		return nil, nil, err
	}
	return provider, builtinIDP, nil
}

// newAuthenticator builds sign-in: the cookie sealer and the session
// store, with the identity provider of the first generation.
func (s *Server) newAuthenticator(provider idp.Provider) (*authenticate.Authenticator, error) {
	opts := s.opts
	sealer, err := session.NewSealer(opts.CookieSecret)
	if err != nil {
		return nil, err
	}
	store, closeStore, err := s.newSessionStore(sealer)
	if err != nil {
		return nil, err
	}
	s.closeStore = closeStore
	return authenticate.New(authenticate.Options{
		AuthenticateURL:      opts.AuthenticateServiceURL,
		CookieName:           opts.CookieName,
		CookieExpire:         opts.CookieExpire,
		AccessTokenLifetime:  opts.AccessTokenLifetime,
		DeviceCodeLifetime:   opts.DeviceCodeLifetime,
		DevicePollInterval:   opts.DevicePollInterval,
		DevicePollsPerMinute: opts.Limits.DevicePollsPerMinute,
		Sealer:               sealer,
		Keys:                 s.keys,
		Verify:               s.verifyToken,
		Store:                store,
		Provider:             provider,
		RouteAudience:        func(host string) (string, bool) { return s.current().router.audience(host) },
		KubernetesIdentity:   s.kubernetesIdentity,
		Logger:               s.logger,
		SignInRate:           limit.NewRate(opts.Limits.SignInsPerMinute, 0),
		LoginRate:            limit.NewRate(opts.Limits.LoginsPerMinute, 0),
		PendingSignIns:       opts.Limits.PendingSignIns,
		Limited:              s.limited,
		Record:               s.recordActivity,
		Refreshed:            func(result string) { s.metrics.refreshes.WithLabelValues(result).Inc() },
	})
}
