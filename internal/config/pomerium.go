package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A user migrating from Pomerium brings its configuration: keys Portcullis
// implements under the same name (topSettings, routeKeyTable) do what they
// did there; every other key of Pomerium's is listed in pomeriumKeys with
// what to do instead, and refused with that. None is accepted and then
// ignored, except the presentation keys below, and none gets "unknown
// key" or a "did you mean" that points at a different setting
// (cookie_secure is not a typo of cookie_secret).
//
// The names come from Pomerium's config/options.go (Options and its
// embedded AutocertOptions, DownstreamMTLSSettings, BrandingOptions),
// config/policy.go (Policy, the route), its list of removed keys
// (config/options_check.go) and its configuration reference. Like
// Pomerium (viper lower-cases keys), they are matched whatever their case.

// place says where a Pomerium key is written.
type place uint8

const (
	atTop   place = 1 << iota // a top-level key of the config file
	inEnv                     // an environment variable: the name in upper case
	inRoute                   // a route key, in the file, POLICY or ROUTES
	global  = atTop | inEnv
)

// pomeriumUse is what Portcullis does with a Pomerium key.
type pomeriumUse uint8

const (
	// refused: Portcullis has no such setting; the message says what to do.
	// It is the zero value, so that most entries of pomeriumKeys need no use.
	//lint:ignore U1000 the zero value: every pomeriumKeys entry without a use is refused
	refused pomeriumUse = iota
	// described: the key labels a route for people and changes nothing a
	// request meets. Pomerium shows name, description and logo_url only in
	// its route portal and Enterprise console; a Pomerium file commonly
	// has them on every route, and refusing them would make every
	// migrating user delete documentation for no gain in safety, while a
	// warning on each would be noise at every start. So they are accepted
	// silently, but checked to be a string, so that a mis-indented block
	// is not swallowed.
	described
)

// A pomeriumKey is a key of Pomerium's configuration that Portcullis does
// not implement.
type pomeriumKey struct {
	// name is Pomerium's key. With prefix, every key starting with name
	// (in the file only: the environment cannot be listed).
	name   string
	prefix bool
	at     place
	use    pomeriumUse
	// todo says what to do instead; suggest, when set, may say it better
	// from the value given ("" when it cannot).
	todo    string
	suggest func(v any) string
}

// Shared advice.
const (
	removeIt      = "remove it"
	oneProcess    = "Portcullis runs proxy, authenticate and authorize in one process, with no services between them: remove it"
	hostOnly      = "Portcullis routes by host only: give the route a host of its own"
	noEnvoy       = "Portcullis does not run Envoy: remove it"
	noTracing     = "Portcullis does not export traces: remove it"
	noBranding    = "Portcullis's own pages (sign-in errors, the user page) cannot be branded: remove it"
	noClientCerts = "Portcullis does not ask clients for TLS certificates: remove it"
	noAutocert    = "Portcullis does not obtain certificates itself: give certificate and certificate_key (or certificate_file and certificate_key_file), for example from cert-manager"
	noMetricsTLS  = "Portcullis serves metrics over plain http on metrics_address: keep that on an address only Prometheus can reach, and remove it"
	oneUpstream   = "Portcullis tries the upstreams of to in turn when a connection fails, with no load balancing policy or health checks: remove it"
	ownTokens     = "Portcullis accepts only its own tokens (Authorization: Bearer Pomerium-…, the session cookie), never the identity provider's: remove it"
	noDirectory   = "Portcullis takes groups from the identity provider's token (idp_groups_claim), not from a directory sync: remove it"
	noRespHeaders = "Portcullis passes the upstream's response headers unchanged; set them in the upstream, and remove it"
	samePath      = "Portcullis forwards the request path as sent, after the path of to if it has one (to: https://upstream/base): remove it"
	sameHost      = "Portcullis sends the host of to, or the client's with preserve_host_header: true: remove it"
	noPPLRule     = "write it as a rule of the route's policy"
	addPPLRule    = "add this rule to the route's policy: "
)

