package policy

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

// maxDepth bounds operator nesting, as the config loader does; a tree
// built in code is held to it too.
const maxDepth = 32

// Compile compiles a route's policy and legacy access keys
// (allow_public_unauthenticated_access, allow_any_authenticated_user,
// allowed_domains, allowed_users) into a Policy. The legacy keys become
// one allow rule, placed first, ORing accept, authenticated_user,
// domain: {is: d} for each domain and user: {is: u} and email: {is: u} for
// each user, as Pomerium's Policy.ToPPL does. A route with neither a
// policy nor a legacy key compiles to a Policy that denies everything.
//
// The error joins (errors.Join) one *config.Problem per mistake found, as
// config.Load's does, so config.Problems and --check-config treat them
// alike: the Source is the line the criterion is written on, the Key names
// the route by its from URL and the place in the policy
// (`route "https://k8s.example.com": policy[0].allow.and[1].emial`).
func Compile(route *config.Route) (*Policy, error) {
	name := "route"
	if route.From != nil {
		name = fmt.Sprintf("route %q", route.From.String())
	}
	return compile(route, name)
}

// CompileRoutes compiles every route's policy, returning them in the
// order of routes, or an error joining every route's problems. Routes are
// named by number and from URL, as config names routes decoded from
// POLICY: `route 2 ("https://k8s.example.com"): policy[0]…`.
func CompileRoutes(routes []config.Route) ([]*Policy, error) {
	policies := make([]*Policy, len(routes))
	var errs []error
	for i := range routes {
		name := fmt.Sprintf("route %d", i+1)
		if routes[i].From != nil {
			name += fmt.Sprintf(" (%q)", routes[i].From.String())
		}
		p, err := compile(&routes[i], name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		policies[i] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return policies, nil
}

func compile(route *config.Route, name string) (*Policy, error) {
	c := &compiler{route: name}
	p := &Policy{}
	add := func(action, path, source string, root node) {
		info := &Rule{Index: len(p.rules), Action: action, Path: path, Source: source}
		p.rules = append(p.rules, info)
		if action == "deny" {
			p.deny = append(p.deny, compiledRule{info: info, root: root})
		} else {
			p.allow = append(p.allow, compiledRule{info: info, root: root})
		}
	}

	if path, root, ok := legacyRule(route); ok {
		add("allow", path, "", root)
	}
	if route.Policy != nil {
		paths := rulePaths(route.Policy.Rules)
		for i := range route.Policy.Rules {
			rule := &route.Policy.Rules[i]
			path := paths[i]
			if rule.Action != "allow" && rule.Action != "deny" {
				c.problem(rule.Source, path, "unknown action %q: want allow or deny", rule.Action)
				continue
			}
			path += "." + rule.Action
			if rule.Root.Op == "" {
				c.problem(rule.Source, path, "a rule holds an operator (and, or, not or nor) with a list of criteria, as in allow: {and: [{email: {is: user@example.com}}]}")
				continue
			}
			path += "." + rule.Root.Op
			if root, ok := c.expr(&rule.Root, path, rule.Source, 1); ok {
				add(rule.Action, path, rule.Source, root)
			}
		}
	}
	if len(c.problems) > 0 {
		return nil, errors.Join(c.problems...)
	}
	p.clock, p.connection = c.clock, c.connection
	return p, nil
}

// legacyRule builds the allow rule of the legacy route keys, if any is set.
func legacyRule(route *config.Route) (string, node, bool) {
	var keys []string
	var kids []node
	crit := func(k kind, pass, fail reason, matchers ...strMatcher) {
		kids = append(kids, node{op: opCriterion, crit: &criterion{kind: k, pass: pass, fail: fail, str: matchers}})
	}
	if route.AllowPublicUnauthenticatedAccess {
		keys = append(keys, "allow_public_unauthenticated_access")
		crit(kAccept, rAccept, rAccept)
	}
	if route.AllowAnyAuthenticatedUser {
		keys = append(keys, "allow_any_authenticated_user")
		crit(kAuthenticatedUser, rUserOK, rUserUnauthorized)
	}
	if len(route.AllowedDomains) > 0 {
		keys = append(keys, "allowed_domains")
		for _, d := range route.AllowedDomains {
			crit(kDomain, rDomainOK, rDomainUnauthorized, strMatcher{op: strIs, val: d})
		}
	}
	if len(route.AllowedUsers) > 0 {
		keys = append(keys, "allowed_users")
		for _, u := range route.AllowedUsers {
			crit(kUser, rUserOK, rUserUnauthorized, strMatcher{op: strIs, val: u})
			crit(kEmail, rEmailOK, rEmailUnauthorized, strMatcher{op: strIs, val: u})
		}
	}
	if len(kids) == 0 {
		return "", node{}, false
	}
	return strings.Join(keys, ", "), node{op: opOr, kids: kids}, true
}

// rulePaths names each rule as the config file spells it, "policy[i]",
// with i the item of the policy list the rule was written in. The stored
// tree has one PolicyRule per operator, so the items are found again:
// consecutive rules of one action written on one line with different
// operators come from one item ("allow: {and: […], or: […]}").
//
// A policy written as a single mapping rather than a list is named
// policy[0] too; and an item holding both allow and deny is counted as
// two. The Source line in each Problem is exact either way.
func rulePaths(rules []config.PolicyRule) []string {
	paths := make([]string, len(rules))
	item := -1
	var seen []string // operators of the current item
	for i, r := range rules {
		same := i > 0 && r.Source != "" && r.Source == rules[i-1].Source &&
			r.Action == rules[i-1].Action && !slices.Contains(seen, r.Root.Op)
		if !same {
			item++
			seen = seen[:0]
		}
		seen = append(seen, r.Root.Op)
		paths[i] = fmt.Sprintf("policy[%d]", item)
	}
	return paths
}

// connectionCriteria read the client's connection (its address, its TLS
// certificate, its CORS headers) rather than the person or the request's
// attributes.
var connectionCriteria = []string{"source_ip", "client_certificate", "cors_preflight"}

// compiler collects problems while compiling one route's policy.
type compiler struct {
	route    string
	problems []error
	// clock is set when a criterion reads the time.
	clock bool
	// connection names the criteria that read the client's connection.
	connection []string
}

func (c *compiler) problem(source, path, format string, args ...any) {
	c.problems = append(c.problems, &config.Problem{
		Source:  source,
		Key:     c.route + ": " + path,
		Message: fmt.Sprintf(format, args...),
	})
}

var ops = map[string]op{"and": opAnd, "or": opOr, "not": opNot, "nor": opNor}

// emptyOp says why each operator needs operands.
var emptyOp = map[string]string{
	"and": "an and with no criteria: Pomerium ignores it, so the rule would never match; give at least one criterion",
	"or":  "an or with no criteria: Pomerium ignores it, so the rule would never match; give at least one criterion",
	"not": "a not with no criteria: none of nothing holds, so it would match every request (Pomerium ignores it instead); give at least one criterion",
	"nor": "a nor with no criteria: Pomerium ignores it, so the rule would never match; give at least one criterion",
}

// expr compiles an operator or criterion written at path.
func (c *compiler) expr(e *config.PolicyExpr, path, source string, depth int) (node, bool) {
	if e.Source != "" {
		source = e.Source
	}
	if e.Op == "" {
		cr, ok := c.criterion(e, path, source)
		return node{op: opCriterion, crit: cr}, ok
	}
	o, known := ops[e.Op]
	switch {
	case !known:
		msg := fmt.Sprintf("unknown operator %q", e.Op)
		if s := config.Closest(e.Op, []string{"and", "or", "not", "nor"}); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		c.problem(source, path, "%s: want and, or, not or nor", msg)
		return node{}, false
	case e.Criterion != "":
		c.problem(source, path, "operator %q also names criterion %q: set one or the other", e.Op, e.Criterion)
		return node{}, false
	case depth > maxDepth:
		c.problem(source, path, "operators nested more than %d deep: simplify the policy", maxDepth)
		return node{}, false
	case len(e.Children) == 0:
		c.problem(source, path, "%s", emptyOp[e.Op])
		return node{}, false
	}
	n := node{op: o, kids: make([]node, 0, len(e.Children))}
	ok := true
	for i := range e.Children {
		child := &e.Children[i]
		name := child.Op
		if name == "" {
			name = child.Criterion
		}
		kid, good := c.expr(child, fmt.Sprintf("%s[%d].%s", path, i, name), source, depth+1)
		n.kids = append(n.kids, kid)
		ok = ok && good
	}
	return n, ok
}

// criterion compiles criterion e written at path.
func (c *compiler) criterion(e *config.PolicyExpr, path, source string) (*criterion, bool) {
	if len(e.Children) > 0 {
		c.problem(source, path, "criterion %q has operands: only and, or, not and nor have them", e.Criterion)
		return nil, false
	}
	name, sub, hasSub := strings.Cut(e.Criterion, "/")
	spec, known := criteria[name]
	switch {
	case e.Criterion == "":
		c.problem(source, path, "a criterion with no name: want one such as email: {is: user@example.com}")
		return nil, false
	case !known:
		c.problem(source, path, "%s", unknownCriterion(e.Criterion, name))
		return nil, false
	case name == "claim" && sub == "":
		c.problem(source, path, "claim needs the claim's name after a slash, as in claim/groups: admin")
		return nil, false
	case name != "claim" && hasSub:
		c.problem(source, path, "%s takes no sub-path (%q): only claim/<name> has one", name, "/"+sub)
		return nil, false
	}

	if slices.Contains(connectionCriteria, name) && !slices.Contains(c.connection, name) {
		c.connection = append(c.connection, name)
	}
	cr := &criterion{kind: spec.kind, pass: spec.pass, fail: spec.fail}
	ok := true
	switch spec.value {
	case valTrue:
		ok = c.trueValue(name, e.Value, path, source)
	case valString:
		cr.str, ok = c.stringMatcher(name, e.Value, path, source)
	case valList:
		cr.list, ok = c.listMatcher(name, e.Criterion, e.Value, path, source)
		if name == "claim" {
			cr.claim = sub
			if alt := strings.ReplaceAll(sub, ".", "/"); alt != sub {
				cr.claimAlt = alt
			}
		}
	case valIPs:
		cr.prefixes, ok = c.sourceIPs(e.Value, path, source)
	case valCert:
		cr.cert, ok = c.certMatcher(e.Value, path, source)
	case valDate, valDayOfWeek, valTimeOfDay:
		c.clock = true
		cr.clock, ok = c.clockMatcher(spec, e.Value, path, source)
	}
	return cr, ok
}

// unknownCriterion says that name is no criterion, suggesting the one
// meant.
func unknownCriterion(full, name string) string {
	if slices.Contains(pomeriumOnly, name) {
		return fmt.Sprintf("criterion %q is Pomerium's and is not supported by Portcullis", name)
	}
	names := make([]string, 0, len(criteria))
	for n := range criteria {
		names = append(names, n)
	}
	slices.Sort(names)
	msg := fmt.Sprintf("unknown criterion %q", full)
	if s := config.Closest(name, names); s != "" {
		if s == "claim" {
			s = "claim/<name>"
		}
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg + ": want one of " + strings.Join(names, ", ") + " (claim as claim/<name>)"
}

// trueValue checks the value of a criterion whose value Pomerium ignores.
// "accept: false" would accept all the same, and "authenticated_user:
// false" let every signed-in user in: a value other than true is refused
// rather than silently ignored.
func (c *compiler) trueValue(name string, v any, path, source string) bool {
	if v == nil || v == true {
		return true
	}
	if v == false {
		c.problem(source, path, "%s: false is ignored by the policy language (the criterion would still hold): write %s: true, and wrap it in not: [...] to negate it", name, name)
		return false
	}
	c.problem(source, path, "wrong type: %s takes true, got %s", name, describe(v))
	return false
}

// stringMatcher compiles a string matcher: an object of operators, all of
// which must hold, or a bare value, which means is.
func (c *compiler) stringMatcher(name string, v any, path, source string) ([]strMatcher, bool) {
	obj, isObj, ok := c.object(name, v, path, source)
	if !ok {
		return nil, false
	}
	if !isObj {
		if c.typed(v, name+": ", path, source) {
			return nil, false
		}
		s, ok := v.(string)
		if !ok {
			c.problem(source, path, "wrong type: %s takes a string or a string matcher such as {is: x} or {in: [x, y]}, got %s", name, describe(v))
			return nil, false
		}
		return []strMatcher{{op: strIs, val: s}}, true
	}
	var out []strMatcher
	good := true
	for _, key := range sortedKeys(obj) {
		val := obj[key]
		at := path + "." + key
		o, known := strOps[key]
		if !known {
			good = false
			if _, isList := listOps[key]; isList {
				c.problem(source, at, "wrong matcher: %s takes a string matcher (%s); %q is a list matcher (for groups and claim/<name>)", name, strings.Join(strOpNames, ", "), key)
				continue
			}
			msg := fmt.Sprintf("unknown matcher %q", key)
			if s := config.Closest(key, strOpNames); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			c.problem(source, at, "%s: %s takes %s", msg, name, strings.Join(strOpNames, ", "))
			continue
		}
		m := strMatcher{op: o}
		if o == strIn || o == strNotIn {
			set, ok := c.stringList(key, val, at, source)
			if !ok {
				good = false
				continue
			}
			m.set = set
			if len(set) >= setIndexMin {
				m.index = make(map[string]struct{}, len(set))
				for _, s := range set {
					m.index[s] = struct{}{}
				}
			}
		} else {
			if c.typed(val, key+": ", at, source) {
				good = false
				continue
			}
			s, ok := val.(string)
			if !ok {
				good = false
				hint := ""
				if _, isList := val.([]any); isList {
					hint = " (for any of several values use in: [...])"
				}
				c.problem(source, at, "wrong type: %s takes a string, got %s%s", key, describe(val), hint)
				continue
			}
			m.val = s
		}
		out = append(out, m)
	}
	return out, good
}

// listMatcher compiles a string list matcher: an object of has, is and
// exclude, all of which must hold, or a bare value, which means has.
// written is the criterion as written ("claim/roles"), name its kind.
func (c *compiler) listMatcher(name, written string, v any, path, source string) ([]listMatcher, bool) {
	obj, isObj, ok := c.object(name, v, path, source)
	if !ok {
		return nil, false
	}
	if !isObj {
		if c.typed(v, written+": ", path, source) {
			return nil, false
		}
		s, ok := v.(string)
		if !ok {
			hint := ""
			if _, isList := v.([]any); isList {
				hint = fmt.Sprintf(" (for any of several values, put one %s criterion each under or)", name)
			}
			c.problem(source, path, "wrong type: %s takes a string or a list matcher such as {has: x}, got %s%s", name, describe(v), hint)
			return nil, false
		}
		return []listMatcher{{op: listHas, val: s}}, true
	}
	var out []listMatcher
	good := true
	for _, key := range sortedKeys(obj) {
		val := obj[key]
		at := path + "." + key
		o, known := listOps[key]
		if !known {
			good = false
			if _, isStr := strOps[key]; isStr {
				c.problem(source, at, "wrong matcher: %s takes a list matcher (has, is, exclude); %q is a string matcher", name, key)
				continue
			}
			msg := fmt.Sprintf("unknown matcher %q", key)
			if s := config.Closest(key, listOpNames); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			c.problem(source, at, "%s: %s takes has, is or exclude", msg, name)
			continue
		}
		if c.typed(val, key+": ", at, source) {
			good = false
			continue
		}
		s, ok := val.(string)
		if !ok {
			good = false
			hint := ""
			if _, isList := val.([]any); isList {
				hint = fmt.Sprintf(" (for any of several values, put one %s criterion each under or)", name)
			}
			c.problem(source, at, "wrong type: %s takes a string, got %s%s", key, describe(val), hint)
			continue
		}
		out = append(out, listMatcher{op: o, val: s})
	}
	return out, good
}

// typed refuses v, a matcher's operand, when YAML typed it as a number or
// a boolean, and reports whether it did. Pomerium keeps that type: its
// policy language compiles the value's JSON into Rego, where 1234 is not
// "1234", so user: 1234 or groups: {has: 1234} never matches there (a not
// always holds), and email: {is: true} never matches an email. Read as
// text, the same policy would let in someone Pomerium keeps out: a policy
// copied from Pomerium must not. The message shows the quoted spelling;
// written is what precedes the value ("user: ", "is: ", "" in a list).
func (c *compiler) typed(v any, written, path, source string) bool {
	var kind string
	switch v.(type) {
	case bool:
		kind = "a boolean"
	case int, int64, uint64, float64:
		kind = "a number"
	default:
		return false
	}
	text, ok := scalar(v)
	if !ok {
		return false // NaN or infinite: no text to suggest; the caller refuses it
	}
	c.problem(source, path, "wrong type: %s is %s, and Pomerium compares it as one, so it never equals the text %q: write it in quotes, as %s%q",
		describe(v), kind, text, written, text)
	return true
}

// object returns v as a matcher object; isObj is false for a bare value.
// An empty object or one with non-string keys is a problem.
func (c *compiler) object(name string, v any, path, source string) (obj map[string]any, isObj, ok bool) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			c.problem(source, path, "%s has an empty matcher: it would hold for every request; give an operator such as {is: x}", name)
			return nil, true, false
		}
		return v, true, true
	case map[any]any:
		c.problem(source, path, "%s: a matcher's keys are names such as is or has, got %s", name, describe(v))
		return nil, true, false
	case nil:
		c.problem(source, path, "%s has no value: give one such as %s: {is: x}", name, name)
		return nil, false, false
	}
	return nil, false, true
}

