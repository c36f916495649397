package config

import "fmt"

// A Check looks at loaded Options for what only another part of Portcullis
// knows how to check: that policies compile, that the identity provider's
// settings resolve, that the files the server reads exist and parse. Load
// runs the checks it is given together with its own, and Options.Check
// runs them again on Options already loaded, so that `portcullis
// --check-config` and a start report the same problems, all at once, each
// naming its setting and, for a file, its line.
type Check func(o *Options, r *Reporter)

// Reporter records what a Check finds, naming where each setting came from
// as config's own problems do.
type Reporter struct{ v *validator }

// Failed reports whether top-level key (its YAML name: "idp_users_file")
// already had a problem while it was read: a check should then leave it
// alone rather than report it twice.
func (r *Reporter) Failed(key string) bool {
	_, ok := r.v.top(key)
	return !ok
}

// RouteFailed is Failed for a key of route i.
func (r *Reporter) RouteFailed(i int, key string) bool {
	if r.v.loc == nil || i >= len(r.v.loc.routes) {
		return false
	}
	return r.v.loc.routes[i].failed[key]
}

// Name spells top-level setting key as the user did: IDP_PROVIDER_URL
// when the setting being reported came from the environment, the YAML key
// otherwise. at is the key the message is about.
func (r *Reporter) Name(at, key string) string {
	w, _ := r.v.top(at)
	return w.name(key)
}

// Top reports a problem with top-level setting key.
func (r *Reporter) Top(key, format string, args ...any) {
	if at, ok := r.v.top(key); ok {
		r.v.add(at, format, args...)
	}
}

// Route reports a problem with key of route i (its YAML name, such as
// "kubernetes_service_account_token_file").
func (r *Reporter) Route(i int, o *Options, key, format string, args ...any) {
	rl := r.v.route(i, &o.Routes[i])
	r.v.add(rl.key(key), format, args...)
}

// Problem reports a problem that already says where it is (the policy
// compiler's).
func (r *Reporter) Problem(p *Problem) {
	r.v.found = append(r.v.found, found{p: p})
}

// Warn reports something that works but is probably not what was meant,
// or is dangerous: Load and Check succeed, and the warning is in
// Options.Warnings for --check-config to print and the server to log.
func (r *Reporter) Warn(key, format string, args ...any) {
	at, _ := r.v.top(key)
	r.v.warnings = append(r.v.warnings, &Problem{Source: at.source, Key: at.key, Message: fmt.Sprintf(format, args...)})
}

// WarnRoute is Warn for a key of route i.
func (r *Reporter) WarnRoute(i int, o *Options, key, format string, args ...any) {
	rl := r.v.route(i, &o.Routes[i])
	at := rl.key(key)
	r.v.warnings = append(r.v.warnings, &Problem{Source: at.source, Key: at.key, Message: fmt.Sprintf(format, args...)})
}

// Check runs config's own validation and checks on o again, reporting
// every problem at once as Load does (see Problems), and names settings
// by where Load found them. The server calls it with the same checks as
// --check-config, so that it refuses to start on exactly what the check
// refuses. Warnings replace o's (see Warnings).
//
// Call it again after changing Options in code. For Options built in code
// (not by Load), Check with no checks is pure: it reads no file and
// touches no network, and its Problems have no Source, their keys being
// YAML keys and routes named by their index in o.Routes ("routes[0].to").
//
// Missing secrets are not a problem (see GenerateMissingSecrets), nor is a
// missing certificate or authenticate URL: whether the server can do
// without is the server's decision (its checks say).
func (o *Options) Check(checks ...Check) error {
	found, warnings := o.check(o.loc, checks)
	o.warnings = warnings
	if len(found) == 0 {
		return nil
	}
	return joinSorted(found)
}

// Warnings returns what the last Load or Check found to warn about.
func (o *Options) Warnings() []*Problem { return o.warnings }

// check is validate followed by checks.
func (o *Options) check(loc *locations, checks []Check) ([]found, []*Problem) {
	v := &validator{loc: loc}
	o.validateInto(v)
	r := &Reporter{v: v}
	for _, c := range checks {
		c(o, r)
	}
	return v.found, v.warnings
}