// pomeriumKeys is the table. Keys Portcullis implements with Pomerium's
// meaning must not be in it (TestPomeriumKeys checks).
var pomeriumKeys = []pomeriumKey{
	// Cookies: Portcullis sets them one way (docs/security.md).
	{name: "cookie_secure", at: global, todo: "Portcullis cookies are always Secure (unless authenticate_service_url is plain http, a development setup): remove it"},
	{name: "cookie_http_only", at: global, todo: "Portcullis cookies are always HttpOnly: remove it"},
	{name: "cookie_same_site", at: global, todo: "Portcullis cookies are always SameSite=Lax, which the identity provider's redirect back needs: remove it"},
	{name: "cookie_domain", at: global, todo: "a Portcullis cookie belongs to the host that set it and is never shared with other hosts: remove it"},

	// Sessions and identity.
	{name: "idp_service_account", at: global, todo: noDirectory},
	{name: "idp_refresh_directory_timeout", at: global, todo: noDirectory},
	{name: "idp_refresh_directory_interval", at: global, todo: noDirectory},
	{name: "idp_qps", at: global, todo: noDirectory},
	{name: "idp_client_id", at: inRoute, todo: "Portcullis signs everyone in with one identity-provider client: set idp_client_id at the top level only"},
	{name: "idp_client_secret", at: inRoute, todo: "Portcullis signs everyone in with one identity-provider client: set idp_client_secret at the top level only"},
	{name: "identity_providers", at: inRoute, todo: "Portcullis signs everyone in with one identity provider: remove it"},
	{name: "idp_access_token_allowed_audiences", at: global | inRoute, todo: ownTokens},
	{name: "bearer_token_format", at: global | inRoute, todo: ownTokens},
	{name: "jwt_issuer_format", at: global | inRoute, todo: "Portcullis's tokens always name the same issuer: remove it"},
	// Security: filtered-out groups would reach Kubernetes after this.
	{name: "jwt_groups_filter", at: global | inRoute, todo: "Portcullis passes every group the identity provider gives, as Impersonate-Group on Kubernetes routes, unless kubernetes_groups_filter (names and patterns such as team-*, top-level or per route) keeps fewer, so RBAC bound to a group you filtered out would apply: move the list to kubernetes_groups_filter, then remove it"},
	{name: "jwt_claims_headers", at: global, todo: "Portcullis sends no X-Pomerium-Claim-* headers (Kubernetes sees the person as Impersonate-User and Impersonate-Group): remove it"},
	{name: "pass_identity_headers", at: global, suggest: suggestPerRoute, todo: "Portcullis sets pass_identity_headers per route: set it on each route that needs the headers"},
	{name: "programmatic_redirect_domain_whitelist", at: global, todo: "Portcullis's programmatic login redirects only to loopback addresses (kubectl's local listener): remove it"},
	{name: "authenticate_callback_path", at: global, todo: "Portcullis's callback is always /oauth2/callback on the authenticate_service_url host, the URL to register with the identity provider: remove it"},
	{name: "signout_redirect_url", at: global, todo: "Portcullis shows its own signed-out page: remove it"},

	// Access: written in the policy language instead.
	{name: "allowed_groups", at: inRoute, suggest: suggestGroups,
		todo: noPPLRule + ", such as - allow: {or: [{groups: {has: admins}}]}"},
	{name: "allowed_idp_claims", at: inRoute, suggest: suggestClaims,
		todo: noPPLRule + ", such as - allow: {or: [{claim/department: engineering}]}"},
	{name: "cors_allow_preflight", at: inRoute, suggest: suggestPreflight,
		todo: addPPLRule + "- allow: {or: [{cors_preflight: true}]}"},
	{name: "sub_policies", at: inRoute, todo: "write its rules into the route's policy"},
	{name: "set_authorization_header", at: inRoute, todo: "Portcullis never passes the person's token upstream: remove it"},

	// Routing: by host, to upstreams given in to.
	{name: "prefix", at: inRoute, todo: hostOnly},
	{name: "path", at: inRoute, todo: hostOnly},
	{name: "regex", at: inRoute, todo: hostOnly},
	{name: "regex_priority_order", at: inRoute, todo: hostOnly},
	{name: "prefix_rewrite", at: inRoute, todo: samePath},
	{name: "regex_rewrite_pattern", at: inRoute, todo: samePath},
	{name: "regex_rewrite_substitution", at: inRoute, todo: samePath},
	{name: "host_rewrite", at: inRoute, todo: sameHost},
	{name: "host_rewrite_header", at: inRoute, todo: sameHost},
	{name: "host_path_regex_rewrite_pattern", at: inRoute, todo: sameHost},
	{name: "host_path_regex_rewrite_substitution", at: inRoute, todo: sameHost},
	{name: "redirect", at: inRoute, todo: "a Portcullis route always proxies to the upstreams of to: serve the redirect there, or remove the route"},
	{name: "response", at: inRoute, todo: "a Portcullis route always proxies to the upstreams of to: serve the response there, or remove the route"},
	{name: "allow_upgrades", at: global | inRoute, todo: "Portcullis enables upgrades per route with allow_spdy and allow_websockets (both on by default on Kubernetes routes): use those"},
	{name: "load_balancing_policy", at: inRoute, todo: oneUpstream},
	{name: "lb_policy", at: inRoute, todo: oneUpstream},
	{name: "least_request_lb_config", at: inRoute, todo: oneUpstream},
	{name: "ring_hash_lb_config", at: inRoute, todo: oneUpstream},
	{name: "maglev_lb_config", at: inRoute, todo: oneUpstream},
	{name: "health_checks", at: inRoute, todo: oneUpstream},
	{name: "outlier_detection", at: inRoute, todo: oneUpstream},
	{name: "healthy_panic_threshold", at: inRoute, todo: oneUpstream},
	{name: "circuit_breaker_thresholds", at: global | inRoute, todo: oneUpstream},
	{name: "depends_on", at: inRoute, todo: removeIt},
	{name: "mcp", at: inRoute, todo: "Portcullis proxies HTTP and the Kubernetes API only: remove it"},
	{name: "upstream_tunnel", at: inRoute, todo: "Portcullis proxies HTTP and the Kubernetes API only: remove it"},
	{name: "enable_google_cloud_serverless_authentication", at: inRoute, todo: "Portcullis adds no Google Cloud identity tokens upstream: remove it"},
	{name: "google_cloud_serverless_authentication_service_account", at: global, todo: "Portcullis adds no Google Cloud identity tokens upstream: remove it"},
	{name: "show_error_details", at: inRoute, todo: "Portcullis's denials always name the deciding rule and the reason: remove it"},

	// Headers.
	{name: "set_request_headers", at: inRoute, todo: "Portcullis sets only its own upstream headers (X-Forwarded-*, and on Kubernetes routes Authorization and Impersonate-*); set the others in the upstream, and remove it"},
	{name: "remove_request_headers", at: inRoute, todo: "Portcullis already removes every client credential and impersonation header before forwarding, on every route, and no other header: remove it"},
	{name: "set_response_headers", at: global | inRoute, todo: noRespHeaders},
	{name: "headers", at: inEnv, todo: noRespHeaders}, // Pomerium's variable for set_response_headers
	{name: "rewrite_response_headers", at: inRoute, todo: noRespHeaders},

	// Upstream TLS: Portcullis implements tls_server_name, tls_custom_ca,
	// tls_client_cert and tls_client_key.
	{name: "tls_upstream_server_name", at: inRoute, todo: "Portcullis spells it tls_server_name: rename it"},
	{name: "tls_downstream_server_name", at: inRoute, todo: "Portcullis serves its one certificate on every route: remove it"},
	{name: "tls_upstream_allow_renegotiation", at: inRoute, todo: "Portcullis never lets an upstream renegotiate TLS: remove it"},

	// Listener and TLS towards clients.
	{name: "tls_downstream_client_ca", at: inRoute, todo: noClientCerts},
	{name: "tls_downstream_client_ca_file", at: inRoute, todo: noClientCerts},
	{name: "client_ca", at: global, todo: noClientCerts},
	{name: "client_ca_file", at: global, todo: noClientCerts},
	{name: "downstream_mtls", at: global, todo: noClientCerts},
	{name: "autocert", at: global, todo: noAutocert},
	{name: "autocert_", prefix: true, at: atTop, todo: noAutocert},
	{name: "autocert_dir", at: global, todo: noAutocert},
	{name: "autocert_ca", at: global, todo: noAutocert},
	{name: "autocert_email", at: global, todo: noAutocert},
	{name: "autocert_use_staging", at: global, todo: noAutocert},
	{name: "autocert_must_staple", at: global, todo: noAutocert},
	{name: "autocert_eab_key_id", at: global, todo: noAutocert},
	{name: "autocert_eab_mac_key", at: global, todo: noAutocert},
	{name: "autocert_trusted_ca", at: global, todo: noAutocert},
	{name: "autocert_trusted_ca_file", at: global, todo: noAutocert},
	{name: "certificates", at: global, todo: "Portcullis serves one certificate: give it as certificate and certificate_key (or certificate_file and certificate_key_file)"},
	{name: "http_redirect_addr", at: global, todo: "Portcullis serves no http-to-https redirect: remove it"},
	{name: "http3_advertise_port", at: global, todo: "Portcullis does not serve HTTP/3: remove it"},
	{name: "codec_type", at: global, todo: "Portcullis offers HTTP/2 and HTTP/1.1 over TLS and keeps HTTP/1.1 for the upgrades kubectl exec and port-forward need: remove it"},
	{name: "use_proxy_protocol", at: global, todo: "Portcullis does not read the PROXY protocol: turn it off in the load balancer in front, and remove it"},
	{name: "xff_num_trusted_hops", at: global, todo: "Portcullis takes the client's address (source_ip) from the connection, never from X-Forwarded-For: remove it"},
	{name: "skip_xff_append", at: global, todo: "Portcullis replaces X-Forwarded-For with the connecting client's address, never passing on a client's own: remove it"},
	{name: "timeout_read", at: global, todo: "Portcullis bounds reading requests itself, and sets timeouts per route (timeout, idle_timeout): remove it"},
	{name: "timeout_write", at: global, todo: "Portcullis sets timeouts per route (timeout, idle_timeout): remove it"},
	{name: "timeout_idle", at: global, todo: "Portcullis sets timeouts per route (timeout, idle_timeout): remove it"},
	{name: "default_upstream_timeout", at: global, todo: "set timeout on each route instead (a Kubernetes route has none by default, so that watch and exec streams are not cut)"},

	// One process, no Envoy, no gRPC.
	{name: "services", at: global, todo: oneProcess},
	{name: "authorize_service_url", at: global, todo: oneProcess},
	{name: "authorize_service_urls", at: global, todo: oneProcess},
	{name: "authorize_internal_service_url", at: global, todo: oneProcess},
	{name: "authenticate_internal_service_url", at: global, todo: oneProcess},
	{name: "databroker_service_url", at: global, todo: oneProcess},
	{name: "databroker_service_urls", at: global, todo: oneProcess},
	{name: "databroker_internal_service_url", at: global, todo: oneProcess},
	{name: "grpc_address", at: global, todo: oneProcess},
	{name: "grpc_insecure", at: global, todo: oneProcess},
	{name: "grpc_client_timeout", at: global, todo: oneProcess},
	{name: "tls_derive", at: global, todo: oneProcess},
	{name: "override_certificate_name", at: global, todo: oneProcess},
	{name: "certificate_authority", at: global, todo: oneProcess},
	{name: "certificate_authority_file", at: global, todo: oneProcess},
	{name: "envoy_", prefix: true, at: atTop, todo: noEnvoy},
	{name: "envoy_admin_address", at: global, todo: noEnvoy},
	{name: "envoy_admin_access_log_path", at: global, todo: noEnvoy},
	{name: "envoy_admin_profile_path", at: global, todo: noEnvoy},
	{name: "envoy_bind_config_source_address", at: global, todo: noEnvoy},
	{name: "envoy_bind_config_freebind", at: global, todo: noEnvoy},
	{name: "dns_lookup_family", at: global, todo: "Portcullis resolves upstream names with the system resolver: remove it"},
	{name: "dns_", prefix: true, at: atTop, todo: "Portcullis resolves upstream names with the system resolver: remove it"},
	{name: "runtime_flags", at: global, todo: removeIt},
	{name: "installation_id", at: global, todo: removeIt},
	{name: "ssh_", prefix: true, at: atTop, todo: "Portcullis does not proxy SSH: remove it"},
	{name: "policy_file", at: global, todo: "give the routes in this file under routes:, or as ROUTES (base64 of the file)"},

	// Logs, metrics, traces.
	{name: "pomerium_debug", at: global, todo: "use log_level: debug"},
	{name: "proxy_log_level", at: global, todo: "Portcullis has one log level: use log_level"},
	{name: "access_log_fields", at: global, todo: "Portcullis logs a fixed set of fields for each request: remove it"},
	{name: "authorize_log_fields", at: global, todo: "Portcullis logs a fixed set of fields for each decision: remove it"},
	{name: "metrics_basic_auth", at: global, todo: "Portcullis's metrics listener has no authentication: keep metrics_address on an address only Prometheus can reach, and remove it"},
	{name: "metrics_certificate", at: global, todo: noMetricsTLS},
	{name: "metrics_certificate_key", at: global, todo: noMetricsTLS},
	{name: "metrics_certificate_file", at: global, todo: noMetricsTLS},
	{name: "metrics_certificate_key_file", at: global, todo: noMetricsTLS},
	{name: "metrics_client_ca", at: global, todo: noMetricsTLS},
	{name: "metrics_client_ca_file", at: global, todo: noMetricsTLS},
	{name: "tracing_", prefix: true, at: atTop, todo: noTracing},
	{name: "tracing_provider", at: global, todo: noTracing},
	{name: "tracing_sample_rate", at: global, todo: noTracing},
	{name: "tracing_otlp_endpoint", at: global, todo: noTracing},
	{name: "tracing_otlp_protocol", at: global, todo: noTracing},
	{name: "tracing_datadog_address", at: global, todo: noTracing},
	{name: "tracing_jaeger_collector_endpoint", at: global, todo: noTracing},
	{name: "tracing_jaeger_agent_endpoint", at: global, todo: noTracing},
	{name: "tracing_zipkin_endpoint", at: global, todo: noTracing},
	// In the file only: OTEL_* variables are the OpenTelemetry SDKs'
	// standard ones, which an operator may inject into every pod.
	{name: "otel_", prefix: true, at: atTop, todo: noTracing},

	// Branding of Pomerium's own pages (Enterprise).
	{name: "primary_color", at: global, todo: noBranding},
	{name: "secondary_color", at: global, todo: noBranding},
	{name: "darkmode_primary_color", at: global, todo: noBranding},
	{name: "darkmode_secondary_color", at: global, todo: noBranding},
	{name: "logo_url", at: global, todo: noBranding},
	{name: "favicon_url", at: global, todo: noBranding},
	{name: "error_message_first_paragraph", at: global, todo: noBranding},

	// Presentation of a route, accepted (see described).
	{name: "name", at: inRoute, use: described},
	{name: "description", at: inRoute, use: described},
	{name: "logo_url", at: inRoute, use: described},
}

