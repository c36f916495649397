package policy

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

// TestProblemSource checks that a problem names the route, the place in
// the policy and the file line of the criterion, and that every problem
// is reported at once, in the order written.
func TestProblemSource(t *testing.T) {
	const policyText = `- allow:
    and:
      - email: {is: alice@example.com}
      - emial: bob@example.com
- deny:
    or:
      - source_ip: 10.0.0.0/33
      - time_of_day: {timezone: UTC, after: "26:00"}
`
	route, first, err := loadRoute(t, "", policyText)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(route)
	if err == nil {
		t.Fatal("Compile: no error")
	}
	file := strings.TrimSuffix(config.Problems(err)[0].Source, fmt.Sprintf(":%d", first+3))
	got := config.Problems(err)
	want := []*config.Problem{
		{Source: fmt.Sprintf("%s:%d", file, first+3), Key: `route "https://k8s.example.com": policy[0].allow.and[1].emial`,
			Message: `unknown criterion "emial" (did you mean "email"?): want one of ` + strings.Join(sortedCriteria(), ", ") + " (claim as claim/<name>)"},
		{Source: fmt.Sprintf("%s:%d", file, first+6), Key: `route "https://k8s.example.com": policy[1].deny.or[0].source_ip`,
			Message: `bad CIDR range "10.0.0.0/33": want one such as 10.0.0.0/8 or 2001:db8::/32`},
		{Source: fmt.Sprintf("%s:%d", file, first+7), Key: `route "https://k8s.example.com": policy[1].deny.or[1].time_of_day.after`,
			Message: `bad time of day "26:00": want one such as 15:04, 15:04:05, 3:04PM or 3 PM`},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if !strings.HasSuffix(file, "config.yaml") {
		t.Errorf("Source %q: want the config file and line", got[0].Source)
	}
	// The joined error reads like other config problems.
	if msg := err.Error(); !strings.Contains(msg, `config.yaml:`) || !strings.Contains(msg, `route "https://k8s.example.com": policy[0].allow.and[1].emial: unknown criterion "emial"`) {
		t.Errorf("Error() = %q", msg)
	}
}

func sortedCriteria() []string {
	var names []string
	for n := range criteria {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func TestCompileRoutesNamesRoutes(t *testing.T) {
	from, _ := url.Parse("https://k8s.example.com")
	routes := []config.Route{
		{From: from, AllowAnyAuthenticatedUser: true},
		{From: from, Policy: &config.Policy{Rules: []config.PolicyRule{{
			Action: "allow", Source: "POLICY (decoded) line 2",
			Root: config.PolicyExpr{Op: "or", Children: []config.PolicyExpr{{Criterion: "grups", Value: "dev", Source: "POLICY (decoded) line 4"}}},
		}}}},
	}
	_, err := CompileRoutes(routes)
	got := config.Problems(err)
	if len(got) != 1 {
		t.Fatalf("CompileRoutes: %v, want one problem", err)
	}
	want := &config.Problem{
		Source:  "POLICY (decoded) line 4",
		Key:     `route 2 ("https://k8s.example.com"): policy[0].allow.or[0].grups`,
		Message: got[0].Message,
	}
	if diff := cmp.Diff(want, got[0]); diff != "" || !strings.HasPrefix(got[0].Message, `unknown criterion "grups" (did you mean "groups"?)`) {
		t.Errorf("problem (-want +got):\n%s\nmessage %q", diff, got[0].Message)
	}

	routes[1].Policy.Rules[0].Root.Children[0].Criterion = "groups"
	policies, err := CompileRoutes(routes)
	if err != nil || len(policies) != 2 {
		t.Fatalf("CompileRoutes: %v, %d policies", err, len(policies))
	}
	d := policies[1].Evaluate(&Request{Authenticated: true, Groups: []string{"dev"}})
	if !d.Allow {
		t.Errorf("route 2: %+v, want allowed", d)
	}
}

// TestTreesBuiltInCode checks the shapes config.Load never produces but
// code can.
func TestTreesBuiltInCode(t *testing.T) {
	crit := func(name string, v any) config.PolicyExpr { return config.PolicyExpr{Criterion: name, Value: v} }
	for _, tc := range []struct {
		name string
		rule config.PolicyRule
		want string
	}{
		{"bad action", config.PolicyRule{Action: "permit", Root: config.PolicyExpr{Op: "or", Children: []config.PolicyExpr{crit("accept", true)}}},
			`policy[0]: unknown action "permit": want allow or deny`},
		{"criterion as the root", config.PolicyRule{Action: "allow", Root: crit("accept", true)},
			"policy[0].allow: a rule holds an operator"},
		{"unknown operator", config.PolicyRule{Action: "allow", Root: config.PolicyExpr{Op: "xor", Children: []config.PolicyExpr{crit("accept", true)}}},
			`policy[0].allow.xor: unknown operator "xor"`},
		{"operator and criterion", config.PolicyRule{Action: "allow", Root: config.PolicyExpr{Op: "and", Criterion: "accept", Children: []config.PolicyExpr{crit("accept", true)}}},
			`policy[0].allow.and: operator "and" also names criterion "accept"`},
		{"criterion with operands", config.PolicyRule{Action: "allow", Root: config.PolicyExpr{Op: "and", Children: []config.PolicyExpr{{Criterion: "accept", Children: []config.PolicyExpr{crit("reject", true)}}}}},
			`policy[0].allow.and[0].accept: criterion "accept" has operands`},
		{"criterion without a name", config.PolicyRule{Action: "allow", Root: config.PolicyExpr{Op: "and", Children: []config.PolicyExpr{crit("", true)}}},
			`policy[0].allow.and[0].: a criterion with no name`},
		{"mapping with non-string keys", config.PolicyRule{Action: "allow", Root: config.PolicyExpr{Op: "and", Children: []config.PolicyExpr{crit("email", map[any]any{1: "x"})}}},
			`policy[0].allow.and[0].email: email: a matcher's keys are names such as is or has, got a mapping`},
		{"NaN", config.PolicyRule{Action: "allow", Root: config.PolicyExpr{Op: "and", Children: []config.PolicyExpr{crit("claim/x", map[string]any{"has": nan()})}}},
			`policy[0].allow.and[0].claim/x.has: wrong type: has takes a string, got a number`},
		{"too deep", config.PolicyRule{Action: "allow", Root: deep(40)},
			`operators nested more than 32 deep`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(&config.Route{Policy: &config.Policy{Rules: []config.PolicyRule{tc.rule}}})
			got := problemKeys(err)
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Errorf("Compile: got %q, want one problem containing %q", got, tc.want)
			}
			if len(got) == 1 && !strings.HasPrefix(got[0], "route: ") {
				t.Errorf("Compile: %q: want the route named route when it has no from", got[0])
			}
		})
	}
}

func nan() float64 {
	var zero float64
	return zero / zero
}

func deep(n int) config.PolicyExpr {
	e := config.PolicyExpr{Op: "and", Children: []config.PolicyExpr{{Criterion: "accept", Value: true}}}
	for range n {
		e = config.PolicyExpr{Op: "and", Children: []config.PolicyExpr{e}}
	}
	return e
}

func TestDecisionMessage(t *testing.T) {
	p, err := compileText(t, "", `
- allow: {or: [{groups: {has: dev}}]}
- deny: {and: [{kubernetes_namespace: prod}, {kubernetes_subresource: exec}]}
`)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := Compile(&config.Route{})
	if err != nil {
		t.Fatal(err)
	}
	denyOnly, err := compileText(t, "", "- deny: {or: [{reject: true}]}\n")
	if err != nil {
		t.Fatal(err)
	}
	dev := Request{Authenticated: true, Email: "dev@example.com", Groups: []string{"dev"}}
	exec := dev
	exec.Kubernetes = Kubernetes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "prod", Name: "web-0"}
	for _, tc := range []struct {
		name       string
		p          *Policy
		r          Request
		want       string
		wantSignIn bool
	}{
		{"allowed", p, dev, "allowed by policy rule policy[0].allow.or (groups-ok)", false},
		{"denied by a rule", p, exec, "denied by policy rule policy[1].deny.and (kubernetes-namespace-ok, kubernetes-subresource-ok)", false},
		{"no allow rule matched", p, Request{Authenticated: true, Email: "eve@example.com"}, "denied: no policy rule allows this request (groups-unauthorized)", false},
		{"signed out", p, Request{}, "denied: no policy rule allows this request (user-unauthenticated)", true},
		{"no policy", empty, dev, "denied: the route has no policy, so nothing is allowed (no-policy)", false},
		{"deny rules only", denyOnly, dev, "denied: the route's policy has no allow rule (no-allow-rule)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.p.Evaluate(&tc.r)
			if got := d.Message(); got != tc.want {
				t.Errorf("Message() = %q, want %q", got, tc.want)
			}
			if got := d.SignInRequired(); got != tc.wantSignIn {
				t.Errorf("SignInRequired() = %v, want %v", got, tc.wantSignIn)
			}
			// The message names nobody: not the user, not the file.
			if msg := d.Message(); strings.Contains(msg, "example.com") || strings.Contains(msg, ".yaml") {
				t.Errorf("Message() = %q leaks the user or the config file", msg)
			}
		})
	}
}

