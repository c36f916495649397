package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"
)

// conformanceCase is one case of testdata/conformance/*.yaml: a route's
// policy and legacy keys, a request, and the decision, or the compile
// error, that must come of them.
type conformanceCase struct {
	Name string `yaml:"name"`
	// Doc cites where the expected behaviour comes from, when not obvious.
	Doc     string      `yaml:"doc"`
	Policy  yaml.Node   `yaml:"policy"`
	Route   yaml.Node   `yaml:"route"`
	Request testRequest `yaml:"request"`

	Allow   *bool    `yaml:"allow"`
	Reasons []string `yaml:"reasons"`
	// Rule is the Path of the deciding rule; "" for none.
	Rule string `yaml:"rule"`
	// Error is a part of a compile problem, "key: message", that one of
	// the problems must contain.
	Error string `yaml:"error"`
}

func loadConformance(t testing.TB) map[string][]conformanceCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "conformance", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance files: %v", err)
	}
	out := map[string][]conformanceCase{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cases []conformanceCase
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&cases); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = cases
	}
	return out
}

// TestConformance runs the policy specification in testdata/conformance:
// each case compiles a policy loaded through config.Load, as the server
// loads it, and evaluates one request.
func TestConformance(t *testing.T) {
	total := 0
	for file, cases := range loadConformance(t) {
		for i, tc := range cases {
			total++
			if tc.Name == "" {
				t.Errorf("%s: case %d has no name", file, i)
			}
			if (tc.Error == "") == (tc.Allow == nil) {
				t.Errorf("%s: %s: give allow (and reasons) or error", file, tc.Name)
				continue
			}
			t.Run(strings.TrimSuffix(file, ".yaml")+"/"+tc.Name, func(t *testing.T) {
				p, err := compileText(t, routeKeysText(t, &tc.Route), yamlText(t, &tc.Policy))
				if tc.Error != "" {
					got := problemKeys(err)
					for _, g := range got {
						if strings.Contains(g, tc.Error) {
							return
						}
					}
					t.Fatalf("Compile: got problems %q, want one containing %q", got, tc.Error)
				}
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				d := p.Evaluate(tc.Request.build(t))
				rule := ""
				if d.Rule != nil {
					rule = d.Rule.Path
				}
				got := struct {
					Allow   bool
					Reasons []string
					Rule    string
				}{d.Allow, d.Reasons, rule}
				want := got
				want.Allow, want.Reasons, want.Rule = *tc.Allow, tc.Reasons, tc.Rule
				if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("Evaluate (-want +got):\n%s", diff)
				}
			})
		}
	}
	if total < 120 {
		t.Errorf("%d conformance cases, want at least 120", total)
	}
}

// TestConformanceCoverage checks that the specification exercises every
// criterion, every matcher and every operator.
func TestConformanceCoverage(t *testing.T) {
	seen := map[string]bool{}
	var walk func(n *yaml.Node, parent string)
	walk = func(n *yaml.Node, parent string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				name, _, _ := strings.Cut(k, "/")
				seen[name] = true
				if _, isCrit := criteria[name]; isCrit {
					v := n.Content[i+1]
					if v.Kind == yaml.MappingNode {
						for j := 0; j < len(v.Content); j += 2 {
							seen[name+"."+v.Content[j].Value] = true
						}
					} else {
						seen[name+".bare"] = true
					}
				}
				walk(n.Content[i+1], k)
			}
		case yaml.SequenceNode, yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, parent)
			}
		}
	}
	for _, cases := range loadConformance(t) {
		for _, tc := range cases {
			walk(&tc.Policy, "")
			walk(&tc.Route, "")
		}
	}
	var want []string
	for name := range criteria {
		want = append(want, name)
	}
	want = append(want, "and", "or", "not", "nor", "allow", "deny",
		"allowed_users", "allowed_domains", "allow_any_authenticated_user", "allow_public_unauthenticated_access")
	for _, op := range strOpNames {
		want = append(want, "email."+op)
	}
	for _, op := range listOpNames {
		want = append(want, "groups."+op, "claim."+op)
	}
	want = append(want, "email.bare", "groups.bare", "claim.bare",
		"client_certificate.fingerprint", "client_certificate.spki_hash",
		"client_certificate.san_email", "client_certificate.san_dns", "client_certificate.san_uri",
		"time_of_day.timezone", "date.after", "date.before")
	for _, k := range []string{"kubernetes_verb", "kubernetes_resource", "kubernetes_subresource", "kubernetes_namespace", "kubernetes_name", "kubernetes_api_group", "http_method", "http_path", "domain", "user"} {
		want = append(want, k+".bare")
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("no conformance case uses %s", w)
		}
	}
}