// lookupPomeriumKey finds the entry for key written at p (atTop or
// inRoute): the entry for that place, else one for the other level of
// the file (a Pomerium key at the wrong level is still Pomerium's),
// preferring an exact name to a prefix. Presentation keys count only
// where Pomerium has them.
func lookupPomeriumKey(key string, p place) (pomeriumKey, bool) {
	key = strings.ToLower(key)
	var found []pomeriumKey
	for _, k := range pomeriumKeys {
		if k.name == key || (k.prefix && strings.HasPrefix(key, k.name)) {
			found = append(found, k)
		}
	}
	rank := func(k pomeriumKey) int {
		r := 0
		if k.at&p == 0 {
			r += 2
		}
		if k.prefix {
			r++
		}
		return r
	}
	found = slices.DeleteFunc(found, func(k pomeriumKey) bool {
		// Only the file's two levels stand in for each other.
		return k.at&p == 0 && (k.use == described || k.at&(atTop|inRoute) == 0)
	})
	if len(found) == 0 {
		return pomeriumKey{}, false
	}
	return slices.MinFunc(found, func(a, b pomeriumKey) int { return rank(a) - rank(b) }), true
}

// message is the problem for the key as spelled (COOKIE_SECURE in the
// environment) with value v, as yaml.v3 decodes it (nil from the
// environment).
func (k pomeriumKey) message(spelled string, v any) string {
	todo := k.todo
	if k.suggest != nil {
		if s := k.suggest(v); s != "" {
			todo = s
		}
	}
	return fmt.Sprintf("Pomerium's %q is not supported by Portcullis: %s", spelled, todo)
}

