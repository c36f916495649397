package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A routeKey is one key of a route.
//
// doc, example, get and unset are for docs/configuration.md, as those of
// setting are.
type routeKey struct {
	name string
	// logical is the setting the key spells: tls_custom_ca for both
	// tls_custom_ca and tls_custom_ca_file. Validation problems are
	// reported on the key that was used.
	logical string
	decode  func(l *loader, v value, r *Route, set *routeSet) bool

	doc     string // what the key does, in Markdown
	example string // a value as written in YAML
	// get returns the key's field, so that the reference shows the route
	// defaults Load applies (nil for the token keys, which are what makes
	// a route a Kubernetes route); unset says what holds when the key is
	// not given and those defaults leave the field empty.
	get   func(r *Route) any
	unset string
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

// legacyNote ends the doc of each legacy access key.
const legacyNote = " A legacy key, as in Pomerium: the legacy keys of a route make one allow rule, which counts with the rules of its `policy`."

func routeKeyTable() []routeKey {
	boolean := func(name, doc string, field func(*Route) *bool) routeKey {
		return routeKey{name: name, logical: name, doc: doc, example: "true",
			get: func(r *Route) any { return *field(r) },
			decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				*field(r), ok = l.boolean(v)
				return ok
			}}
	}
	// mapped is a text key of the identity mapping (mapping.go): the
	// route's own value of the top-level setting of the same name, which
	// it takes when the key is not given; mark records that it is.
	mapped := func(name, example, doc string, field func(*Route) *string, mark func(*routeSet) *bool) routeKey {
		return routeKey{name: name, logical: name, example: example, unset: "`" + strings.ToUpper(name) + "`'s value",
			doc: doc + " Kubernetes routes only.",
			get: func(r *Route) any { return *field(r) },
			decode: func(l *loader, v value, r *Route, set *routeSet) (ok bool) {
				*mark(set) = true
				*field(r), ok = l.str(v)
				return ok
			}}
	}
	// pem is a PEM setting and its _file form; doc says what the PEM
	// holds, example names its file.
	pem := func(name, example, doc, unset string, data func(*Route) *[]byte, path func(*Route) *string) []routeKey {
		return []routeKey{
			{name: name, logical: name, example: `"LS0tLS1CRUdJTi…"`, unset: unset,
				doc: fmt.Sprintf("%s, as the base64 of a PEM file; or use `%s_file`.", doc, name),
				get: func(r *Route) any { return *data(r) },
				decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
					hint := fmt.Sprintf(`want the base64 of a PEM file, such as the output of "base64 -w0 %s", or use %s_file`, example, name)
					*data(r), ok = l.bytes(v, pemFile, hint)
					return ok
				}},
			{name: name + "_file", logical: name, example: example, unset: unset,
				doc: fmt.Sprintf("%s, as the path of a PEM file; or use `%s`.", doc, name),
				get: func(r *Route) any { return *path(r) },
				decode: func(l *loader, v value, r *Route, _ *routeSet) bool {
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
		{name: "from", logical: "from", example: "https://k8s.example.com", unset: "none: required",
			doc: "The route's public URL: scheme, host and optional port, no path. Requests are routed by host alone " +
				"(whatever the letter case, a trailing dot or the scheme), so each route needs a host of its own, " +
				"and not that of `AUTHENTICATE_SERVICE_URL`.",
			get: func(r *Route) any { return r.From },
			decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				r.From, ok = l.url(v, hostURL)
				return ok
			}},
		{name: "to", logical: "to", example: "[https://10.0.0.1:6443, https://10.0.0.2:6443]", unset: "none: required",
			doc: "Where requests go: a URL, or a list of URLs tried in turn when a connection to one fails. " +
				"A path in the URL goes before the path of each request.",
			get: func(r *Route) any { return r.To },
			decode: func(l *loader, v value, r *Route, _ *routeSet) bool {
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
		{name: "policy", logical: "policy", example: "[{allow: {or: [{groups: {has: sre}}]}}]",
			unset: "none: with no legacy key either, nobody gets in",
			doc: "Who may use the route, in Pomerium's policy language: a list of `allow` and `deny` rules, each of them " +
				"`and`, `or`, `not` or `nor` over criteria. A request needs an `allow` rule that holds and no `deny` rule that does. " +
				"The criteria are `accept` and `reject`; on the person `authenticated_user`, `email`, `domain`, `user`, `groups` " +
				"and `claim/<name>`; on the request `http_method`, `http_path`, `source_ip` and `cors_preflight`; " +
				"on the time `date`, `day_of_week` and `time_of_day`; and on a Kubernetes route's API request `kubernetes_verb`, " +
				"`kubernetes_resource`, `kubernetes_subresource`, `kubernetes_namespace`, `kubernetes_name` and `kubernetes_api_group` " +
				"([examples](kubernetes.md#policy-on-the-kubernetes-request)). A refusal names the rule that decided.",
			get: func(r *Route) any { return r.Policy },
			decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				r.Policy, ok = l.policy(v)
				return ok
			}},
		boolean("tls_skip_verify",
			"Do not verify the upstream's certificate. For experiments only: anyone on the network path can then read and "+
				"change the route's traffic, a service-account token included. `--check-config` and every start warn about it.",
			func(r *Route) *bool { return &r.TLSSkipVerify }),
		{name: "tls_server_name", logical: "tls_server_name", example: "kubernetes.default.svc", unset: "the host of `to`",
			doc: "The name the upstream's certificate must have (and the TLS server name sent to it), when not the host of `to`.",
			get: func(r *Route) any { return r.TLSServerName },
			decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				r.TLSServerName, ok = l.str(v)
				return ok
			}},
	}
	keys = append(keys, pem("tls_custom_ca", "ca.pem",
		"The CA certificates that verify the upstream's certificate (for a Kubernetes route, the cluster's CA)",
		"the system's trusted CAs",
		func(r *Route) *[]byte { return &r.TLSCustomCA }, func(r *Route) *string { return &r.TLSCustomCAFile })...)
	keys = append(keys, pem("tls_client_cert", "client.pem",
		"A client certificate to present to the upstream, with `tls_client_key`",
		"none",
		func(r *Route) *[]byte { return &r.TLSClientCert }, func(r *Route) *string { return &r.TLSClientCertFile })...)
	keys = append(keys, pem("tls_client_key", "client-key.pem",
		"The private key of `tls_client_cert`",
		"none",
		func(r *Route) *[]byte { return &r.TLSClientKey }, func(r *Route) *string { return &r.TLSClientKeyFile })...)
	keys = append(keys,
		routeKey{name: "allow_spdy", logical: "allow_spdy", example: "false",
			doc: "Let clients upgrade a connection to SPDY, as kubectl does for `exec`, `attach`, `cp` and `port-forward` " +
				"when it does not use WebSocket.",
			get: func(r *Route) any { return r.AllowSPDY },
			decode: func(l *loader, v value, r *Route, set *routeSet) (ok bool) {
				set.allowSPDY = true
				r.AllowSPDY, ok = l.boolean(v)
				return ok
			}},
		routeKey{name: "allow_websockets", logical: "allow_websockets", example: "true",
			doc: "Let clients upgrade a connection to WebSocket, as current kubectl does for `exec`, `attach`, `cp` " +
				"and `port-forward`, and as browser applications do.",
			get: func(r *Route) any { return r.AllowWebsockets },
			decode: func(l *loader, v value, r *Route, set *routeSet) (ok bool) {
				set.allowWebsockets = true
				r.AllowWebsockets, ok = l.boolean(v)
				return ok
			}},
		routeKey{name: "kubernetes_service_account_token", logical: "kubernetes_service_account_token",
			example: "eyJhbGciOiJSUzI1NiIs…", unset: "none",
			doc: "Makes the route a Kubernetes route: each request goes upstream with this service-account token and the " +
				"signed-in person as `Impersonate-User` and `Impersonate-Group`, once every credential and impersonation header " +
				"the client sent is removed. Prefer `kubernetes_service_account_token_file`; set only one of the two.",
			decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				r.KubernetesServiceAccountToken, ok = l.str(v)
				return ok
			}},
		// The token file is not read here: the proxy re-reads it at run
		// time, because projected service-account tokens rotate.
		routeKey{name: "kubernetes_service_account_token_file", logical: "kubernetes_service_account_token_file",
			example: "/var/run/secrets/kubernetes.io/serviceaccount/token", unset: "none",
			doc: "The same as `kubernetes_service_account_token`, from a file, which Portcullis reads again when it changes: " +
				"a projected token the kubelet rotates is picked up without a restart.",
			decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				r.KubernetesServiceAccountTokenFile, ok = l.path(v)
				return ok
			}},
		boolean("kubernetes_in_cluster",
			"Makes the route a Kubernetes route to the cluster Portcullis runs in, found as client-go finds it from inside a pod: "+
				"the API server at `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, verified with the pod's "+
				"`/var/run/secrets/kubernetes.io/serviceaccount/ca.crt` and called with its `token` there (read again as the "+
				"kubelet rotates it). Set no `to`, CA or token with it. `--check-config` shows what it found, or says what the "+
				"pod lacks (such as `automountServiceAccountToken: false`).",
			func(r *Route) *bool { return &r.KubernetesInCluster }),
		boolean("kubernetes_allow_system_names",
			"Let Portcullis impersonate user and group names that begin with `system:`, which Kubernetes keeps for its own "+
				"identities (the group `system:masters` is cluster-admin). Without it, a person whose identity provider gives "+
				"such a name is refused. Kubernetes routes only.",
			func(r *Route) *bool { return &r.KubernetesAllowSystemNames }),
		mapped("kubernetes_username_claim", "preferred_username",
			"The claim whose value is the user name Kubernetes sees on this route, as `KUBERNETES_USERNAME_CLAIM` describes.",
			func(r *Route) *string { return &r.KubernetesUsernameClaim }, func(s *routeSet) *bool { return &s.usernameClaim }),
		mapped("kubernetes_username_prefix", `"oidc:"`,
			"What goes before every user name Kubernetes sees on this route, as `KUBERNETES_USERNAME_PREFIX` describes; `-` for none.",
			func(r *Route) *string { return &r.KubernetesUsernamePrefix }, func(s *routeSet) *bool { return &s.usernamePrefix }),
		mapped("kubernetes_groups_prefix", `"oidc:"`,
			"What goes before every group name Kubernetes sees on this route, as `KUBERNETES_GROUPS_PREFIX` describes; `-` for none.",
			func(r *Route) *string { return &r.KubernetesGroupsPrefix }, func(s *routeSet) *bool { return &s.groupsPrefix }),
		routeKey{name: "kubernetes_groups_filter", logical: "kubernetes_groups_filter", example: `["team-*", sre]`,
			unset: "`KUBERNETES_GROUPS_FILTER`'s value",
			doc: "The patterns of the groups that reach Kubernetes on this route, as `KUBERNETES_GROUPS_FILTER` describes; " +
				"`[\"*\"]` lets every group through on a route that must not take the top-level filter. Kubernetes routes only.",
			get: func(r *Route) any { return r.KubernetesGroupsFilter },
			decode: func(l *loader, v value, r *Route, set *routeSet) (ok bool) {
				set.groupsFilter = true
				r.KubernetesGroupsFilter, ok = l.groupPatterns(v)
				return ok
			}},
		boolean("preserve_host_header",
			"Send the client's `Host` header upstream instead of the host of `to`.",
			func(r *Route) *bool { return &r.PreserveHostHeader }),
		boolean("pass_identity_headers",
			"Tell the upstream who is calling, as Pomerium does: a signed JWT in `X-Pomerium-Jwt-Assertion` "+
				"([what it holds](identity-providers.md#what-upstreams-are-told-pass_identity_headers)).",
			func(r *Route) *bool { return &r.PassIdentityHeaders }),
		routeKey{name: "timeout", logical: "timeout", example: "2m",
			doc: "The longest a request may take, its response included, as a duration; `0` means no limit. " +
				"Upgraded connections (`exec`, `port-forward`, WebSocket) are not bounded by it.",
			get: func(r *Route) any { return r.Timeout },
			decode: func(l *loader, v value, r *Route, set *routeSet) (ok bool) {
				set.timeout = true
				r.Timeout, ok = l.duration(v)
				return ok
			}},
		routeKey{name: "idle_timeout", logical: "idle_timeout", example: "15m",
			doc: "How long a request may go without a byte moving either way before it is ended with `504`, as a duration; " +
				"`0` means no limit. Upgraded connections are not bounded by it.",
			get: func(r *Route) any { return r.IdleTimeout },
			decode: func(l *loader, v value, r *Route, set *routeSet) (ok bool) {
				set.idleTimeout = true
				r.IdleTimeout, ok = l.duration(v)
				return ok
			}},
		routeKey{name: "allowed_users", logical: "allowed_users", example: "[someone@example.com]", unset: "none",
			doc: "Let in these people, each matched against both the user ID and the email address the identity provider gives. " +
				"Quote a value YAML would read as a number or a boolean." + legacyNote,
			get: func(r *Route) any { return r.AllowedUsers },
			decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				r.AllowedUsers, ok = l.identityList(v)
				return ok
			}},
		routeKey{name: "allowed_domains", logical: "allowed_domains", example: "[example.com]", unset: "none",
			doc: "Let in everyone whose email address is in one of these domains." + legacyNote,
			get: func(r *Route) any { return r.AllowedDomains },
			decode: func(l *loader, v value, r *Route, _ *routeSet) (ok bool) {
				r.AllowedDomains, ok = l.identityList(v)
				return ok
			}},
		boolean("allow_any_authenticated_user",
			"Let in everyone who signs in."+legacyNote,
			func(r *Route) *bool { return &r.AllowAnyAuthenticatedUser }),
		boolean("allow_public_unauthenticated_access",
			"Let in everyone, signed in or not. Not allowed on a Kubernetes route, nor together with other ways in."+legacyNote,
			func(r *Route) *bool { return &r.AllowPublicUnauthenticatedAccess }),
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
