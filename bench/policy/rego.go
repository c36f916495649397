package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/format"
)

// This file writes bench rules as Rego in the shape Pomerium's PPL-to-Rego
// generator (pomerium/pomerium pkg/policy/generator, pkg/policy/criteria,
// pkg/policy/rules; Rego v1) gives them, so that OPA does the work it does
// in Pomerium:
//
//   - each criterion is a rule, named <criterion>_<n>, whose value is
//     [true, {"<criterion>-ok"}] when its body holds, else
//     [false, {"<criterion>-unauthorized"}]; a criterion on the user
//     (email, domain, user, groups, claim/…, authenticated_user) has a
//     third branch, [false, {"user-unauthenticated"}], taken when there is
//     no session (criteria.NewCriterionSessionRule);
//   - each operator is a rule and_<n>, or_<n>, not_<n> or nor_<n>
//     collecting its operands' values into results, normalizing them and
//     merging them with merge_with_and or merge_with_or; not and nor
//     invert each operand first (generator/conditionals.go);
//   - allow and deny are or-rules over the operators of their action, with
//     the default [false, set()] (generator/generator.go);
//   - the helpers do the work of Pomerium's get_session, get_user,
//     get_user_email, object_get, normalize_criterion_result,
//     invert_criterion_result, object_union, merge_with_and and
//     merge_with_or (pkg/policy/rules), written afresh.
//
// Where it differs:
//
//   - Pomerium reads sessions, users and directory users with
//     get_databroker_record, a Go builtin that queries its databroker and
//     turns the protobuf record into a Rego value (protobuf to JSON to a
//     map to ast.InterfaceToValue) on each call; here it is a Rego
//     function reading the records from the input document
//     (input.databroker[type][id]). That gives OPA less work than in
//     Pomerium: the comparison is in OPA's favour;
//   - the criteria Pomerium lacks are written the way it writes its own:
//     kubernetes_* like http_method, on input.kubernetes; time_of_day (an
//     Enterprise criterion whose Rego is not public) with time.clock;
//   - operators nested in operators, which Pomerium's parser refuses, are
//     rules of their own referenced by name, as the generator references
//     a criterion.

// regoModule returns rules as a formatted Rego module, package
// pomerium.policy.
func regoModule(rules []policyRule) (string, error) {
	g := &regoGen{ids: map[string]int{}, helpers: map[string]bool{}}
	for _, action := range []string{"allow", "deny"} {
		var terms []string
		for _, r := range rules {
			if r.Action != action {
				continue
			}
			name, err := g.operator(r.Root)
			if err != nil {
				return "", fmt.Errorf("rule %s: %w", r.Source, err)
			}
			terms = append(terms, name)
		}
		if len(terms) > 0 {
			g.rules = append(g.rules, fmt.Sprintf("%s := v if {\n\tresults := [%s]\n%s}",
				action, strings.Join(terms, ", "), opBodies["or"]))
		}
	}

	var b strings.Builder
	b.WriteString("package pomerium.policy\n\nimport rego.v1\n\n")
	b.WriteString("default allow := [false, set()]\n\ndefault deny := [false, set()]\n\n")
	for _, r := range g.rules {
		b.WriteString(r + "\n\n")
	}
	// Functions last, as the generator sorts them.
	for _, h := range helperOrder {
		if g.helpers[h] || alwaysHelpers[h] {
			b.WriteString(helperRego[h] + "\n\n")
		}
	}
	out, err := format.Source("policy.rego", []byte(b.String()))
	if err != nil {
		return "", fmt.Errorf("formatting the generated Rego: %w\n%s", err, b.String())
	}
	return string(out), nil
}

type regoGen struct {
	ids     map[string]int
	rules   []string
	helpers map[string]bool
}

// name returns the next rule name for base, as Generator.NewRule does.
func (g *regoGen) name(base string) string {
	id := g.ids[base]
	g.ids[base]++
	return fmt.Sprintf("%s_%d", base, id)
}

