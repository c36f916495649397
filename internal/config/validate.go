package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/postgres/connstring"
)

// where says where a setting's value came from, for Problems.
type where struct {
	source string // Problem.Source
	key    string // Problem.Key
	// env marks a top-level setting from the environment: messages then
	// name other settings in upper case, as the user spells them.
	env bool
	// d and line place Problems in line order: the YAML text the value is
	// in, if any, and its line there.
	d    *doc
	line int
}

// name spells top-level setting key as the user did the one at w.
func (w where) name(key string) string {
	if w.env {
		return strings.ToUpper(key)
	}
	return key
}

// locations maps the settings of a loaded Options to where they came
// from, so that validation names the file line or the variable; and
// records the settings that already had a decoding problem, so that
// validation does not report them twice.
type locations struct {
	file   string           // the config file's path; "" if none
	top    map[string]where // by YAML key: "cookie_secret" also for cookie_secret_file
	failed map[string]bool
	routes []routeLoc // one for each of Options.Routes
}

// routeLoc is where one route came from.
type routeLoc struct {
	at          where  // the route as a whole; at.key is prefix
	prefix, sep string // Problem.Key is prefix + sep + key: "routes[0]" "." "to"
	ref         string // how other routes' messages name this one
	// keys is where each key's value is, by routeKey.logical; its Problem
	// key names the key as written (tls_custom_ca_file).
	keys   map[string]where
	failed map[string]bool
	set    routeSet
}

// key returns where key is, or the route itself when the key is not set.
func (r *routeLoc) key(key string) where {
	if w, ok := r.keys[key]; ok {
		return w
	}
	w := r.at
	w.key = r.prefix + r.sep + key
	return w
}

// pureRouteLoc names route i of Options built in code.
func pureRouteLoc(i int, r *Route) routeLoc {
	prefix := fmt.Sprintf("routes[%d]", i)
	loc := routeLoc{at: where{key: prefix}, prefix: prefix, sep: ".", ref: prefix, keys: map[string]where{}}
	for name, path := range map[string]string{
		"tls_custom_ca":   r.TLSCustomCAFile,
		"tls_client_cert": r.TLSClientCertFile,
		"tls_client_key":  r.TLSClientKeyFile,
	} {
		if path != "" {
			loc.keys[name] = where{key: prefix + "." + name + "_file"}
		}
	}
	return loc
}

// validator collects validation problems; loc is nil for Options built in
// code.
type validator struct {
	loc      *locations
	found    []found
	warnings []*Problem
}

func (v *validator) add(at where, format string, args ...any) {
	v.found = append(v.found, found{
		p:    &Problem{Source: at.source, Key: at.key, Message: fmt.Sprintf(format, args...)},
		d:    at.d,
		line: at.line,
	})
}

// top returns where top-level key came from; false if it already had a
// decoding problem.
func (v *validator) top(key string) (where, bool) {
	if v.loc == nil {
		return where{key: key}, true
	}
	if v.loc.failed[key] {
		return where{}, false
	}
	if w, ok := v.loc.top[key]; ok {
		return w, true
	}
	return v.loc.unset(key), true
}

// unset names a top-level setting that was not given, for a problem that
// it is missing: the way the user would set it, by the file's key when
// there is a config file, by the environment variable otherwise.
func (l *locations) unset(key string) where {
	if l.file != "" {
		return where{source: l.file, key: key}
	}
	return where{source: strings.ToUpper(key), env: true}
}

func (v *validator) route(i int, r *Route) routeLoc {
	if v.loc != nil && i < len(v.loc.routes) {
		return v.loc.routes[i]
	}
	return pureRouteLoc(i, r)
}

