package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// policyRule and policyExpr copy config.PolicyRule and config.PolicyExpr
// field for field, in the same order and without JSON tags, so that the
// rules encode to the same JSON as the originals: rulesSHA256 depends on
// it.
type policyRule struct {
	Action string
	Root   policyExpr
	Source string
}

type policyExpr struct {
	Op        string
	Children  []policyExpr
	Criterion string
	Value     any
	Source    string
}

// benchRule is internal/policy's benchRule (bench_test.go), copied: rule
// i of a benchmark policy, ten kinds of rule cycled with values that
// differ by i. Change both together; TestDecisions and internal/policy's
// TestBenchDecisions fail until they agree again.
func benchRule(i int) policyRule {
	c := func(name string, v any) policyExpr { return policyExpr{Criterion: name, Value: v} }
	op := func(o string, kids ...policyExpr) policyExpr {
		return policyExpr{Op: o, Children: kids}
	}
	n := i / 10
	var action string
	var root policyExpr
	switch i % 10 {
	case 0:
		action, root = "allow", op("or", c("groups", map[string]any{"has": fmt.Sprintf("dev%s", suffix(n))}))
	case 1:
		action, root = "allow", op("or", c("groups", map[string]any{"has": fmt.Sprintf("sre%s", suffix(n))}))
	case 2:
		action, root = "allow", op("and", c("domain", map[string]any{"is": fmt.Sprintf("corp%d.example.com", n)}),
			c("kubernetes_verb", map[string]any{"in": []any{"get", "list", "watch"}}))
	case 3:
		action, root = "allow", op("and", c("claim/department", fmt.Sprintf("platform%d", n)),
			c("kubernetes_namespace", map[string]any{"starts_with": fmt.Sprintf("platform%d-", n)}))
	case 4:
		action, root = "allow", op("or", c("email", map[string]any{"in": []any{
			fmt.Sprintf("a%d@example.com", n), fmt.Sprintf("b%d@example.com", n), fmt.Sprintf("c%d@example.com", n)}}))
	case 5:
		action, root = "allow", op("and", c("source_ip", []any{fmt.Sprintf("10.%d.0.0/16", n), "192.168.0.0/16"}),
			c("authenticated_user", true), c("kubernetes_api_group", fmt.Sprintf("batch%d", n)))
	case 6:
		action, root = "allow", op("and", c("groups", map[string]any{"has": fmt.Sprintf("oncall%d", n)}),
			c("time_of_day", map[string]any{"timezone": "Europe/Berlin", "after": "8:00", "before": "18:00"}))
	case 7:
		action, root = "deny", op("and", c("kubernetes_subresource", map[string]any{"in": []any{"exec", "attach"}}),
			c("kubernetes_namespace", fmt.Sprintf("prod%s", suffix(n))),
			op("not", c("groups", map[string]any{"has": "sre"})))
	case 8:
		action, root = "deny", op("and", c("kubernetes_resource", "secrets"), c("kubernetes_namespace", fmt.Sprintf("kube-system%s", suffix(n))),
			op("nor", c("groups", "admins"), c("http_method", "GET")))
	case 9:
		action, root = "deny", op("or", c("email", map[string]any{"is": fmt.Sprintf("mallory%d@example.com", n)}),
			c("user", map[string]any{"starts_with": fmt.Sprintf("banned-%d-", n)}))
	}
	return policyRule{Action: action, Root: root, Source: fmt.Sprintf("bench.yaml:%d", i+1)}
}

func suffix(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

// benchRules returns the first n bench rules.
func benchRules(n int) []policyRule {
	rules := make([]policyRule, n)
	for i := range rules {
		rules[i] = benchRule(i)
	}
	return rules
}

// rulesSHA256 is the hex SHA-256 of the first n rules encoded as JSON,
// as internal/policy's TestBenchDecisions computes it over its own rules.
func rulesSHA256(n int) (string, error) {
	raw, err := json.Marshal(benchRules(n))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}
