package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A routeKey is one key of a route.
type routeKey struct {
	name string
	// logical is the setting the key spells: tls_custom_ca for both
	// tls_custom_ca and tls_custom_ca_file. Validation problems are
	// reported on the key that was used.
	logical string
	decode  func(l *loader, v value, r *Route, set *routeSet) bool
}

// routeKeys lists every route key.
func routeKeys() []string {
	var keys []string
	for _, k := range routeKeyTable() {
		keys = append(keys, k.name)
	}
	return keys
}

// pemPairs are the route settings given inline (base64) or as a file.
var pemPairs = []string{"tls_custom_ca", "tls_client_cert", "tls_client_key"}

func routeKeyTable() []routeKey {
	boolean := func(name string, field func(*Route) *bool) routeKey {
		return routeKey{name: name, logical: name, decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
			*field(r), ok = l.boolean(v)
			return ok
		}}
	}
	pem := func(name, example string, data func(*Route) *[]byte, path func(*Route) *string) []routeKey {
		return []routeKey{
			{name: name, logical: name, decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				hint := fmt.Sprintf(`want the base64 of a PEM file, such as the output of "base64 -w0 %s", or use %s_file`, example, name)
				*data(r), ok = l.bytes(v, pemFile, hint)
				return ok
			}},
			{name: name + "_file", logical: name, decode: func(l *loader, v value, r *Route, _ *routeSet) bool {
				p, ok := l.path(v)
				if ok {
					v, ok = l.read(v.at, p)
				}
				if ok {
					*data(r), *path(r) = []byte(v.text), p
				}
				return ok
			}},
		}
	}
	keys := []routeKey{
		{name: "from", logical: "from", decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
			r.From, ok = l.url(v, hostURL)
			return ok
		}},
		{name: "to", logical: "to", decode: func(l *loader, v value, r *Route, _ *routeSet) bool {
			n := deref(v.node)
			if n.Kind != yaml.SequenceNode {
				u, ok := l.url(v, upstreamURL)
				if ok {
					r.To = []*url.URL{u}
				}
				return ok
			}
			ok := true
			for i, item := range n.Content {
				iv := value{at: v.d.at(item, fmt.Sprintf("%s[%d]", v.at.key, i)), d: v.d, node: item}
				if !l.count(v.d, item, iv.at.key) {
					return false
				}
				u, good := l.url(iv, upstreamURL)
				if good {
					r.To = append(r.To, u)
				}
				ok = ok && good
			}
			return ok
		}},
		{name: "policy", logical: "policy", decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
			r.Policy, ok = l.policy(v)
			return ok
		}},
		boolean("tls_skip_verify", func(r *Route) *bool { return &r.TLSSkipVerify }),
		{name: "tls_server_name", logical: "tls_server_name", decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
			r.TLSServerName, ok = l.str(v)
			return ok
		}},
	}
	keys = append(keys, pem("tls_custom_ca", "ca.pem",
		func(r *Route) *[]byte { return &r.TLSCustomCA }, func(r *Route) *string { return &r.TLSCustomCAFile })...)
	keys = append(keys, pem("tls_client_cert", "client.pem",
		func(r *Route) *[]byte { return &r.TLSClientCert }, func(r *Route) *string { return &r.TLSClientCertFile })...)
	keys = append(keys, pem("tls_client_key", "client-key.pem",
		func(r *Route) *[]byte { return &r.TLSClientKey }, func(r *Route) *string { return &r.TLSClientKeyFile })...)
	keys = append(keys,
		routeKey{name: "allow_spdy", logical: "allow_spdy", decode: func(l *loader, v value, r *Route, set *routeSet) (ok bool) {
			set.allowSPDY = true
			r.AllowSPDY, ok = l.boolean(v)
			return ok
		}},
		routeKey{name: "allow_websockets", logical: "allow_websockets", decode: func(l *loader, v value, r *Route, set *routeSet) (ok bool) {
			set.allowWebsockets = true
			r.AllowWebsockets, ok = l.boolean(v)
			return ok
		}},
		routeKey{name: "kubernetes_service_account_token", logical: "kubernetes_service_account_token",
			decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				r.KubernetesServiceAccountToken, ok = l.str(v)
				return ok
			}},
		// The token file is not read here: the proxy re-reads it at run
		// time, because projected service-account tokens rotate.
		routeKey{name: "kubernetes_service_account_token_file", logical: "kubernetes_service_account_token_file",
			decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				r.KubernetesServiceAccountTokenFile, ok = l.path(v)
				return ok
			}},
		boolean("kubernetes_allow_system_names", func(r *Route) *bool { return &r.KubernetesAllowSystemNames }),
		boolean("preserve_host_header", func(r *Route) *bool { return &r.PreserveHostHeader }),
		boolean("pass_identity_headers", func(r *Route) *bool { return &r.PassIdentityHeaders }),
		routeKey{name: "timeout", logical: "timeout", decode: func(l *loader, v value, r *Route, set *routeSet) (ok bool) {
			set.timeout = true
			r.Timeout, ok = l.duration(v)
			return ok
		}},
		routeKey{name: "idle_timeout", logical: "idle_timeout", decode: func(l *loader, v value, r *Route, set *routeSet) (ok bool) {
			set.idleTimeout = true
			r.IdleTimeout, ok = l.duration(v)
			return ok
		}},
		routeKey{name: "allowed_users", logical: "allowed_users", decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
			r.AllowedUsers, ok = l.identityList(v)
			return ok
		}},
		routeKey{name: "allowed_domains", logical: "allowed_domains", decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
			r.AllowedDomains, ok = l.identityList(v)
			return ok
		}},
		boolean("allow_any_authenticated_user", func(r *Route) *bool { return &r.AllowAnyAuthenticatedUser }),
		boolean("allow_public_unauthenticated_access", func(r *Route) *bool { return &r.AllowPublicUnauthenticatedAccess }),
	)
	return keys
}