func (o *Options) validateInto(v *validator) {

	if at, ok := v.top("address"); ok {
		if msg := checkListenAddr(o.Address); msg != "" {
			v.add(at, "%s", msg)
		}
	}
	if at, ok := v.top("admin_token"); ok && o.AdminToken != "" {
		switch {
		case len(o.AdminToken) < minAdminToken:
			v.add(at, "the admin token is %d characters long: want at least %d, such as the output of \"head -c32 /dev/urandom | base64\"", len(o.AdminToken), minAdminToken)
		case o.MetricsAddress == "":
			v.add(at, "the admin API is served on the metrics listener, and %s is not set: set it, on an address only administrators and monitoring reach", at.name("metrics_address"))
		}
	}
	if at, ok := v.top("metrics_address"); ok && o.MetricsAddress != "" {
		if msg := checkListenAddr(o.MetricsAddress); msg != "" {
			v.add(at, "%s", msg)
		} else if _, port, _ := net.SplitHostPort(o.Address); o.MetricsAddress == o.Address && port != "0" {
			// Port 0 asks for any free port: two of them never clash.
			v.add(at, "%q is also %s: want a port of its own, such as :9090", o.MetricsAddress, at.name("address"))
		}
	}
	authAt, authOK := v.top("authenticate_service_url")
	if authOK && o.AuthenticateServiceURL != nil {
		if msg := checkURL(o.AuthenticateServiceURL.String(), o.AuthenticateServiceURL, hostURL); msg != "" {
			v.add(authAt, "%s", msg)
			authOK = false
		} else if Hosts(o.AuthenticateServiceURL) == nil {
			v.add(authAt, "%q is not a valid host name or IP address", o.AuthenticateServiceURL.Host)
			authOK = false
		}
	}

	certAt, certOK := v.top("certificate")
	keyAt, keyOK := v.top("certificate_key")
	if certOK && keyOK {
		v.keyPair(certAt, keyAt, o.Certificate, o.CertificateKey, "certificate", "certificate_key")
	}

	if at, ok := v.top("cookie_secret"); ok && len(o.CookieSecret) != 0 && len(o.CookieSecret) != 32 {
		v.add(at, "decodes to %d bytes, want 32: %s", len(o.CookieSecret), secretHint)
	}
	if at, ok := v.top("cookie_name"); ok && !isCookieName(o.CookieName) {
		v.add(at, "%q is not a valid cookie name: want letters, digits, - and _ only, such as _pomerium", o.CookieName)
	}
	if at, ok := v.top("cookie_expire"); ok && o.CookieExpire <= 0 {
		v.add(at, "%s is not positive: want a duration such as 14h", o.CookieExpire)
	}
	// Zero in Options built in code takes the default.
	// A token never outlives its session, so a lifetime longer than
	// cookie_expire is no error: the session bounds it.
	if at, ok := v.top("access_token_lifetime"); ok && !(v.loc == nil && o.AccessTokenLifetime == 0) && o.AccessTokenLifetime < 30*time.Second {
		v.add(at, "%s is too short: want at least 30s, such as 5m (portcullis-cli renews a token when half its life is left)", o.AccessTokenLifetime)
	}
	if at, ok := v.top("device_code_lifetime"); ok && !(v.loc == nil && o.DeviceCodeLifetime == 0) &&
		(o.DeviceCodeLifetime < 30*time.Second || o.DeviceCodeLifetime > time.Hour) {
		v.add(at, "%s is out of range: want a duration from 30s to 1h, such as 10m", o.DeviceCodeLifetime)
	}
	if at, ok := v.top("device_poll_interval"); ok && !(v.loc == nil && o.DevicePollInterval == 0) {
		switch {
		case o.DevicePollInterval < time.Second || o.DevicePollInterval > time.Minute:
			v.add(at, "%s is out of range: want a duration from 1s to 1m, such as 5s", o.DevicePollInterval)
		case o.DeviceCodeLifetime != 0 && o.DevicePollInterval >= o.DeviceCodeLifetime:
			v.add(at, "%s is not shorter than device_code_lifetime (%s): a device would never poll before its code expired", o.DevicePollInterval, o.DeviceCodeLifetime)
		}
	}
	// Zero (Options built in code) takes the provider's default.
	// Options built in code may leave Limits unset: a limit of zero would
	// let one connection in, so say so rather than serve like that.
	for _, st := range topSettings() {
		if !strings.HasPrefix(st.key, "limit_") {
			continue
		}
		if n := st.get(o).(int); n < 1 || n > maxLimit {
			if at, ok := v.top(st.key); ok {
				v.add(at, "%d is not a limit: want a whole number from 1 to %d (config.Defaults has the defaults)", n, maxLimit)
			}
		}
	}
	v.sessionStore(o)
	if at, ok := v.top("idp_builtin_token_ttl"); ok && o.IDPBuiltinTokenTTL != 0 && o.IDPBuiltinTokenTTL < time.Second {
		// JWT times are whole seconds (RFC 7519 section 2).
		v.add(at, "%s is less than 1s: token times are whole seconds; want a duration such as 1h, or 5s for a test", o.IDPBuiltinTokenTTL)
	}
	if at, ok := v.top("shared_secret"); ok && len(o.SharedSecret) != 0 && len(o.SharedSecret) < 32 {
		v.add(at, "decodes to %d bytes, want at least 32: %s", len(o.SharedSecret), secretHint)
	}
	if at, ok := v.top("signing_key"); ok && len(o.SigningKey) != 0 {
		if msg := checkSigningKey(o.SigningKey); msg != "" {
			v.add(at, "%s", msg)
		}
	}
	if at, ok := v.top("idp_provider_url"); ok && o.IDPProviderURL != "" {
		if u, err := url.Parse(o.IDPProviderURL); err != nil {
			v.add(at, "%q is not a URL: want https://host[:port][/path]", o.IDPProviderURL)
		} else if msg := checkURL(o.IDPProviderURL, u, upstreamURL); msg != "" {
			v.add(at, "%s", msg)
		}
	}
	if at, ok := v.top("idp_scopes"); ok {
		for _, s := range o.IDPScopes {
			if s == "" || strings.ContainsAny(s, " \t\r\n,") {
				v.add(at, "scope %q is not valid: want scopes without spaces, separated by commas, such as openid,email", s)
			}
		}
	}
	if at, ok := v.top("log_level"); ok {
		switch o.LogLevel {
		case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
		default:
			v.add(at, "%q is not a log level: want debug, info, warn or error", strings.ToLower(o.LogLevel.String()))
		}
	}
	if at, ok := v.top("log_format"); ok && o.LogFormat != "json" && o.LogFormat != "text" {
		v.add(at, "%q is not a log format: want json or text", o.LogFormat)
	}

	v.topMapping(o)

	// owner is the route that answers each Host value (Hosts): two routes
	// the router could not tell apart are refused here, not at start.
	owner := map[string]int{}
	for i := range o.Routes {
		r := &o.Routes[i]
		rl := v.route(i, r)
		switch {
		case rl.failed["from"]:
		case r.From == nil:
			v.add(rl.at, "no from: want the route's public URL, such as from: https://k8s.example.com")
		default:
			if msg := checkURL(r.From.String(), r.From, hostURL); msg != "" {
				v.add(rl.key("from"), "%s", msg)
				break
			}
			hosts := Hosts(r.From)
			if hosts == nil {
				v.add(rl.key("from"), "%q is not a valid host name or IP address", r.From.Host)
				break
			}
			for _, h := range hosts {
				if j, dup := owner[h]; dup {
					v.add(rl.key("from"), "%q answers the same requests as %q, the from of %s (routes are chosen by host, whatever the letter case, a trailing dot or the scheme): give each route a host of its own",
						r.From.String(), o.Routes[j].From.String(), v.route(j, &o.Routes[j]).ref)
					break
				}
				owner[h] = i
			}
		}
		// A kubernetes_in_cluster route that could not be resolved has
		// been reported on that key: no second problem for its to.
		if !rl.failed["to"] && !rl.failed["kubernetes_in_cluster"] {
			if len(r.To) == 0 {
				v.add(rl.at, "no to: want the upstream URL, such as to: https://kubernetes.default.svc")
			}
			for _, u := range r.To {
				if u == nil {
					v.add(rl.key("to"), "an empty URL: want https://host[:port]")
				} else if msg := checkURL(u.String(), u, upstreamURL); msg != "" {
					v.add(rl.key("to"), "%s", msg)
				}
			}
		}
		if r.KubernetesAllowSystemNames && !r.IsKubernetes() {
			v.add(rl.key("kubernetes_allow_system_names"),
				"set on a route that is not a Kubernetes route (no kubernetes_service_account_token): it only decides what Portcullis may impersonate; remove it")
		}
		v.routeMapping(r, rl)
		if r.KubernetesServiceAccountToken != "" && r.KubernetesServiceAccountTokenFile != "" {
			v.add(rl.key("kubernetes_service_account_token_file"),
				"set together with kubernetes_service_account_token: set only one of them (the _file form is re-read when the token rotates)")
		}
		if !rl.failed["tls_custom_ca"] && len(r.TLSCustomCA) != 0 {
			if !x509.NewCertPool().AppendCertsFromPEM(r.TLSCustomCA) {
				v.add(rl.key("tls_custom_ca"), "holds no PEM certificate: want PEM text starting with %q (inline values are the base64 of that text)", "-----BEGIN CERTIFICATE-----")
			}
		}
		if !rl.failed["tls_client_cert"] && !rl.failed["tls_client_key"] {
			v.keyPair(rl.key("tls_client_cert"), rl.key("tls_client_key"), r.TLSClientCert, r.TLSClientKey, "tls_client_cert", "tls_client_key")
		}
		for _, t := range []struct {
			key string
			d   fmt.Stringer
			neg bool
		}{{"timeout", r.Timeout, r.Timeout < 0}, {"idle_timeout", r.IdleTimeout, r.IdleTimeout < 0}} {
			if t.neg && !rl.failed[t.key] {
				v.add(rl.key(t.key), "%s is negative: want 0 (no limit) or a positive duration such as 30s", t.d)
			}
		}
		if r.AllowPublicUnauthenticatedAccess {
			at := rl.key("allow_public_unauthenticated_access")
			var others []string
			if r.AllowAnyAuthenticatedUser {
				others = append(others, "allow_any_authenticated_user")
			}
			if len(r.AllowedUsers) > 0 {
				others = append(others, "allowed_users")
			}
			if len(r.AllowedDomains) > 0 {
				others = append(others, "allowed_domains")
			}
			if r.Policy != nil {
				others = append(others, "policy")
			}
			switch {
			case r.IsKubernetes():
				// Kubernetes sees the person through Impersonate-User: with
				// no signed-in person the proxy would act with the service
				// account's own rights, which docs/security.md promises never.
				v.add(at, "not allowed on a Kubernetes route: impersonation needs a signed-in user; use allow_any_authenticated_user or a policy")
			case len(others) > 0:
				v.add(at, "set together with %s: a public route lets everyone in, so those rules would do nothing; keep one or the other", strings.Join(others, ", "))
			}
		}
		if r.Policy != nil && !rl.failed["policy"] {
			for j, rule := range r.Policy.Rules {
				if rule.Action != "allow" && rule.Action != "deny" {
					v.add(rl.key("policy"), "rule %d: action %q: want allow or deny", j+1, rule.Action)
				}
				if msg := checkExpr(&rule.Root, 0); msg != "" {
					v.add(rl.key("policy"), "rule %d: %s", j+1, msg)
				}
			}
		}
	}
	if authOK && o.AuthenticateServiceURL != nil {
		for _, h := range Hosts(o.AuthenticateServiceURL) {
			if j, dup := owner[h]; dup {
				v.add(authAt, "%q answers the same requests as %q, the from of %s: give the sign-in service a host of its own, such as https://authenticate.example.com",
					o.AuthenticateServiceURL.String(), o.Routes[j].From.String(), v.route(j, &o.Routes[j]).ref)
				break
			}
		}
	}
}