// pomeriumEntry deals with e, a key that is no setting of Portcullis at
// place p (atTop or inRoute), if it is Pomerium's; keyPrefix names the
// route in Problems ("routes[0]"), sep what follows it. It returns false
// for a key that is not Pomerium's either.
//
// A null or empty value is not set (as for Portcullis's own keys), so it
// asks for nothing and is let through.
func (l *loader) pomeriumEntry(d *doc, e entry, p place, keyPrefix, sep string) bool {
	k, ok := lookupPomeriumKey(e.name, p)
	if !ok {
		return false
	}
	if k.use == described {
		switch {
		case e.name != k.name:
			// Portcullis's keys are case-sensitive.
			l.problem(d.at(e.key, keyPrefix), fmt.Sprintf("unknown key %q (did you mean %q?)", e.name, k.name))
		case !isNull(e.val):
			l.str(value{at: d.at(e.val, keyPrefix+sep+e.name), d: d, node: e.val})
		}
		return true
	}
	if isNull(e.val) {
		return true
	}
	var v any
	if k.suggest != nil && l.countValue(d, e.val, keyPrefix, 0) {
		_ = e.val.Decode(&v) // nil on failure: suggest then says nothing
	}
	l.problem(d.at(e.key, keyPrefix), k.message(e.name, v))
	return true
}