// opBodies are the generator's andBody, orBody, notBody and norBody, which
// follow results := [...]. not and nor invert results, not normalized: so
// does Pomerium.
var opBodies = map[string]string{
	"and": "\tnormalized := [normalize_criterion_result(x) | x := results[i]]\n\tv := merge_with_and(normalized)\n",
	"or":  "\tnormalized := [normalize_criterion_result(x) | x := results[i]]\n\tv := merge_with_or(normalized)\n",
	"not": "\tnormalized := [normalize_criterion_result(x) | x := results[i]]\n\tinverted := [invert_criterion_result(x) | x := results[i]]\n\tv := merge_with_and(inverted)\n",
	"nor": "\tnormalized := [normalize_criterion_result(x) | x := results[i]]\n\tinverted := [invert_criterion_result(x) | x := results[i]]\n\tv := merge_with_or(inverted)\n",
}

// operator writes e, an operator, and its operands; it returns the rule's
// name. The name is taken before the operands', as the generator does.
func (g *regoGen) operator(e policyExpr) (string, error) {
	body, ok := opBodies[e.Op]
	if !ok {
		return "", fmt.Errorf("unknown operator %q", e.Op)
	}
	name := g.name(e.Op)
	var terms []string
	for _, kid := range e.Children {
		var t string
		var err error
		if kid.Op != "" {
			t, err = g.operator(kid)
		} else {
			t, err = g.criterion(kid)
		}
		if err != nil {
			return "", err
		}
		terms = append(terms, t)
	}
	g.rules = append(g.rules, fmt.Sprintf("%s := v if {\n\tresults := [%s]\n%s}", name, strings.Join(terms, ", "), body))
	return name, nil
}

// sessionLine is how Pomerium's user criteria find the session.
const sessionLine = "session := get_session(input.session.id)"

// criterion writes criterion e and returns its rule's name.
func (g *regoGen) criterion(e policyExpr) (string, error) {
	crit, sub, _ := strings.Cut(e.Criterion, "/")
	var body []string
	var err error
	session := false // a criterion on the user: NewCriterionSessionRule
	pass, fail := strings.ReplaceAll(crit, "_", "-")+"-ok", strings.ReplaceAll(crit, "_", "-")+"-unauthorized"
	switch crit {
	case "email":
		session = true
		g.helpers["get_user"], g.helpers["get_user_email"] = true, true
		body = []string{sessionLine, "user := get_user(session)", "email := get_user_email(session, user)"}
		body, err = matchString(body, "email", e.Value)
	case "domain":
		session = true
		g.helpers["get_user"], g.helpers["get_user_email"] = true, true
		body = []string{sessionLine, "user := get_user(session)", `domain := split(get_user_email(session, user), "@")[1]`}
		body, err = matchString(body, "domain", e.Value)
	case "user":
		session = true
		body = []string{sessionLine, "user_id := session.user_id"}
		body, err = matchString(body, "user_id", e.Value)
	case "groups":
		session = true
		body = []string{
			`record_type := "pomerium.io/DirectoryUser"`,
			sessionLine,
			"directory_user := get_databroker_record(record_type, session.user_id)",
			`group_ids := object.get(directory_user, "group_ids", [])`,
		}
		body, err = matchStringList(body, "group_ids", e.Value)
	case "claim":
		session = true
		g.helpers["get_user"], g.helpers["object_get"] = true, true
		body = []string{
			"rule_path := " + regoString(sub),
			sessionLine,
			`session_claims := object.get(session, "claims", {})`,
			"user := get_user(session)",
			`user_claims := object.get(user, "claims", {})`,
			"all_claims := object.union(session_claims, user_claims)",
			"values := object_get(all_claims, rule_path, [])",
		}
		body, err = matchStringList(body, "values", e.Value)
	case "authenticated_user":
		session = true
		pass, fail = "user-ok", "user-unauthorized"
		body = []string{sessionLine, "session.user_id != null", `session.user_id != ""`}
	case "http_method":
		body, err = matchString(nil, "input.http.method", e.Value)
	case "http_path":
		body, err = matchString(nil, "input.http.path", e.Value)
	case "kubernetes_verb", "kubernetes_resource", "kubernetes_subresource", "kubernetes_namespace",
		"kubernetes_name", "kubernetes_api_group":
		body, err = matchString(nil, "input.kubernetes."+strings.TrimPrefix(crit, "kubernetes_"), e.Value)
	case "source_ip":
		body, err = sourceIP(e.Value)
	case "time_of_day":
		body, err = timeOfDay(e.Value)
	default:
		return "", fmt.Errorf("criterion %q: not written as Rego here", e.Criterion)
	}
	if err != nil {
		return "", fmt.Errorf("criterion %q: %w", e.Criterion, err)
	}

	name := g.name(crit)
	var b strings.Builder
	fmt.Fprintf(&b, "%s := [true, {%q}] if {\n\t%s\n}", name, pass, strings.Join(body, "\n\t"))
	if session {
		fmt.Fprintf(&b, " else := [false, {%q}] if {\n\t%s\n\tsession.id != \"\"\n} else := [false, {\"user-unauthenticated\"}]", fail, sessionLine)
	} else {
		fmt.Fprintf(&b, " else := [false, {%q}]", fail)
	}
	g.rules = append(g.rules, b.String())
	return name, nil
}