func TestDecisionLogValue(t *testing.T) {
	p, err := compileText(t, "", "- deny: {or: [{http_method: DELETE}]}\n- allow: {or: [{accept: true}]}\n")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.InfoContext(context.Background(), "decision", "decision", p.Evaluate(&Request{Method: "DELETE"}))
	got := b.String()
	for _, want := range []string{"decision.allow=false", "decision.reasons=[http-method-ok]", "decision.rule=policy[0].deny.or", "decision.rule_source=", "config.yaml:"} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q: want %q", got, want)
		}
	}
}

func TestRules(t *testing.T) {
	p, err := compileText(t, "allowed_users: [alice@example.com]\n", `
- allow: {and: [{groups: {has: dev}}], or: [{groups: {has: sre}}]}
- deny: {or: [{reject: true}]}
`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range p.rules {
		got = append(got, fmt.Sprintf("%d %s %s %t", r.Index, r.Action, r.Path, r.Source != ""))
	}
	want := []string{
		"0 allow allowed_users false",
		"1 allow policy[0].allow.and true",
		"2 allow policy[0].allow.or true",
		"3 deny policy[1].deny.or true",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Rules (-want +got):\n%s", diff)
	}
}

// TestZeroTime checks that a request without a time is decided at the
// time of the call.
func TestZeroTime(t *testing.T) {
	now := time.Now().UTC()
	p, err := compileText(t, "", fmt.Sprintf("- allow: {or: [{date: {after: %q, before: %q}}]}\n",
		now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)))
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Evaluate(&Request{}); !d.Allow {
		t.Errorf("Evaluate with no time: %+v, want allowed now", d)
	}
	if d := p.Evaluate(&Request{Time: now.Add(2 * time.Hour)}); d.Allow {
		t.Errorf("Evaluate two hours on: %+v, want denied", d)
	}
}