// pomeriumEnv refuses the environment variables of Pomerium's settings
// that Portcullis does not implement.
func (l *loader) pomeriumEnv() {
	for _, k := range pomeriumKeys {
		if k.at&inEnv == 0 || k.prefix {
			continue
		}
		name := strings.ToUpper(k.name)
		if v, ok := l.getenv(name); ok {
			var val any
			if k.suggest != nil {
				val = envValue(v)
			}
			msg := strings.ReplaceAll(k.message(name, val), "remove it", "unset it")
			l.problem(where{source: name, env: true}, msg)
		}
	}
}

// envValue reads an environment variable's value as the YAML scalar it
// would be in the file, for suggest.
func envValue(s string) any {
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return s
	}
	return v
}

// suggestPerRoute: a global default that Portcullis sets per route.
func suggestPerRoute(v any) string {
	if v == false {
		return "false is Portcullis's default, and Portcullis sets pass_identity_headers per route: remove it"
	}
	return ""
}

// suggestGroups writes allowed_groups as a rule. Pomerium ORs the legacy
// keys into one allow rule, as Portcullis does with its own and the
// route's policy rules, so one more allow rule has the same effect.
func suggestGroups(v any) string {
	groups := textList(v)
	if len(groups) == 0 {
		return ""
	}
	var crit []string
	for _, g := range groups {
		crit = append(crit, fmt.Sprintf("{groups: {has: %s}}", strconv.Quote(g)))
	}
	return addPPLRule + "- allow: {or: [" + strings.Join(crit, ", ") + "]}"
}

