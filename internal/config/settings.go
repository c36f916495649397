package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"unicode"

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
		{key: "idp_request_params", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.IDPRequestParams, ok = l.requestParams(v)
			return ok
		}},
		{key: "idp_users_file", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.IDPUsersFile, ok = l.path(v)
			return ok
		}},
		{key: "idp_builtin_token_ttl", decode: func(l *loader, v value, o *Options) (ok bool) {
			o.IDPBuiltinTokenTTL, ok = l.duration(v)
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
		limitSetting("limit_connections", func(o *Options) *int { return &o.Limits.Connections }),
		limitSetting("limit_connections_per_client", func(o *Options) *int { return &o.Limits.ConnectionsPerClient }),
		limitSetting("limit_sign_ins_per_minute", func(o *Options) *int { return &o.Limits.SignInsPerMinute }),
		limitSetting("limit_logins_per_minute", func(o *Options) *int { return &o.Limits.LoginsPerMinute }),
		limitSetting("limit_pending_sign_ins", func(o *Options) *int { return &o.Limits.PendingSignIns }),
		limitSetting("limit_sessions_per_person", func(o *Options) *int { return &o.Limits.SessionsPerPerson }),
		limitSetting("limit_sign_in_body_bytes", func(o *Options) *int { return &o.Limits.SignInBodyBytes }),
		// policy before routes: that is the order of Options.Routes.
		{key: "policy", decode: decodeRouteList("policy")},
		{key: "routes", decode: decodeRouteList("routes")},
	}
}

// maxLimit bounds every limit_* setting: far above any sane value, and
// small enough that no arithmetic on it overflows.
const maxLimit = 1 << 30

// limitSetting is a limit_* setting: a whole number from 1 to maxLimit.
// Zero is refused rather than read as "no limit": a limit is taken away
// by raising it, on purpose.
func limitSetting(key string, field func(*Options) *int) setting {
	return setting{key: key, decode: func(l *loader, v value, o *Options) bool {
		s, ok := l.scalar(v, "a whole number")
		if !ok {
			return false
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return l.fail(v, "%q is not a limit: want a whole number from 1 to %d", s, maxLimit)
		}
		*field(o) = n
		return true
	}}
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
		path, ok := l.path(v)
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

// requestParamsHint says what IDP_REQUEST_PARAMS holds.
const requestParamsHint = `want a JSON object of strings such as {"prompt":"select_account"}, ` +
	`or a comma list such as prompt=select_account,login_hint=someone@example.com`

// reservedRequestParams are the sign-in URL parameters Portcullis sets
// itself: they bind the sign-in to the browser (state, nonce, PKCE), say
// where the code goes, or could replace all of those (request,
// request_uri). The idp package refuses the same list (a test keeps the
// two equal); refusing them here too names the file line.
var reservedRequestParams = []string{
	"client_id", "client_secret", "code_challenge", "code_challenge_method", "nonce",
	"redirect_uri", "request", "request_uri", "response_mode", "response_type", "scope", "state",
}

// requestParams decodes IDP_REQUEST_PARAMS: a YAML mapping in the file,
// or (in the environment, or as a string in the file) a JSON object of
// strings, as Pomerium reads it, or a comma list of key=value. Empty
// gives nil.
func (l *loader) requestParams(v value) (map[string]string, bool) {
	out := map[string]string{}
	ok := true
	add := func(at value, k, val string) {
		if msg := checkRequestParam(at.at, k); msg != "" {
			ok = l.fail(at, "%s", msg)
			return
		}
		if _, dup := out[k]; dup {
			ok = l.fail(at, "%q is set twice: keep one", k)
			return
		}
		out[k] = val
	}
	text := v.text
	if v.node != nil {
		n := deref(v.node)
		switch n.Kind {
		case yaml.MappingNode:
			for _, e := range l.entries(v.d, n, v.at.key) {
				ev := value{at: v.d.at(e.val, v.at.key+"."+e.name), d: v.d, node: e.val}
				if !l.count(v.d, e.val, ev.at.key) {
					return nil, false
				}
				if isNull(e.val) {
					ok = l.fail(ev, "no value: give %s a value, or leave it out", e.name)
					continue
				}
				s, good := l.scalar(ev, "a string")
				if !good {
					ok = false
					continue
				}
				add(ev, e.name, s)
			}
			if len(out) == 0 {
				return nil, ok
			}
			return out, ok
		case yaml.ScalarNode:
			text = n.Value
		default:
			return nil, l.fail(v, "want a mapping of parameter names to values, got %s", describe(n))
		}
	}
	text = strings.TrimSpace(text)
	if strings.HasPrefix(text, "{") {
		pairs, err := jsonStringObject(text)
		if err != nil {
			return nil, l.fail(v, "not a JSON object of strings (%v): %s", err, requestParamsHint)
		}
		for _, p := range pairs {
			add(v, p[0], p[1])
		}
	} else {
		for item := range strings.SplitSeq(text, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			k, val, found := strings.Cut(item, "=")
			if !found {
				ok = l.fail(v, "%q is not key=value: %s", item, requestParamsHint)
				continue
			}
			add(v, strings.TrimSpace(k), strings.TrimSpace(val))
		}
	}
	if len(out) == 0 {
		return nil, ok
	}
	return out, ok
}

// checkRequestParam says what is wrong with the parameter name k, or "".
func checkRequestParam(at where, k string) string {
	switch {
	case k == "":
		return "a parameter has no name: " + requestParamsHint
	case strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Sprintf("%q is not a parameter name: want a name such as prompt", k)
	case k == "scope":
		return fmt.Sprintf(`"scope" cannot be set here: set %s instead`, at.name("idp_scopes"))
	case slices.Contains(reservedRequestParams, k):
		return fmt.Sprintf("%q cannot be set: Portcullis sets it itself, to bind the sign-in to the browser that started it", k)
	}
	return ""
}

// jsonStringObject parses a JSON object whose values are all strings,
// returning its members in order; a name given twice is an error.
func jsonStringObject(text string) ([][2]string, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("want {")
	}
	var out [][2]string
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		if t, err = dec.Token(); err != nil {
			return nil, err
		}
		val, isString := t.(string)
		if !isString {
			return nil, fmt.Errorf("the value of %q is not a string", k)
		}
		if seen[k] {
			return nil, fmt.Errorf("%q is set twice", k)
		}
		seen[k] = true
		out = append(out, [2]string{k, val})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("text after the closing }")
	}
	return out, nil
}