// regoString quotes s as a Rego (JSON) string.
func regoString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// matchString appends Pomerium's string matcher on left to body
// (criteria/matchers.go): a bare value means is; the operators of an
// object all hold.
func matchString(body []string, left string, v any) ([]string, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		obj = map[string]any{"is": v}
	}
	for _, k := range sortedKeys(obj) {
		val := obj[k]
		if k == "in" {
			list, ok := val.([]any)
			if !ok {
				return nil, fmt.Errorf("in takes a list, got %T", val)
			}
			items := make([]string, len(list))
			for i, item := range list {
				s, ok := item.(string)
				if !ok {
					return nil, fmt.Errorf("in takes strings, got %T", item)
				}
				items[i] = regoString(s)
			}
			body = append(body, fmt.Sprintf("count([true | some v; v = [%s][_]; v == %s]) > 0", strings.Join(items, ", "), left))
			continue
		}
		s, ok := val.(string)
		if !ok {
			return nil, fmt.Errorf("%s takes a string, got %T", k, val)
		}
		switch k {
		case "is":
			body = append(body, fmt.Sprintf("%s == %s", left, regoString(s)))
		case "not":
			body = append(body, fmt.Sprintf("%s != %s", left, regoString(s)))
		case "contains":
			body = append(body, fmt.Sprintf("contains(%s, %s)", left, regoString(s)))
		case "starts_with":
			body = append(body, fmt.Sprintf("startswith(%s, %s)", left, regoString(s)))
		case "ends_with":
			body = append(body, fmt.Sprintf("endswith(%s, %s)", left, regoString(s)))
		default:
			return nil, fmt.Errorf("string matcher %q: not written as Rego here", k)
		}
	}
	return body, nil
}

// matchStringList appends Pomerium's string list matcher on left to body:
// a bare value means has.
func matchStringList(body []string, left string, v any) ([]string, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		obj = map[string]any{"has": v}
	}
	for _, k := range sortedKeys(obj) {
		s, ok := obj[k].(string)
		if !ok {
			return nil, fmt.Errorf("%s takes a string, got %T", k, obj[k])
		}
		has := fmt.Sprintf("count([true | some v; v = %s[_]; v == %s])", left, regoString(s))
		switch k {
		case "has":
			body = append(body, has+" > 0")
		case "is":
			body = append(body, fmt.Sprintf("count(%s) == 1", left), has+" > 0")
		case "exclude":
			body = append(body, has+" == 0")
		default:
			return nil, fmt.Errorf("string list matcher %q: not written as Rego here", k)
		}
	}
	return body, nil
}

// sourceIP is Pomerium's source_ip body: the address is in one of the
// CIDRs.
func sourceIP(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	cidrs := make([]string, len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok || !strings.Contains(s, "/") {
			return nil, fmt.Errorf("want CIDRs, got %v", item)
		}
		cidrs[i] = regoString(s)
	}
	return []string{fmt.Sprintf("count(net.cidr_contains_matches([%s], input.http.ip)) > 0", strings.Join(cidrs, ", "))}, nil
}

// timeOfDay is a time_of_day body: the wall-clock time in the zone, in
// seconds from midnight, at or after after and before before. The time is
// OPA's evaluation time, as for any Rego time builtin.
func timeOfDay(v any) ([]string, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want {timezone, after, before}, got %T", v)
	}
	tz, _ := obj["timezone"].(string)
	body := []string{
		fmt.Sprintf("clock := time.clock([time.now_ns(), %s])", regoString(tz)),
		"seconds := ((clock[0] * 60) + clock[1]) * 60 + clock[2]",
	}
	for _, k := range []string{"after", "before"} {
		raw, has := obj[k]
		if !has {
			continue
		}
		s, _ := raw.(string)
		t, err := time.Parse("15:04", s)
		if err != nil {
			return nil, fmt.Errorf("%s: want H:MM, got %q", k, s)
		}
		secs := t.Hour()*3600 + t.Minute()*60
		if k == "after" {
			body = append(body, fmt.Sprintf("seconds >= %d", secs))
		} else {
			body = append(body, fmt.Sprintf("seconds < %d", secs))
		}
	}
	return body, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// helperOrder is the order the helper functions are written in.
