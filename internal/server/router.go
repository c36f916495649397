package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/kube"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

// Route labels for requests that no configured route owns. A matched
// request's label is its route's `from` URL, so the label set is bounded
// by the configuration, never by what clients send.
const (
	routeLabelInternal  = "internal"  // /ping, /healthz on any host
	routeLabelUnmatched = "unmatched" // a host no route serves
)

// router sends a request to the internal endpoints or, by its Host, to the
// handler of the route whose `from` names that host.
type router struct {
	hosts   map[string]hostRoute // canonical host (see canonicalHost) → route
	healthz http.Handler
}

type hostRoute struct {
	label    string // metrics label: the route's `from`
	audience string // the route's token audience: its `from` host; "" for the authenticate host
	handler  http.Handler
}

// routeLabelAuthenticate labels the authenticate host's requests.
const routeLabelAuthenticate = "authenticate"

// addAuthenticateHost serves the sign-in service on the host of
// AUTHENTICATE_SERVICE_URL, which no route may also claim.
func (rt *router) addAuthenticateHost(u *url.URL, h http.Handler) error {
	if u == nil {
		return nil
	}
	hosts := routeHosts(u)
	if hosts == nil {
		return fmt.Errorf("routing: AUTHENTICATE_SERVICE_URL host %q is not a valid host name or IP address", u.Host)
	}
	for _, host := range hosts {
		if r, dup := rt.hosts[host]; dup {
			return fmt.Errorf("routing: AUTHENTICATE_SERVICE_URL and route %q both serve host %q: give the sign-in service a host of its own", r.label, host)
		}
		rt.hosts[host] = hostRoute{label: routeLabelAuthenticate, handler: h}
	}
	return nil
}

// audience returns the token audience of the route serving host.
func (rt *router) audience(host string) (string, bool) {
	hr, ok := rt.hosts[canonicalHost(host)]
	if !ok || hr.audience == "" {
		return "", false
	}
	return hr.audience, true
}

// newRouter indexes routes by host. A `from` without a port, or with its
// scheme's default port, is reachable both as "host" and as "host:port"
// (clients omit the default port from Host; RFC 9110 §7.2); any other port
// must match exactly, so `https://127.0.0.1:8443` serves Host
// "127.0.0.1:8443" and nothing else.
func newRouter(routes []config.Route, forRoute func(*config.Route) (http.Handler, error), healthz http.Handler) (*router, error) {
	rt := &router{hosts: make(map[string]hostRoute), healthz: healthz}
	owner := make(map[string]int) // host → index of the route that has it
	for i := range routes {
		r := &routes[i]
		if r.From == nil || r.From.Host == "" {
			return nil, fmt.Errorf("routing: route %d has no `from` host", i+1)
		}
		from := r.From.String()
		hosts := routeHosts(r.From)
		if hosts == nil {
			return nil, fmt.Errorf("routing: route %d (%q): %q is not a valid host name or IP address", i+1, from, r.From.Host)
		}
		handler, err := forRoute(r)
		if err != nil {
			return nil, fmt.Errorf("route %d (%q): %w", i+1, from, err)
		}
		hr := hostRoute{label: from, audience: r.From.Host, handler: handler}
		for _, host := range hosts {
			if j, dup := owner[host]; dup {
				return nil, fmt.Errorf("routing: routes %d (%q) and %d (%q) both serve host %q",
					j+1, routes[j].From.String(), i+1, from, host)
			}
			owner[host] = i
			rt.hosts[host] = hr
		}
	}
	return rt, nil
}

// routeHosts lists the canonical Host values a route's `from` answers to,
// or nil if its host is not valid.
func routeHosts(from *url.URL) []string {
	name, port := from.Hostname(), from.Port()
	def := defaultPort(from.Scheme)
	var hosts []string
	switch {
	case port == "" && def == "":
		hosts = []string{name}
	case port == "" || port == def:
		hosts = []string{name, net.JoinHostPort(name, def)}
	default:
		hosts = []string{net.JoinHostPort(name, port)}
	}
	for i, h := range hosts {
		if hosts[i] = canonicalHost(h); hosts[i] == "" {
			return nil
		}
	}
	return hosts
}

func defaultPort(scheme string) string {
	switch strings.ToLower(scheme) {
	case "https", "wss":
		return "443"
	case "http", "ws":
		return "80"
	}
	return ""
}

// canonicalHost puts a Host header in canonical form: the name in lower
// case (DNS names are case-insensitive, RFC 4343) without the trailing dot
// of a fully qualified name, an IPv6 literal bracketed only when a port
// follows, the port kept as sent. Anything that is not a host name or an
// IP address with an optional numeric port becomes "", which no route has.
func canonicalHost(host string) string {
	name, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		name, port = h, p // an empty port ("example.com:") means the default
	} else if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		name = host[1 : len(host)-1] // an IPv6 literal without a port
	}
	if strings.HasPrefix(host, "[") {
		// Brackets are for IPv6 literals only (RFC 3986 §3.2.2).
		if a, err := netip.ParseAddr(name); err != nil || !a.Is6() {
			return ""
		}
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if !validHostname(name) || !validPort(port) {
		return ""
	}
	if port == "" {
		return name
	}
	return net.JoinHostPort(name, port)
}

// validHostname accepts an IP address, or a name of letters, digits, '-',
// '_' and non-empty dot-separated labels. (Underscores are not allowed in
// DNS host names but occur in practice, and are harmless here.)
func validHostname(name string) bool {
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			switch c := label[i]; {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

func validPort(port string) bool {
	if len(port) > 5 {
		return false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := stateFrom(r.Context())
	// The internal endpoints answer on every host, known or not, so a load
	// balancer can probe by IP address.
	switch r.URL.Path {
	case "/ping":
		st.setRoute(routeLabelInternal)
		servePing(w, r)
		return
	case "/healthz":
		st.setRoute(routeLabelInternal)
		rt.healthz.ServeHTTP(w, r)
		return
	}
	hr, ok := rt.hosts[canonicalHost(r.Host)]
	if !ok {
		st.setRoute(routeLabelUnmatched)
		serveNoRoute(w, r)
		return
	}
	st.setRoute(hr.label)
	hr.handler.ServeHTTP(w, r)
}

// serveNoRoute answers a request for a host no route serves: a Kubernetes
// Status for kubectl and other API clients, plain text for a browser.
func serveNoRoute(w http.ResponseWriter, r *http.Request) {
	msg := fmt.Sprintf("portcullis: no route is configured for host %q", r.Host)
	if r.Host == "" {
		msg = "portcullis: the request names no host (Host header), and routes are chosen by host"
	}
	if acceptsHTML(r) {
		writeText(w, http.StatusNotFound, msg)
		return
	}
	kube.WriteStatus(w, http.StatusNotFound, msg)
}

// servePing answers liveness checks: the process is up and serving.
func servePing(w http.ResponseWriter, r *http.Request) {
	if !allowGetOrHead(w, r) {
		return
	}
	writeText(w, http.StatusOK, "OK")
}

// serveHealthz answers readiness checks: 200 while serving, 503 once
// shutdown has begun so that load balancers move new work elsewhere.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	if !allowGetOrHead(w, r) {
		return
	}
	code, body := http.StatusOK, `{"status":"ready"}`
	if s.shuttingDown.Load() {
		code, body = http.StatusServiceUnavailable, `{"status":"shutting down"}`
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write([]byte(body + "\n"))
}

func allowGetOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	kube.WriteStatus(w, http.StatusMethodNotAllowed,
		fmt.Sprintf("portcullis: %s is not allowed on %s; use GET or HEAD", r.Method, r.URL.Path))
	return false
}
