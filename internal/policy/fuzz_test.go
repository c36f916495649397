package policy

import (
	"crypto/x509"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/kube"
)

// FuzzCompile compiles any YAML as a route's policy, two ways: through
// config.Load, as the server loads a policy, and as a tree built straight
// from the decoded YAML, which reaches shapes and values the loader never
// produces. Compiling must not panic; every error must be Problems naming
// the route; a policy that compiles must decide requests without
// panicking.
func FuzzCompile(f *testing.F) {
	for _, cases := range loadConformance(f) {
		for _, tc := range cases {
			if text := yamlText(f, &tc.Policy); text != "" {
				f.Add(text)
			}
		}
	}
	f.Add("- allow: {and: [{date: {after: !!timestamp 2025-01-01T00:00:00Z}}]}\n")
	f.Add("- allow: {or: [{email: {is: &a x}}, {email: {in: [*a, *a]}}]}\n")
	f.Add("allow:\n  or:\n    - claim/a.b/c: {has: 1, exclude: 2.5, is: true}\n")
	f.Add("- deny: {nor: [{and: [{or: [{not: [{source_ip: [\"::ffff:1.2.3.4/120\", fe80::1%eth0]}]}]}]}]}\n")

	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 4096 {
			return
		}
		// Through the config loader.
		file, err := os.CreateTemp(dir, "config-*.yaml")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(file.Name())
		var b strings.Builder
		b.WriteString(routeHeader + "    policy:\n")
		for line := range strings.SplitSeq(text, "\n") {
			b.WriteString("      " + line + "\n")
		}
		if _, err := file.WriteString(b.String()); err != nil {
			t.Fatal(err)
		}
		file.Close()
		if opts, err := config.Load(file.Name(), nil); err == nil {
			for i := range opts.Routes {
				checkCompile(t, &opts.Routes[i])
			}
		}

		// Straight from the decoded YAML.
		var v any
		if yaml.Unmarshal([]byte(text), &v) == nil {
			checkCompile(t, &config.Route{Policy: treeFrom(v)})
		}
	})
}

// checkCompile compiles route and, if that works, evaluates requests.
func checkCompile(t *testing.T, route *config.Route) {
	t.Helper()
	p, err := Compile(route)
	if err != nil {
		problems := config.Problems(err)
		if len(problems) == 0 {
			t.Fatalf("Compile error %v holds no Problem", err)
		}
		for _, pr := range problems {
			if !strings.HasPrefix(pr.Key, "route") || pr.Message == "" {
				t.Errorf("problem %+v: want a key naming the route and a message", pr)
			}
		}
		return
	}
	for _, r := range fuzzRequests() {
		checkDecision(t, p, p.Evaluate(&r))
	}
}

// treeFrom builds a policy tree from any decoded YAML, loosely: a mapping
// is a rule or an operator or a criterion by its keys, whatever they hold.
func treeFrom(v any) *config.Policy {
	var items []any
	switch v := v.(type) {
	case []any:
		items = v
	default:
		items = []any{v}
	}
	p := &config.Policy{}
	for _, item := range items {
		m, _ := item.(map[string]any)
		for _, action := range sortedKeys(m) {
			body, _ := m[action].(map[string]any)
			if len(body) == 0 {
				p.Rules = append(p.Rules, config.PolicyRule{Action: action, Root: exprFrom("", m[action], 0)})
			}
			for _, o := range sortedKeys(body) {
				p.Rules = append(p.Rules, config.PolicyRule{Action: action, Root: exprFrom(o, body[o], 0), Source: "fuzz:1"})
			}
		}
	}
	return p
}

func exprFrom(key string, v any, depth int) config.PolicyExpr {
	if _, isOp := ops[key]; !isOp || depth > 40 {
		return config.PolicyExpr{Criterion: key, Value: v}
	}
	e := config.PolicyExpr{Op: key}
	list, _ := v.([]any)
	for _, item := range list {
		m, _ := item.(map[string]any)
		if len(m) == 0 {
			e.Children = append(e.Children, config.PolicyExpr{Value: item})
		}
		for _, k := range sortedKeys(m) {
			e.Children = append(e.Children, exprFrom(k, m[k], depth+1))
		}
	}
	return e
}