// keyPair checks a PEM certificate and private key that must be set
// together and match. Each message names the other setting as the user
// spells the one it is about (CERTIFICATE_KEY in the environment).
func (v *validator) keyPair(certAt, keyAt where, cert, key []byte, certName, keyName string) {
	switch {
	case len(cert) == 0 && len(key) == 0:
		return
	case len(key) == 0:
		v.add(certAt, "set without %s: set both, or neither", certAt.name(keyName))
		return
	case len(cert) == 0:
		v.add(keyAt, "set without %s: set both, or neither", keyAt.name(certName))
		return
	}
	ok := true
	if b := firstPEM(cert, func(t string) bool { return t == "CERTIFICATE" }); b == nil {
		v.add(certAt, "not a PEM certificate: want PEM text starting with %q (inline values are the base64 of that text)", "-----BEGIN CERTIFICATE-----")
		ok = false
	} else if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		v.add(certAt, "not a valid certificate: %v", err)
		ok = false
	}
	if firstPEM(key, isPrivateKeyType) == nil {
		v.add(keyAt, "not a PEM private key: want PEM text starting with %q (inline values are the base64 of that text)", "-----BEGIN PRIVATE KEY-----")
		ok = false
	}
	if ok {
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			v.add(keyAt, "does not pair with %s: %s", keyAt.name(certName), strings.TrimPrefix(err.Error(), "tls: "))
		}
	}
}

