package policy

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

// benchRule returns rule i of a benchmark policy: ten kinds of rule, as a
// Kubernetes team would write them, cycled with values that differ by i.
func benchRule(i int) config.PolicyRule {
	c := func(name string, v any) config.PolicyExpr { return config.PolicyExpr{Criterion: name, Value: v} }
	op := func(o string, kids ...config.PolicyExpr) config.PolicyExpr {
		return config.PolicyExpr{Op: o, Children: kids}
	}
	n := i / 10
	var action string
	var root config.PolicyExpr
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
	return config.PolicyRule{Action: action, Root: root, Source: fmt.Sprintf("bench.yaml:%d", i+1)}
}

func suffix(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

func benchPolicy(tb testing.TB, n int) *Policy {
	tb.Helper()
	rules := make([]config.PolicyRule, n)
	for i := range rules {
		rules[i] = benchRule(i)
	}
	p, err := Compile(&config.Route{Policy: &config.Policy{Rules: rules}})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// benchRequests are a developer's exec in their namespace (allowed, after
// every rule has been evaluated), the same in prod (denied by a rule), and
// an anonymous list (denied, no rule).
func benchRequests() []Request {
	dev := Request{
		Authenticated: true,
		User:          "00u1dev",
		Email:         "dev@example.com",
		Groups:        []string{"everyone", "dev"},
		Claims:        ClaimMap{"department": {"web"}},
		Method:        "POST",
		Path:          "/api/v1/namespaces/dev/pods/web-0/exec",
		SourceIP:      netip.MustParseAddr("10.0.3.4"),
		Time:          time.Date(2025, 6, 4, 10, 0, 0, 0, time.UTC),
		Kubernetes:    Kubernetes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "dev", Name: "web-0"},
	}
	prod := dev
	prod.Email = "dev2@example.com"
	prod.Path = "/api/v1/namespaces/prod/pods/web-0/exec"
	prod.Kubernetes.Namespace = "prod"
	anon := Request{Method: "GET", Path: "/api/v1/pods", SourceIP: netip.MustParseAddr("203.0.113.7"),
		Kubernetes: Kubernetes{Verb: "list", Resource: "pods"}}
	return []Request{dev, prod, anon}
}

// BenchmarkEvaluate measures a decision on policies of 1, 10 and 100
// rules. The target is under 1 µs and no allocation for 10 rules.
func BenchmarkEvaluate(b *testing.B) {
	names := []string{"dev-exec-allowed", "prod-exec-denied", "anonymous-denied"}
	for _, n := range []int{1, 10, 100} {
		p := benchPolicy(b, n)
		for i, r := range benchRequests() {
			b.Run(fmt.Sprintf("rules=%d/%s", n, names[i]), func(b *testing.B) {
				b.ReportAllocs()
				want := p.Evaluate(&r)
				for b.Loop() {
					if d := p.Evaluate(&r); d.Allow != want.Allow {
						b.Fatal("decision changed")
					}
				}
			})
		}
	}
}

// BenchmarkCompile measures compiling, which happens at load and reload.
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		rules := make([]config.PolicyRule, n)
		for i := range rules {
			rules[i] = benchRule(i)
		}
		route := &config.Route{Policy: &config.Policy{Rules: rules}}
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Compile(route); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