// TestEvaluateDoesNotAllocate checks the hot path: once a set of reasons
// has been seen, a decision costs no allocation.
func TestEvaluateDoesNotAllocate(t *testing.T) {
	for _, n := range []int{1, 10, 100} {
		p := benchPolicy(t, n)
		for _, r := range benchRequests() {
			p.Evaluate(&r)
			if allocs := testing.AllocsPerRun(100, func() { p.Evaluate(&r) }); allocs != 0 {
				t.Errorf("%d rules, %s: %v allocations per Evaluate, want 0", n, r.Email, allocs)
			}
		}
	}
}

// TestConcurrentEvaluate runs decisions that see new reason sets from many
// goroutines (run with -race).
func TestConcurrentEvaluate(t *testing.T) {
	p := benchPolicy(t, 100)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				r := Request{
					Authenticated: (g+i)%3 != 0,
					Email:         fmt.Sprintf("user%d@example.com", i%120),
					Groups:        []string{fmt.Sprintf("team-%d", i%7)},
					Method:        []string{"GET", "POST", "DELETE"}[i%3],
					Kubernetes:    Kubernetes{Namespace: []string{"dev", "prod", "kube-system"}[(g+i)%3], Subresource: []string{"", "exec", "log"}[i%3]},
				}
				d := p.Evaluate(&r)
				if !slices.IsSorted(d.Reasons) || len(d.Reasons) == 0 {
					t.Errorf("reasons %q: want sorted and not empty", d.Reasons)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestReasonNamesAreComplete(t *testing.T) {
	seen := map[string]bool{}
	for r, name := range reasonNames {
		if name == "" || seen[name] {
			t.Errorf("reason %d: name %q empty or repeated", r, name)
		}
		seen[name] = true
	}
	for name, spec := range criteria {
		if reasonNames[spec.pass] == "" || reasonNames[spec.fail] == "" {
			t.Errorf("criterion %s: reasons missing", name)
		}
	}
	if reasonNames[rNoPolicy] != ReasonNoPolicy || reasonNames[rNoAllowRule] != ReasonNoAllowRule {
		t.Errorf("reasons out of line with their names")
	}
}

func TestNilPolicyDenies(t *testing.T) {
	var p *Policy
	if d := p.Evaluate(&Request{Authenticated: true}); d.Allow || !d.HasReason(ReasonNoPolicy) {
		t.Errorf("nil Policy: %+v, want denied with %s", d, ReasonNoPolicy)
	}
}

// TestNoNetHTTP guards the package's contract: it takes a plain Request
// and does not depend on net/http, directly or not.
func TestNoNetHTTP(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("skipping: no go command to list dependencies with: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for dep := range strings.SplitSeq(string(out), "\n") {
		if dep == "net/http" || strings.HasSuffix(dep, "/internal/kube") {
			t.Errorf("package policy depends on %s", dep)
		}
	}
}

// TestConnectionCriteria: the criteria that read the connection are
// named once each, in the order written, wherever they are nested.
func TestConnectionCriteria(t *testing.T) {
	for _, tt := range []struct {
		name, policy string
		want         []string
	}{
		{"none", `- allow: {or: [{email: alice@example.com}, {kubernetes_verb: get}]}`, nil},
		{"nested", `
- allow: {and: [{not: [{source_ip: 10.0.0.0/8}]}, {cors_preflight: true}]}
- deny: {or: [{client_certificate: {fingerprint: ` + strings.Repeat("a", 64) + `}}, {source_ip: 192.0.2.1}]}
`, []string{"source_ip", "cors_preflight", "client_certificate"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := compileText(t, "", tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.ConnectionCriteria()); diff != "" {
				t.Errorf("ConnectionCriteria (-want +got):\n%s", diff)
			}
		})
	}
}
