package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Policy is a route's policy in the Pomerium Policy Language (PPL), as
// written: parsed into a tree but not compiled. The policy package checks
// criterion names and values and evaluates it.
//
// A policy is a rule or a list of rules:
//
//	policy:
//	  - allow:
//	      or:
//	        - email: {is: someuser@example.com}
//	        - groups: {has: sre}
//	  - deny:
//	      and:
//	        - kubernetes_namespace: prod
//
// Deny wins over allow; rules of one action are ORed.
type Policy struct {
	Rules []PolicyRule
}

// PolicyRule is one operator under an action. A rule body with several
// operators ("allow: {and: [...], or: [...]}") becomes one PolicyRule per
// operator, in order: Pomerium ORs them, like separate rules of the same
// action (see its policy generator), and so do we.
type PolicyRule struct {
	// Action is "allow" or "deny".
	Action string
	// Root is an operator: Op is and, or, not or nor.
	Root PolicyExpr
	// Source is where the action key is written, in the form of
	// Problem.Source: "config.yaml:12", "POLICY (decoded) line 3"; "" for a
	// policy built in code.
	Source string
}

// PolicyExpr is an operator with operands, or a criterion.
type PolicyExpr struct {
	// Op is "and", "or", "not" (none of the children holds) or "nor" (not
	// all of them hold), with Children as operands; "" for a criterion.
	// Operators may nest where a criterion is expected, which Pomerium's
	// parser does not allow.
	Op       string
	Children []PolicyExpr

	// Criterion is the criterion's name as written ("email",
	// "claim/groups"), and Value its value as yaml.v3 decodes it into an
	// any: a string, bool, int, float64, nil, []any or map[string]any (or
	// map[any]any when a key is not a string).
	Criterion string
	Value     any

	// Source is where the operator or criterion is written, like
	// PolicyRule.Source.
	Source string
}

const (
	// maxPolicyDepth bounds operator nesting.
	maxPolicyDepth = 32
	// maxValueDepth bounds nesting in a criterion's value; an anchor used
	// inside itself would be endless.
	maxValueDepth = 64
)

var policyOps = []string{"and", "or", "not", "nor"}

func isPolicyOp(s string) bool {
	for _, op := range policyOps {
		if s == op {
			return true
		}
	}
	return false
}

const (
	ruleExample      = `allow: {or: [{email: {is: user@example.com}}]}`
	criterionExample = `email: {is: user@example.com}`
)

// policy parses a route's policy: a rule or a list of rules. It returns
// nil for a policy with no rules.
func (l *loader) policy(v value) (*Policy, bool) {
	n := deref(v.node)
	var p Policy
	ok := true
	switch n.Kind {
	case yaml.MappingNode:
		ok = l.rule(v.d, v.node, v.at.key, &p)
	case yaml.SequenceNode:
		for i, item := range n.Content {
			ok = l.rule(v.d, item, fmt.Sprintf("%s[%d]", v.at.key, i), &p) && ok
		}
	default:
		return nil, l.fail(v, "want a rule or a list of rules such as - %s, got %s", ruleExample, describe(n))
	}
	if !ok || len(p.Rules) == 0 {
		return nil, ok
	}
	return &p, true
}

// rule parses one rule: a mapping of allow and/or deny to a rule body.
func (l *loader) rule(d *doc, item *yaml.Node, key string, p *Policy) bool {
	if !l.count(d, item, key) {
		return false
	}
	n := deref(item)
	if n.Kind != yaml.MappingNode {
		l.problem(d.at(item, key), fmt.Sprintf("want a rule such as %s, got %s", ruleExample, describe(n)))
		return false
	}
	ok := true
	for _, e := range l.entries(d, n, key) {
		if e.name != "allow" && e.name != "deny" {
			msg := fmt.Sprintf("unknown action %q: want allow or deny", e.name)
			if s := Closest(e.name, []string{"allow", "deny"}); s != "" {
				msg = fmt.Sprintf("unknown action %q (did you mean %q?): want allow or deny", e.name, s)
			}
			l.problem(d.at(e.key, key), msg)
			ok = false
			continue
		}
		bodyKey := key + "." + e.name
		body := deref(e.val)
		if !l.count(d, e.val, bodyKey) {
			return false
		}
		if body.Kind != yaml.MappingNode {
			l.problem(d.at(e.val, bodyKey), fmt.Sprintf("want a mapping of and, or, not or nor to a list of criteria, as in %s; got %s", ruleExample, describe(body)))
			ok = false
			continue
		}
		ops := l.entries(d, body, bodyKey)
		if len(ops) == 0 {
			l.problem(d.at(e.val, bodyKey), "empty rule: want and, or, not or nor with a list of criteria, as in "+ruleExample)
			ok = false
			continue
		}
		for _, op := range ops {
			expr, good := l.operator(d, op, bodyKey, 1)
			if good {
				p.Rules = append(p.Rules, PolicyRule{Action: e.name, Root: expr, Source: d.source(e.key.Line)})
			}
			ok = ok && good
		}
	}
	return ok
}

