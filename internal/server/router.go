package server

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// Route labels for requests that no configured route owns. A matched
// request's label is its route's `from` URL, so the label set is bounded
// by the configuration, never by what clients send.
const (
	routeLabelInternal  = "internal"  // the health endpoints (health.go)
	routeLabelUnmatched = "unmatched" // a host no route serves
)

// router sends a request to the internal endpoints or, by its Host, to the
// handler of the route whose `from` names that host.
type router struct {
	hosts map[string]hostRoute // canonical host (see canonicalHost) → route
	ping  http.Handler         // liveness
	ready http.Handler         // readiness
}

type hostRoute struct {
	label    string // metrics label: the route's `from`
	audience string // the route's token audience: its `from` host; "" for the authenticate host
	// kubernetes: the route forwards to kube-apiserver, whose own /healthz
	// the router must not answer for it.
	kubernetes bool
	handler    http.Handler
}

// routeLabelAuthenticate labels the authenticate host's requests.
const routeLabelAuthenticate = "authenticate"

// addAuthenticateHost serves the sign-in service on the host of
// AUTHENTICATE_SERVICE_URL, which no route may also claim. The
// configuration checks refuse an invalid or shared host with the key and
// line (config.Hosts); the errors here only keep an unchecked Options from
// routing wrongly.
func (rt *router) addAuthenticateHost(u *url.URL, h http.Handler) error {
	if u == nil {
		return nil
	}
	hosts := config.Hosts(u)
	if hosts == nil {
		return fmt.Errorf("routing: AUTHENTICATE_SERVICE_URL host %q is not a valid host name or IP address", u.Host)
	}
	for _, host := range hosts {
		if r, dup := rt.hosts[host]; dup {
			return fmt.Errorf("routing: AUTHENTICATE_SERVICE_URL and route %q both serve host %q", r.label, host)
		}
		rt.hosts[host] = hostRoute{label: routeLabelAuthenticate, handler: h}
	}
	return nil
}

// audience returns the token audience of the route serving host.
func (rt *router) audience(host string) (string, bool) {
	hr, ok := rt.hosts[config.CanonicalHost(host)]
	if !ok || hr.audience == "" {
		return "", false
	}
	return hr.audience, true
}

// newRouter indexes routes by the Host values each answers (config.Hosts,
// the same the configuration checks use to refuse two routes that share
// one; the errors here only keep an unchecked Options from routing
// wrongly).
func newRouter(routes []config.Route, forRoute func(*config.Route) (http.Handler, error), ready http.Handler) (*router, error) {
	rt := &router{hosts: make(map[string]hostRoute), ping: http.HandlerFunc(servePing), ready: ready}
	for i := range routes {
		r := &routes[i]
		hosts := config.Hosts(r.From)
		if hosts == nil {
			return nil, fmt.Errorf("routing: route %d has no valid from host", i+1)
		}
		from := r.From.String()
		handler, err := forRoute(r)
		if err != nil {
			return nil, fmt.Errorf("route %d (%q): %w", i+1, from, err)
		}
		hr := hostRoute{label: from, audience: r.From.Host, kubernetes: r.IsKubernetes(), handler: handler}
		for _, host := range hosts {
			if other, dup := rt.hosts[host]; dup {
				return nil, fmt.Errorf("routing: routes %q and %q both serve host %q", other.label, from, host)
			}
			rt.hosts[host] = hr
		}
	}
	return rt, nil
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := stateFrom(r.Context())
	hr, ok := rt.hosts[config.CanonicalHost(r.Host)]
	// The health endpoints answer on every host, known or not, so a load
	// balancer can probe by IP address; but /healthz on a Kubernetes route
	// is kube-apiserver's own (see internalEndpoint).
	if h := rt.internalEndpoint(r.URL.Path, hr.kubernetes); h != nil {
		st.setRoute(routeLabelInternal)
		h.ServeHTTP(w, r)
		return
	}
	if !ok {
		st.setRoute(routeLabelUnmatched)
		serveNoRoute(w, r)
		return
	}
	st.setRoute(hr.label)
	hr.handler.ServeHTTP(w, r)
}

// internalEndpoint returns the handler of Portcullis's own health endpoint
// at path, or nil if path is not one on this host (health.go):
//
//   - /ping, liveness, and /.pomerium/healthz, readiness, on every host:
//     kube-apiserver serves neither, and Pomerium keeps all of /.pomerium/
//     on every route host for itself, so no application behind a proxy of
//     this kind can count on being reached there;
//   - /healthz, readiness, on every host but a Kubernetes route's, as
//     Pomerium answers it. On a Kubernetes route /healthz, with /livez,
//     /readyz and /version, is the cluster's own: `kubectl get --raw
//     '/healthz?verbose'` must show the API server's checks, not the
//     proxy's, so it takes the route's authenticated path like any API
//     request.
func (rt *router) internalEndpoint(path string, kubernetes bool) http.Handler {
	switch {
	case path == pathPing:
		return rt.ping
	case path == pathReadiness, path == pathHealthz && !kubernetes:
		return rt.ready
	}
	return nil
}

// serveNoRoute answers a request for a host no route serves.
func serveNoRoute(w http.ResponseWriter, r *http.Request) {
	msg := fmt.Sprintf("portcullis: no route is configured for host %q", r.Host)
	if r.Host == "" {
		msg = "portcullis: the request names no host (Host header), and routes are chosen by host"
	}
	respond.Error(w, r, respond.Problem{Code: http.StatusNotFound, Message: msg})
}