// suggestClaims writes allowed_idp_claims (claim name to allowed values)
// as a rule.
func suggestClaims(v any) string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return ""
	}
	var crit []string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		values := textList(m[name])
		if len(values) == 0 {
			return ""
		}
		for _, val := range values {
			crit = append(crit, fmt.Sprintf("{claim/%s: %s}", name, strconv.Quote(val)))
		}
	}
	return addPPLRule + "- allow: {or: [" + strings.Join(crit, ", ") + "]}"
}

// suggestPreflight writes cors_allow_preflight as a rule.
func suggestPreflight(v any) string {
	if v == false {
		return "false is Portcullis's default: remove it"
	}
	return ""
}

// textList returns v as a list of strings: a string, or a list of them;
// nil if anything else is in it.
func textList(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, item := range v {
			s, ok := item.(string)
			if !ok {
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	return nil
}

// identityList decodes allowed_users or allowed_domains: like list, but a
// YAML number or boolean is refused. Pomerium reads these keys through
// mapstructure's weak typing, which writes true as "1" and 0x1F as "31",
// while Portcullis would take the text as written: the same file would
// let different people in. Quoted, both read the same text.
func (l *loader) identityList(v value) ([]string, bool) {
	ok := true
	if n := deref(v.node); n != nil {
		items := []*yaml.Node{n}
		if n.Kind == yaml.SequenceNode {
			items = n.Content
		}
		for i, item := range items {
			item = deref(item)
			kind := map[string]string{"!!int": "a number", "!!float": "a number", "!!bool": "a boolean"}[item.ShortTag()]
			if item.Kind != yaml.ScalarNode || kind == "" {
				continue
			}
			at := v.at
			if n.Kind == yaml.SequenceNode {
				at = v.d.at(item, fmt.Sprintf("%s[%d]", v.at.key, i))
			}
			l.problem(at, fmt.Sprintf("%s is %s, which Pomerium turns into text its own way (true becomes \"1\"): write it in quotes, as %s",
				item.Value, kind, strconv.Quote(item.Value)))
			ok = false
		}
	}
	list, good := l.list(v, false)
	return list, ok && good
}