// routes decodes a list of routes and records where each came from.
// listKey is "policy" or "routes" for a list in the file, whose routes are
// named "routes[0]"; it is "" for a decoded base64 value, whose routes are
// named `route 1 ("https://from")` and referred to as "route 1 of <ref>".
func (l *loader) routes(d *doc, list *yaml.Node, listKey, ref string) []Route {
	var out []Route
	for i, item := range list.Content {
		if !l.count(d, item, listKey) {
			break
		}
		if r, loc, ok := l.route(d, item, listKey, i, ref); ok {
			out = append(out, r)
			l.loc.routes = append(l.loc.routes, loc)
		}
	}
	return out
}

// route decodes one route; false if item is not a mapping at all.
func (l *loader) route(d *doc, item *yaml.Node, listKey string, i int, ref string) (Route, routeLoc, bool) {
	n := deref(item)
	loc := routeLoc{
		prefix: fmt.Sprintf("%s[%d]", listKey, i),
		sep:    ".",
		keys:   map[string]where{},
		failed: map[string]bool{},
	}
	loc.ref = fmt.Sprintf("%s (%s)", loc.prefix, d.source(item.Line))
	if listKey == "" {
		// A decoded value cannot be read by the user without decoding it:
		// name the route by its from as well as by its number.
		loc.prefix, loc.sep = fmt.Sprintf("route %d", i+1), ": "
		loc.ref = fmt.Sprintf("route %d of %s", i+1, ref)
		if from := scalarKey(n, "from"); from != "" {
			loc.prefix += fmt.Sprintf(" (%q)", from)
		}
	}
	loc.at = d.at(item, loc.prefix)
	if n.Kind != yaml.MappingNode {
		l.problem(loc.at, fmt.Sprintf("want a route (a mapping with from, to and other route keys), got %s", describe(n)))
		return Route{}, loc, false
	}

	table := map[string]routeKey{}
	for _, k := range routeKeyTable() {
		table[k.name] = k
	}
	entries := l.entries(d, n, loc.prefix)
	// tls_custom_ca and tls_custom_ca_file (and the client pair) are one
	// setting: giving both is a problem, reported on the later one, and
	// neither is used.
	conflict := map[string]string{} // key → its problem; "" for the first of a pair
	for _, name := range pemPairs {
		a := slices.IndexFunc(entries, func(e entry) bool { return e.name == name && !isNull(e.val) })
		b := slices.IndexFunc(entries, func(e entry) bool { return e.name == name+"_file" && !isNull(e.val) })
		if a < 0 || b < 0 {
			continue
		}
		first, later := entries[min(a, b)], entries[max(a, b)]
		conflict[first.name] = ""
		conflict[later.name] = fmt.Sprintf("set together with %s (line %d): set only one of them", first.name, first.key.Line)
		loc.failed[name] = true
	}

	// One pass in the order written, so that problems come in line order.
	var r Route
	for _, e := range entries {
		k, known := table[e.name]
		switch msg, clash := conflict[e.name]; {
		case !known:
			if !l.pomeriumEntry(d, e, inRoute, loc.prefix, loc.sep) {
				l.problem(d.at(e.key, loc.prefix), unknownRouteKey(e.name))
			}
		case clash && msg != "":
			l.problem(d.at(e.key, loc.prefix+loc.sep+e.name), msg)
		case clash, isNull(e.val):
		default:
			v := value{at: d.at(e.val, loc.prefix+loc.sep+e.name), d: d, node: e.val}
			loc.keys[k.logical] = v.at
			if !k.decode(l, v, &r, &loc.set) {
				loc.failed[k.logical] = true
			}
		}
	}
	return r, loc, true
}

// scalarKey returns the trimmed string value of key in mapping n, or "".
func scalarKey(n *yaml.Node, key string) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			if v := deref(n.Content[i+1]); v.Kind == yaml.ScalarNode {
				return strings.TrimSpace(v.Value)
			}
		}
	}
	return ""
}

// unknownRouteKey is the message for a key that is no route key.
func unknownRouteKey(key string) string {
	switch key {
	case "allow", "deny":
		return fmt.Sprintf("unknown key %q (PPL rules go in a list under the route's policy:)", key)
	}
	var top []string
	for _, k := range topKeys() {
		if k != "policy" {
			top = append(top, k)
		}
	}
	return unknownKey(key, routeKeys(), top, "in a route (it is a top-level setting)")
}