// stringList compiles the operand of in and not_in: a non-empty list of
// strings.
func (c *compiler) stringList(key string, v any, path, source string) ([]string, bool) {
	list, isList := v.([]any)
	if !isList {
		c.problem(source, path, "wrong type: %s takes a list of strings such as [a, b], got %s", key, describe(v))
		return nil, false
	}
	if len(list) == 0 {
		c.problem(source, path, "%s has an empty list: give at least one value", key)
		return nil, false
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		at := fmt.Sprintf("%s[%d]", path, i)
		if c.typed(item, "", at, source) {
			return nil, false
		}
		s, ok := item.(string)
		if !ok {
			c.problem(source, at, "wrong type: want a string, got %s", describe(item))
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// sourceIPs compiles source_ip: an IP or CIDR, or a non-empty list of
// them. A CIDR with host bits set is taken as its network, as Go's
// net.ParseCIDR (Pomerium's) takes it; an IPv4 address written as IPv6 is
// IPv4.
func (c *compiler) sourceIPs(v any, path, source string) ([]netip.Prefix, bool) {
	var items []any
	single := false
	switch v := v.(type) {
	case string:
		items, single = []any{v}, true
	case []any:
		items = v
		if len(items) == 0 {
			c.problem(source, path, "source_ip has an empty list: give at least one IP address or CIDR range")
			return nil, false
		}
	default:
		c.problem(source, path, "wrong type: source_ip takes an IP address or CIDR range, or a list of them, got %s", describe(v))
		return nil, false
	}
	var out []netip.Prefix
	ok := true
	for i, item := range items {
		at := fmt.Sprintf("%s[%d]", path, i)
		if single {
			at = path
		}
		s, isStr := item.(string)
		if !isStr {
			c.problem(source, at, "wrong type: want an IP address or CIDR range, got %s", describe(item))
			ok = false
			continue
		}
		p, msg := parseSourceIP(strings.TrimSpace(s))
		if msg != "" {
			c.problem(source, at, "%s", msg)
			ok = false
			continue
		}
		out = append(out, p)
	}
	return out, ok
}

func parseSourceIP(s string) (netip.Prefix, string) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Sprintf("bad CIDR range %q: want one such as 10.0.0.0/8 or 2001:db8::/32", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("bad IP address %q: want an address such as 192.0.2.1 or a CIDR range such as 10.0.0.0/8", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Sprintf("bad IP address %q: an address with a zone never matches a client's address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), ""
}

var (
	shortFingerprint = regexp.MustCompile(`^[0-9a-f]{64}$`)
	longFingerprint  = regexp.MustCompile(`^[0-9A-F]{2}(:[0-9A-F]{2}){31}$`)
)

// certMatcher compiles client_certificate: true (a certificate was
// presented), false (none was), or Pomerium's certificate matcher with
// fingerprint, spki_hash, san_email, san_dns and san_uri, all of which
// must hold.
func (c *compiler) certMatcher(v any, path, source string) (*certMatcher, bool) {
	switch v {
	case true:
		return &certMatcher{mode: certPresent}, true
	case false:
		return &certMatcher{mode: certAbsent}, true
	}
	obj, isObj, ok := c.object("client_certificate", v, path, source)
	if !ok {
		return nil, false
	}
	if !isObj {
		c.problem(source, path, "wrong type: client_certificate takes true, false or a certificate matcher such as {fingerprint: …}, got %s", describe(v))
		return nil, false
	}
	m := &certMatcher{mode: certMatch}
	good := true
	keys := []string{"fingerprint", "spki_hash", "san_email", "san_dns", "san_uri"}
	for _, key := range sortedKeys(obj) {
		val := obj[key]
		at := path + "." + key
		switch key {
		case "fingerprint", "spki_hash":
			hashes, ok := c.certHashes(key, val, at, source)
			good = good && ok
			if key == "fingerprint" {
				m.fingerprints = hashes
			} else {
				m.spkiHashes = hashes
			}
		case "san_email", "san_dns", "san_uri":
			ms, ok := c.stringMatcher(key, val, at, source)
			good = good && ok
			switch key {
			case "san_email":
				m.sanEmail = ms
			case "san_dns":
				m.sanDNS = ms
			default:
				m.sanURI = ms
			}
		default:
			good = false
			msg := fmt.Sprintf("unknown certificate matcher %q", key)
			if s := config.Closest(key, keys); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			c.problem(source, at, "%s: want %s", msg, strings.Join(keys, ", "))
		}
	}
	return m, good
}

// certHashes compiles a fingerprint or spki_hash condition: a string or a
// non-empty list of them.
func (c *compiler) certHashes(key string, v any, path, source string) ([][sha256.Size]byte, bool) {
	items, isList := v.([]any)
	if !isList {
		items = []any{v}
	} else if len(items) == 0 {
		c.problem(source, path, "%s has an empty list: give at least one value", key)
		return nil, false
	}
	var out [][sha256.Size]byte
	for i, item := range items {
		at := path
		if isList {
			at = fmt.Sprintf("%s[%d]", path, i)
		}
		s, _ := item.(string)
		var raw []byte
		var err error
		switch {
		case key == "fingerprint" && shortFingerprint.MatchString(s):
			raw, err = hex.DecodeString(s)
		case key == "fingerprint" && longFingerprint.MatchString(s):
			raw, err = hex.DecodeString(strings.ReplaceAll(s, ":", ""))
		case key == "fingerprint":
			c.problem(source, at, "bad certificate fingerprint %s: want the SHA-256 of the certificate as 64 lower-case hex digits, or 32 upper-case hex bytes separated by colons (openssl x509 -noout -fingerprint -sha256)", describe(item))
			return nil, false
		default:
			raw, err = base64.StdEncoding.DecodeString(s)
			if s == "" || err != nil || len(raw) != sha256.Size {
				c.problem(source, at, "bad SPKI hash %s: want the base64 of a SHA-256 hash (44 characters ending in =)", describe(item))
				return nil, false
			}
		}
		if err != nil {
			return nil, false
		}
		out = append(out, [sha256.Size]byte(raw))
	}
	return out, true
}

// clockMatcher compiles date, day_of_week and time_of_day.
func (c *compiler) clockMatcher(spec criterionSpec, v any, path, source string) (*clockMatcher, bool) {
	m := &clockMatcher{kind: spec.kind, loc: time.UTC}
	name := map[kind]string{kDate: "date", kDayOfWeek: "day_of_week", kTimeOfDay: "time_of_day"}[spec.kind]

	if s, isStr := v.(string); isStr && spec.kind == kDayOfWeek {
		days, err := parseDays(s)
		if err != nil {
			c.problem(source, path, "bad day_of_week %q: %v", s, err)
			return nil, false
		}
		m.days = days
		return m, true
	}
	obj, isObj, ok := c.object(name, v, path, source)
	if !ok {
		return nil, false
	}
	if !isObj {
		want := map[kind]string{
			kDate:      "{after: 2025-01-02T15:04:05Z, before: …}",
			kDayOfWeek: `a string such as "mon-fri" or {days: mon-fri, timezone: Europe/Berlin}`,
			kTimeOfDay: "{timezone: America/Phoenix, after: 9:00, before: 5:30PM}",
		}[spec.kind]
		c.problem(source, path, "wrong type: %s takes %s, got %s", name, want, describe(v))
		return nil, false
	}
	keys := map[kind][]string{
		kDate:      {"after", "before", "timezone"},
		kDayOfWeek: {"days", "timezone"},
		kTimeOfDay: {"after", "before", "timezone"},
	}[spec.kind]
	good := true
	for _, key := range sortedKeys(obj) {
		if !slices.Contains(keys, key) {
			msg := fmt.Sprintf("unknown key %q", key)
			if s := config.Closest(key, keys); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			c.problem(source, path+"."+key, "%s: %s takes %s", msg, name, strings.Join(keys, ", "))
			good = false
		}
	}

	// The zone first: the other values are read in it.
	if tz, has := obj["timezone"]; has {
		s, isStr := tz.(string)
		loc, err := time.LoadLocation(s)
		if !isStr || s == "" || err != nil {
			c.problem(source, path+".timezone", "bad timezone %s: want an IANA zone name such as UTC or America/Phoenix", describe(tz))
			good = false
		} else {
			m.loc = loc
		}
	} else if spec.kind == kTimeOfDay {
		c.problem(source, path, "time_of_day needs a timezone, such as timezone: America/Phoenix (prefer a city to an abbreviation like EST, which ignores daylight saving)")
		good = false
	}

	switch spec.kind {
	case kDayOfWeek:
		days, has := obj["days"]
		s, isStr := days.(string)
		switch {
		case !has:
			c.problem(source, path, `day_of_week needs days, such as days: mon-fri`)
			good = false
		case !isStr:
			c.problem(source, path+".days", "wrong type: days takes a string such as mon-fri or mon,wed,fri, got %s", describe(days))
			good = false
		default:
			d, err := parseDays(s)
			if err != nil {
				c.problem(source, path+".days", "bad day_of_week %q: %v", s, err)
				good = false
			}
			m.days = d
		}
	case kDate, kTimeOfDay:
		for _, key := range []string{"after", "before"} {
			raw, has := obj[key]
			if !has {
				continue
			}
			at := path + "." + key
			if spec.kind == kDate {
				t, ok := dateValue(raw, m.loc)
				if !ok {
					c.problem(source, at, "bad date %s: want an ISO 8601 date and time such as 2025-01-02T15:04:05Z or 2025-01-02", describe(raw))
					good = false
					continue
				}
				if key == "after" {
					m.after, m.hasAfter = t, true
				} else {
					m.before, m.hasBefore = t, true
				}
				continue
			}
			s, _ := raw.(string)
			d, ok := parseTimeOfDay(s)
			if !ok {
				c.problem(source, at, "bad time of day %s: want one such as 15:04, 15:04:05, 3:04PM or 3 PM", describe(raw))
				good = false
				continue
			}
			if key == "after" {
				m.from, m.hasFrom = d, true
			} else {
				m.to, m.hasTo = d, true
			}
		}
		if _, hasA := obj["after"]; !hasA {
			if _, hasB := obj["before"]; !hasB {
				c.problem(source, path, "%s needs after, before or both", name)
				good = false
			}
		}
		if good && spec.kind == kDate && m.hasAfter && m.hasBefore && !m.after.Before(m.before) {
			c.problem(source, path, "date: after (%s) is not before before (%s): no time matches", m.after.Format(time.RFC3339), m.before.Format(time.RFC3339))
			good = false
		}
		if good && spec.kind == kTimeOfDay && m.hasFrom && m.hasTo && m.from == m.to {
			c.problem(source, path, "time_of_day: after and before are the same time: no time matches")
			good = false
		}
	}
	return m, good
}

// dateValue reads a date: a string, or a time.Time when the YAML value was
// tagged !!timestamp.
func dateValue(v any, loc *time.Location) (time.Time, bool) {
	switch v := v.(type) {
	case time.Time:
		return v, true
	case string:
		return parseDate(v, loc)
	}
	return time.Time{}, false
}

// scalar returns a scalar YAML value as a string: numbers and booleans as
// JSON writes them, for messages (matchers take only strings: see typed).
func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case uint64:
		return strconv.FormatUint(v, 10), true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", false
		}
		return strconv.FormatFloat(v, 'f', -1, 64), true
	}
	return "", false
}

// describe names a decoded YAML value's type for messages.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing"
	case string:
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return strconv.Quote(v)
	case bool, int, int64, uint64, float64:
		s, _ := scalar(v)
		if s == "" {
			return "a number"
		}
		return s
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	case time.Time:
		return v.Format(time.RFC3339)
	}
	return fmt.Sprintf("a %T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
