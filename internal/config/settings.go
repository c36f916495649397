package config

import (
	"fmt"
	"log/slog"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A setting is one top-level key: an environment variable and the same
// name in lower case in the file.
type setting struct {
	key  string   // YAML key; the environment variable is its upper case
	file fileKind // whether key_file / KEY_FILE exist, and what they hold
	// decode stores v in o, reporting problems; false if v was bad.
	decode func(l *loader, v value, o *Options) bool
}

const secretHint = `generate one with "head -c32 /dev/urandom | base64"`

// pemHint says what a base64 PEM setting wants, naming its *_file variant
// in the style (env or file) of at.
func pemHint(at where, key, example string) string {
	return fmt.Sprintf(`want the base64 of a PEM file, such as the output of "base64 -w0 %s", or set %s to the file's path`,
		example, at.name(key+"_file"))
}

// topSettings lists every top-level setting, in the order they are
// decoded. (A function, not a variable: the decoders refer back to it
// through the loader.)
func topSettings() []setting {
	return []setting{
		{key: "address", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.Address, ok = l.str(v)
			return ok
		}},
		{key: "authenticate_service_url", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.AuthenticateServiceURL, ok = l.url(v, hostURL)
			return ok
		}},
		{key: "certificate", file: pemFile, decode: func(l *loader, v value, o *Options) (ok bool) {
			o.Certificate, ok = l.bytes(v, pemFile, pemHint(v.at, "certificate", "cert.pem"))
			return ok
		}},
		{key: "certificate_key", file: pemFile, decode: func(l *loader, v value, o *Options) (ok bool) {
			o.CertificateKey, ok = l.bytes(v, pemFile, pemHint(v.at, "certificate_key", "key.pem"))
			return ok
		}},
		{key: "cookie_secret", file: textFile, decode: func(l *loader, v value, o *Options) (ok bool) {
			o.CookieSecret, ok = l.bytes(v, textFile, secretHint)
			return ok
		}},
		{key: "cookie_name", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.CookieName, ok = l.str(v)
			return ok
		}},
		{key: "cookie_expire", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.CookieExpire, ok = l.duration(v)
			return ok
		}},
		{key: "shared_secret", file: textFile, decode: func(l *loader, v value, o *Options) (ok bool) {
			o.SharedSecret, ok = l.bytes(v, textFile, secretHint)
			return ok
		}},
		{key: "signing_key", file: pemFile, decode: func(l *loader, v value, o *Options) (ok bool) {
			o.SigningKey, ok = l.bytes(v, pemFile, pemHint(v.at, "signing_key", "signing-key.pem"))
			return ok
		}},
		{key: "idp_provider", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.IDPProvider, ok = l.str(v)
			return ok
		}},
		{key: "idp_provider_url", decode: func(l *loader, v value, o *Options) bool {
			// Kept as written: OIDC discovery compares it with the
			// issuer the provider announces, character for character.
			s, ok := l.str(v)
			if ok {
				o.IDPProviderURL = s
				_, ok = l.url(v, upstreamURL)
			}
			return ok
		}},
		{key: "idp_client_id", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.IDPClientID, ok = l.str(v)
			return ok
		}},
		{key: "idp_client_secret", file: textFile, decode: func(l *loader, v value, o *Options) (ok bool) {
			o.IDPClientSecret, ok = l.str(v)
			return ok
		}},
		{key: "idp_scopes", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.IDPScopes, ok = l.list(v, true)
			return ok
		}},
		{key: "idp_groups_claim", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.IDPGroupsClaim, ok = l.str(v)
			return ok
		}},
		{key: "idp_users_file", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.IDPUsersFile, ok = l.str(v)
			return ok
		}},
		{key: "insecure_server", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.InsecureServer, ok = l.boolean(v)
			return ok
		}},
		{key: "metrics_address", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.MetricsAddress, ok = l.str(v)
			return ok
		}},
		{key: "log_level", decode: func(l *loader, v value, o *Options) bool {
			s, ok := l.str(v)
			if !ok {
				return false
			}
			lvl, ok := logLevels[strings.ToLower(s)]
			if !ok {
				return l.fail(v, "%q is not a log level: want debug, info, warn or error", s)
			}
			o.LogLevel = lvl
			return true
		}},
		{key: "log_format", decode: func(l *loader, v value, o *Options) (ok bool) {
			s, ok := l.str(v)
			o.LogFormat = strings.ToLower(s)
			return ok
		}},
		// policy before routes: that is the order of Options.Routes.
		{key: "policy", decode: decodeRouteList("policy")},
		{key: "routes", decode: decodeRouteList("routes")},
	}
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// topKeys lists every top-level YAML key, *_file variants included.
func topKeys() []string {
	var keys []string
	for _, s := range topSettings() {
		keys = append(keys, s.key)
		if s.file != noFile {
			keys = append(keys, s.key+"_file")
		}
	}
	return keys
}