// operator parses "op: [criteria]", where key names the mapping op is in.
func (l *loader) operator(d *doc, op entry, key string, depth int) (PolicyExpr, bool) {
	if !isPolicyOp(op.name) {
		msg := fmt.Sprintf("unknown operator %q: want and, or, not or nor", op.name)
		if s := Closest(op.name, policyOps); s != "" {
			msg = fmt.Sprintf("unknown operator %q (did you mean %q?): want and, or, not or nor", op.name, s)
		}
		l.problem(d.at(op.key, key), msg)
		return PolicyExpr{}, false
	}
	opKey := key + "." + op.name
	if depth > maxPolicyDepth {
		l.problem(d.at(op.key, opKey), fmt.Sprintf("operators nested more than %d deep: simplify the policy", maxPolicyDepth))
		return PolicyExpr{}, false
	}
	if !l.count(d, op.val, opKey) {
		return PolicyExpr{}, false
	}
	list := deref(op.val)
	if list.Kind != yaml.SequenceNode {
		l.problem(d.at(op.val, opKey), fmt.Sprintf("want a list of criteria such as - %s, got %s", criterionExample, describe(list)))
		return PolicyExpr{}, false
	}
	expr := PolicyExpr{Op: op.name, Source: d.source(op.key.Line)}
	ok := true
	for i, item := range list.Content {
		c, good := l.criterion(d, item, fmt.Sprintf("%s[%d]", opKey, i), depth)
		if good {
			expr.Children = append(expr.Children, c)
		}
		ok = ok && good
	}
	return expr, ok
}

// criterion parses one list item under an operator: a mapping with one
// key, the criterion's name (or a nested operator).
func (l *loader) criterion(d *doc, item *yaml.Node, key string, depth int) (PolicyExpr, bool) {
	if !l.count(d, item, key) {
		return PolicyExpr{}, false
	}
	n := deref(item)
	if n.Kind != yaml.MappingNode {
		l.problem(d.at(item, key), fmt.Sprintf("want a criterion such as %s, got %s", criterionExample, describe(n)))
		return PolicyExpr{}, false
	}
	ents := l.entries(d, n, key)
	if len(ents) != 1 {
		l.problem(d.at(item, key), fmt.Sprintf("%d keys in one criterion: want one per list item, as in - %s", len(ents), criterionExample))
		return PolicyExpr{}, false
	}
	e := ents[0]
	if e.name == "" {
		l.problem(d.at(e.key, key), "a criterion with an empty name: want one such as "+criterionExample)
		return PolicyExpr{}, false
	}
	if isPolicyOp(e.name) {
		return l.operator(d, e, key, depth+1)
	}
	valKey := key + "." + e.name
	if !l.countValue(d, e.val, valKey, 0) {
		return PolicyExpr{}, false
	}
	var val any
	if err := e.val.Decode(&val); err != nil {
		l.problem(d.at(e.val, valKey), "cannot decode the value: "+strings.TrimPrefix(err.Error(), "yaml: "))
		return PolicyExpr{}, false
	}
	return PolicyExpr{Criterion: e.name, Value: val, Source: d.source(e.key.Line)}, true
}

// countValue counts the nodes of a criterion's value, aliases expanded.
func (l *loader) countValue(d *doc, n *yaml.Node, key string, depth int) bool {
	if depth > maxValueDepth {
		l.problem(d.at(n, key), fmt.Sprintf("value nested more than %d deep (is an anchor used inside itself?)", maxValueDepth))
		return false
	}
	if !l.count(d, n, key) {
		return false
	}
	for _, c := range deref(n).Content {
		if !l.countValue(d, c, key, depth+1) {
			return false
		}
	}
	return true
}