// fuzzRequests are a few requests of every kind.
func fuzzRequests() []Request {
	rs := benchRequests()
	rs = append(rs,
		Request{Authenticated: true, Email: "alice@example.com", Groups: []string{"dev", "sre"},
			Claims: ClaimMap{"a/b/c": {"1"}, "family_name": {"Smith"}}, Method: "OPTIONS", CORSPreflight: true,
			SourceIP: netip.MustParseAddr("::ffff:1.2.3.4"), Time: time.Date(2025, 6, 7, 23, 59, 59, 0, time.UTC)},
		Request{Authenticated: true, SourceIP: netip.MustParseAddr("fe80::1%eth0")},
	)
	return rs
}

// checkDecision checks what every decision must be.
func checkDecision(t *testing.T, p *Policy, d Decision) {
	t.Helper()
	if len(d.Reasons) == 0 || !slices.IsSorted(d.Reasons) {
		t.Errorf("reasons %q: want sorted and not empty", d.Reasons)
	}
	switch {
	case d.Allow && (d.Rule == nil || d.Rule.Action != "allow"):
		t.Errorf("allowed by rule %+v: want an allow rule", d.Rule)
	case !d.Allow && d.Rule != nil && d.Rule.Action != "deny":
		t.Errorf("denied by rule %+v: want a deny rule", d.Rule)
	case d.Rule != nil && !slices.Contains(p.rules, d.Rule):
		t.Errorf("rule %+v is not one of the policy's", d.Rule)
	}
	if d.Message() == "" {
		t.Error("empty message")
	}
}

// FuzzEvaluate decides any request on a policy that uses every criterion
// and operator: it must never panic, and the decision must hang together.
func FuzzEvaluate(f *testing.F) {
	policyText, err := os.ReadFile(filepath.Join("testdata", "fuzz-policy.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	p, err := compileText(f, "allowed_users: [alice@example.com]\nallowed_domains: [example.org]\n", string(policyText))
	if err != nil {
		f.Fatal(err)
	}
	certs := []*x509.Certificate{nil, testCert(f, "alice"), testCert(f, "bob")}
	f.Add(true, "00u1", "alice@example.com", "dev,sre", "department=platform,roles=admin", "POST", "/api/v1/namespaces/prod/pods/web-0/exec", "command=sh", []byte{10, 0, 0, 1}, false, int64(1749031200), uint8(1))
	f.Add(false, "", "", "", "", "GET", "/api/v1/pods", "watch=1&fieldSelector=metadata.name%3Dx", []byte{}, true, int64(0), uint8(0))
	f.Add(true, "u", "a@b@c", ",,", "=,a/b=", "get", "//apis//", "%", []byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, true, int64(-1<<62), uint8(2))
	f.Fuzz(func(t *testing.T, authn bool, user, email, groups, claims, method, path, query string, ip []byte, cors bool, unix int64, cert uint8) {
		r := Request{
			Authenticated: authn, User: user, Email: email, Method: method, Path: path,
			CORSPreflight: cors, Time: time.Unix(0, unix),
		}
		if groups != "" {
			r.Groups = strings.Split(groups, ",")
		}
		if claims != "" {
			m := ClaimMap{}
			for kv := range strings.SplitSeq(claims, ",") {
				k, v, _ := strings.Cut(kv, "=")
				m[k] = append(m[k], v)
			}
			r.Claims = m
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			r.SourceIP = a
		} else if len(ip) >= 2 {
			r.SourceIP = netip.AddrFrom4([4]byte{ip[0], ip[1], byte(binary.Size(ip)), 0})
		}
		r.ClientCertificate = certs[int(cert)%len(certs)]
		ri, _ := kube.ParseRequestInfo(method, path, query)
		r.Kubernetes = Kubernetes{Verb: ri.Verb, APIGroup: ri.APIGroup, Resource: ri.Resource,
			Subresource: ri.Subresource, Namespace: ri.Namespace, Name: ri.Name}
		d := p.Evaluate(&r)
		checkDecision(t, p, d)
		if !authn && d.Allow && !d.HasReason(ReasonAccept) && !d.HasReason(ReasonUserUnauthenticated) {
			// Only accept, or a not over a criterion on the person, can let
			// an anonymous request in with this policy.
			t.Errorf("anonymous request allowed with reasons %q", d.Reasons)
		}
	})
}
