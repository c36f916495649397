package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"reflect"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/idp"
	"github.com/portcullis-proxy/portcullis/internal/policy"
	"github.com/portcullis-proxy/portcullis/internal/proxy"
)

// A generation is everything one configuration builds that a reload
// replaces as a whole: the routes with their policies and proxies, the
// identity provider, the serving certificate. The server swaps the whole
// generation at once (Server.live), so a request sees one configuration
// from its start to its end: the one current when it arrived.
type generation struct {
	opts    *config.Options
	router  *router
	proxies []*proxy.Proxy
	// routes holds each route's compiled policy by canonical host, for
	// deciding again whether an open stream's request is still allowed.
	routes map[string]*routeState
	// provider is the identity provider (nil: sign-in is off);
	// builtinIDP the built-in provider's handler, if it is the one.
	provider   idp.Provider
	builtinIDP http.Handler
	// cert is the certificate served on the main listener (nil without
	// TLS).
	cert *tls.Certificate
}

// routeState is what a generation keeps of one route.
type routeState struct {
	route  *config.Route
	policy *policy.Policy
	// mapping is a Kubernetes route's identity mapping (nil: the
	// default, or not a Kubernetes route).
	mapping *identity.KubernetesMapping
}

func (g *generation) addRoute(rs *routeState) {
	for _, host := range config.Hosts(rs.route.From) {
		g.routes[host] = rs
	}
}

// current returns the generation in force.
func (s *Server) current() *generation { return s.live.Load() }

// serveRoutes routes a request by the generation current when it arrives;
// it keeps that generation to its end, however many reloads happen
// meanwhile.
func (s *Server) serveRoutes(w http.ResponseWriter, r *http.Request) {
	s.current().router.ServeHTTP(w, r)
}

// newGeneration builds what opts configures. prev is the generation in
// force (nil at start): its identity provider is kept when the IDP_*
// settings did not change, so that a reload of routes alone does not
// touch sign-in (the built-in provider's sessions are tied to its
// instance). A failure leaves nothing running: the caller keeps prev.
func (s *Server) newGeneration(opts *config.Options, prev *generation) (*generation, error) {
	g := &generation{opts: opts, routes: make(map[string]*routeState)}
	if prev != nil && sameProvider(prev.opts, opts) {
		g.provider, g.builtinIDP = prev.provider, prev.builtinIDP
		// The built-in provider's settings it filled in (newBuiltinIDP).
		opts.IDPClientID, opts.IDPClientSecret, opts.IDPProviderURL = prev.opts.IDPClientID, prev.opts.IDPClientSecret, prev.opts.IDPProviderURL
	} else {
		var err error
		if g.provider, g.builtinIDP, err = s.newProvider(opts); err != nil {
			return nil, err
		}
	}
	if !opts.InsecureServer {
		cert, err := loadCertificate(opts.Certificate, opts.CertificateKey)
		if err != nil {
			return nil, err
		}
		g.cert = cert
	}
	forRoute := s.forRoute
	if forRoute == nil {
		forRoute = func(r *config.Route) (http.Handler, error) { return s.routeHandler(g, r) }
	}
	rt, err := newRouter(opts.Routes, forRoute, http.HandlerFunc(s.serveHealthz))
	if err == nil {
		err = rt.addAuthenticateHost(opts.AuthenticateServiceURL, s.authenticateHost(g.builtinIDP))
	}
	if err != nil {
		g.close()
		return nil, err
	}
	g.router = rt
	return g, nil
}

// close lets go of the upstream connections the generation's proxies
// keep idle. Requests still using them finish: only idle connections
// close.
func (g *generation) close() {
	for _, p := range g.proxies {
		p.Close()
	}
}

// sameProvider reports whether a and b configure the same identity
// provider.
func sameProvider(a, b *config.Options) bool {
	if a.IDPProvider != b.IDPProvider || a.IDPUsersFile != b.IDPUsersFile || a.IDPBuiltinTokenTTL != b.IDPBuiltinTokenTTL ||
		a.IDPGroupsClaim != b.IDPGroupsClaim || !reflect.DeepEqual(a.IDPScopes, b.IDPScopes) ||
		!reflect.DeepEqual(a.IDPRequestParams, b.IDPRequestParams) {
		return false
	}
	if a.IDPProvider == "builtin" {
		// Its issuer and client are derived (newBuiltinIDP), unless set.
		return true
	}
	return a.IDPProviderURL == b.IDPProviderURL && a.IDPClientID == b.IDPClientID && a.IDPClientSecret == b.IDPClientSecret
}

// loadCertificate parses the main listener's certificate chain and key.
func loadCertificate(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	switch {
	case len(certPEM) == 0 && len(keyPEM) == 0:
		return nil, errNoCertificate
	case len(certPEM) == 0:
		return nil, errors.New("loading TLS certificate: CERTIFICATE_KEY is set but CERTIFICATE is not; set both (or both *_FILE)")
	case len(keyPEM) == 0:
		return nil, errors.New("loading TLS certificate: CERTIFICATE is set but CERTIFICATE_KEY is not; set both (or both *_FILE)")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading TLS certificate (CERTIFICATE, CERTIFICATE_KEY): %w", err)
	}
	return &cert, nil
}