// firstPEM returns the first PEM block in data whose type is wanted.
func firstPEM(data []byte, want func(string) bool) *pem.Block {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil
		}
		if want(b.Type) {
			return b
		}
	}
}

func isPrivateKeyType(t string) bool {
	return t == "PRIVATE KEY" || t == "EC PRIVATE KEY" || t == "RSA PRIVATE KEY"
}

// checkSigningKey says what is wrong with a signing key, or returns "".
func checkSigningKey(data []byte) string {
	b := firstPEM(data, isPrivateKeyType)
	if b == nil {
		return fmt.Sprintf("not a PEM private key: want PEM text starting with %q (inline values are the base64 of that text)", "-----BEGIN EC PRIVATE KEY-----")
	}
	var key any
	var err error
	switch b.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return fmt.Sprintf("not a valid private key: %v", err)
	}
	kind := "not an EC or RSA key"
	switch key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
		return ""
	case ed25519.PrivateKey:
		kind = "an Ed25519 key"
	}
	return kind + `: want an EC or RSA private key, such as from "openssl ecparam -genkey -name prime256v1 -noout"`
}

// checkListenAddr says what is wrong with a listen address, or returns "".
func checkListenAddr(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Sprintf("%q is not a listen address: want [host]:port, such as :443", addr)
	}
	return ""
}