// pick finds the value in effect for s: the environment's, else the
// file's. It reports X set together with X_FILE.
func (l *loader) pick(s setting) (value, bool) {
	env := strings.ToUpper(s.key)
	ev, hasEnv := l.getenv(env)
	var fv string
	var hasEnvFile bool
	if s.file != noFile {
		fv, hasEnvFile = l.getenv(env + "_FILE")
	}
	switch {
	case hasEnv && hasEnvFile:
		l.problem(where{source: env + "_FILE", env: true}, fmt.Sprintf("set together with %s: set only one of them", env))
		l.loc.failed[s.key] = true
		return value{}, false
	case hasEnv:
		return value{at: where{source: env, env: true}, text: ev}, true
	case hasEnvFile:
		v, ok := l.read(where{source: env + "_FILE", env: true}, strings.TrimSpace(fv))
		if !ok {
			l.loc.failed[s.key] = true
		}
		return v, ok
	}

	e, hasFile := l.top[s.key]
	hasFile = hasFile && !isNull(e.val)
	var ef entry
	hasFileFile := false
	if s.file != noFile {
		ef, hasFileFile = l.top[s.key+"_file"]
		hasFileFile = hasFileFile && !isNull(ef.val)
	}
	switch {
	case hasFile && hasFileFile:
		later, first := ef, e
		if e.key.Line > ef.key.Line {
			later, first = e, ef
		}
		l.problem(later.d.at(later.key, later.name),
			fmt.Sprintf("set together with %s (line %d): set only one of them", first.name, first.key.Line))
		l.loc.failed[s.key] = true
		return value{}, false
	case hasFile:
		return fileValue(e, s.key), true
	case hasFileFile:
		v := fileValue(ef, s.key+"_file")
		path, ok := l.str(v)
		if ok {
			v, ok = l.read(v.at, path)
		}
		if !ok {
			l.loc.failed[s.key] = true
		}
		return v, ok
	}
	return value{}, false
}

// routesHint says what POLICY and ROUTES hold.
const routesHint = `want the base64 of a YAML list of routes, such as the output of "base64 -w0 policy.yaml"`

// decodeRouteList decodes POLICY or ROUTES (key is "policy" or "routes"):
// a YAML list in the file, or the base64 of one (in the environment, or
// as a string in the file). The routes are appended to o.Routes.
func decodeRouteList(key string) func(l *loader, v value, o *Options) bool {
	return func(l *loader, v value, o *Options) bool {
		if v.node != nil {
			n := deref(v.node)
			switch n.Kind {
			case yaml.SequenceNode:
				o.Routes = append(o.Routes, l.routes(v.d, n, key, "")...)
				return true
			case yaml.ScalarNode:
				// A base64 string, as in the environment.
			default:
				return l.fail(v, "want a list of routes (items starting with - from:), got %s", describe(n))
			}
		}
		data, ok := l.bytes(v, textFile, routesHint)
		if !ok {
			return false
		}
		name, ref := strings.ToUpper(key), strings.ToUpper(key)
		if !v.at.env {
			name = v.at.source + ": " + key
			ref = fmt.Sprintf("%s (%s)", key, v.at.source)
		}
		d := decodedDoc(name)
		root, ok := l.parseYAML(d, data)
		if !ok || root == nil {
			return ok
		}
		n := deref(root)
		if n.Kind != yaml.SequenceNode {
			l.problem(d.at(root, ""), fmt.Sprintf("want a list of routes (items starting with - from:), got %s", describe(n)))
			return false
		}
		o.Routes = append(o.Routes, l.routes(d, n, "", ref)...)
		return true
	}
}