var helperOrder = []string{
	"get_databroker_record", "get_session", "get_user", "get_user_email", "object_get",
	"invert_criterion_result", "normalize_criterion_result", "object_union", "merge_with_and", "merge_with_or",
}

// alwaysHelpers are written into every module: the generator adds them
// all, and every bench rule uses get_session.
var alwaysHelpers = map[string]bool{
	"get_databroker_record": true, "get_session": true,
	"invert_criterion_result": true, "normalize_criterion_result": true, "object_union": true,
	"merge_with_and": true, "merge_with_or": true,
}

// helperRego are the helper functions. They do the work of Pomerium's
// (pkg/policy/rules), written afresh: the same lookups, comprehensions
// and builtins per call. get_databroker_record stands in for Pomerium's
// builtin of that name (see the top of this file).
var helperRego = map[string]string{
	"get_databroker_record": `get_databroker_record(record_type, record_id) := v if {
	v := input.databroker[record_type][record_id]
} else := null`,

	// A service account, or the session a session impersonates, or the
	// session itself; {} when there is none.
	"get_session": `get_session(id) := s if {
	s := get_databroker_record("type.googleapis.com/user.ServiceAccount", id)
	s != null
} else := s if {
	found := get_databroker_record("type.googleapis.com/session.Session", id)
	found != null
	object.get(found, "impersonate_session_id", "") != ""
	s := get_databroker_record("type.googleapis.com/session.Session", found.impersonate_session_id)
	s != null
} else := s if {
	s := get_databroker_record("type.googleapis.com/session.Session", id)
	s != null
	object.get(s, "impersonate_session_id", "") == ""
} else := {}`,

	"get_user": `get_user(session) := u if {
	u := get_databroker_record("type.googleapis.com/user.User", session.user_id)
	u != null
} else := {}`,

	"get_user_email": `get_user_email(session, user) := e if {
	e := user.email
} else := ""`,

	// A claim by name, or by a path of names separated by "/" or ".".
	"object_get": `object_get(obj, key, def) := v if {
	v := obj[key]
} else := v if {
	path := split(replace(key, ".", "/"), "/")
	count(path) > 1
	v := object.get(obj, path, def)
} else := def`,

	// The result with its value negated, its reasons and data kept.
	"invert_criterion_result": `invert_criterion_result(r) := out if {
	r[0]
	out := array.concat([false], array.slice(r, 1, count(r)))
} else := out if {
	not r[0]
	out := array.concat([true], array.slice(r, 1, count(r)))
}`,

	// A boolean rule's value as [value, no reasons].
	"normalize_criterion_result": `normalize_criterion_result(r) := out if {
	is_boolean(r)
	out := [r, set()]
} else := r if {
	is_array(r)
} else := [false, set()]`,

	// The union of a set of objects; a later object's key wins.
	"object_union": `object_union(objs) := {k: v |
	some k
	objs[_][k]
	vals := [x | some o in objs; x := o[k]]
	v := vals[count(vals) - 1]
}`,

	// All hold: the reasons of all; else those of the ones that failed.
	"merge_with_and": `merge_with_and(results) := [true, reasons, extra] if {
	held := [r | some r in results; r[0]]
	count(held) == count(results)
	reasons := union({r[1] | some r in held})
	extra := object_union({r[2] | some r in held})
} else := [false, reasons, extra] if {
	failed := [r | some r in results; not r[0]]
	reasons := union({r[1] | some r in failed})
	extra := object_union({r[2] | some r in failed})
}`,

	// One holds: the reasons of those that hold; else of all.
	"merge_with_or": `merge_with_or(results) := [true, reasons, extra] if {
	held := [r | some r in results; r[0]]
	count(held) > 0
	reasons := union({r[1] | some r in held})
	extra := object_union({r[2] | some r in held})
} else := [false, reasons, extra] if {
	failed := [r | some r in results; not r[0]]
	reasons := union({r[1] | some r in failed})
	extra := object_union({r[2] | some r in failed})
}`,
}