// isCookieName reports whether s is a cookie name: an RFC 7230 token
// (RFC 6265, section 4.1.1).
func isCookieName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", c):
		default:
			return false
		}
	}
	return true
}

// checkExpr checks the shape of a policy tree built in code; Load's
// parser never builds a bad one.
func checkExpr(e *PolicyExpr, depth int) string {
	if depth > maxPolicyDepth {
		return fmt.Sprintf("operators nested more than %d deep", maxPolicyDepth)
	}
	if e.Op == "" {
		if e.Criterion == "" {
			return "a criterion with no name: want one such as " + criterionExample
		}
		if len(e.Children) > 0 {
			return fmt.Sprintf("criterion %q has operands: only and, or, not and nor have them", e.Criterion)
		}
		return ""
	}
	if !isPolicyOp(e.Op) {
		return fmt.Sprintf("unknown operator %q: want and, or, not or nor", e.Op)
	}
	if e.Criterion != "" {
		return fmt.Sprintf("operator %q also names criterion %q: set one or the other", e.Op, e.Criterion)
	}
	for i := range e.Children {
		if msg := checkExpr(&e.Children[i], depth+1); msg != "" {
			return msg
		}
	}
	return ""
}

// sessionStore checks the session store settings. A shared store is only
// worth having if every replica reads the others' cookies and tokens, so
// the secrets that would otherwise be generated per process must be set.
func (v *validator) sessionStore(o *Options) {
	_, typeOK := v.top("databroker_storage_type")
	connAt, connOK := v.top("databroker_storage_connection_string")
	if !typeOK || !connOK {
		return
	}
	if o.DatabrokerStorageType != "postgres" {
		if o.DatabrokerStorageConnectionString != "" {
			v.add(connAt, "is set, but %s is %q: set it to postgres to keep sessions in that database, or remove this", connAt.name("databroker_storage_type"), o.DatabrokerStorageType)
		}
		return
	}
	if o.DatabrokerStorageConnectionString == "" {
		v.add(connAt, "is not set, and databroker_storage_type is postgres: give the database's connection string, "+
			"such as postgres://portcullis:PASSWORD@db.example.com:5432/portcullis?sslmode=verify-full")
	} else if err := connstring.Check(o.DatabrokerStorageConnectionString); err != nil {
		v.add(connAt, "%v", err)
	}
	for _, secret := range []struct {
		key string
		set bool
	}{
		{"cookie_secret", len(o.CookieSecret) != 0},
		{"shared_secret", len(o.SharedSecret) != 0 || len(o.SigningKey) != 0},
	} {
		if at, ok := v.top(secret.key); ok && !secret.set {
			v.add(at, "is not set, and databroker_storage_type is postgres: replicas that share sessions must share this secret, "+
				"so set it to the same value on every replica (%s)", secretHint)
		}
	}
	if at, ok := v.top("databroker_storage_grace"); ok && o.DatabrokerStorageGrace <= 0 {
		v.add(at, "%s is not positive: want a duration such as 5m", o.DatabrokerStorageGrace)
	}
}
