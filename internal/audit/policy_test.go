package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestPolicyLevel(t *testing.T) {
	p, err := LoadPolicy("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pods := func(verb, ns, name, sub string) Attributes {
		return Attributes{User: "alice@example.com", Groups: []string{"developers"}, Verb: verb,
			ResourceRequest: true, Resource: "pods", Namespace: ns, Name: name, Subresource: sub}
	}
	nonResource := func(verb, path string) Attributes {
		return Attributes{User: "alice@example.com", Verb: verb, Path: path}
	}
	tests := []struct {
		name       string
		attrs      Attributes
		wantLevel  Level
		wantStages []Stage
	}{
		{"nonResourceURLs prefix", nonResource("get", "/healthz/etcd"), LevelNone, []Stage{StageRequestReceived}},
		{"nonResourceURLs prefix matches the bare prefix", nonResource("get", "/healthz"), LevelNone, []Stage{StageRequestReceived}},
		{"nonResourceURLs exact", nonResource("get", "/version"), LevelNone, []Stage{StageRequestReceived}},
		{"nonResourceURLs exact is not a prefix", nonResource("get", "/versions"), LevelNone, []Stage{StageRequestReceived}},
		{"nonResourceURLs does not match a resource request", Attributes{Verb: "get", ResourceRequest: true, Resource: "metrics", Path: "/metrics"}, LevelNone, []Stage{StageRequestReceived}},
		{"later nonResourceURLs rule", nonResource("get", "/metrics"), LevelMetadata, []Stage{StageRequestReceived}},
		{"users and verbs both match", Attributes{User: "system:kube-proxy", Verb: "watch", ResourceRequest: true, Resource: "endpoints"}, LevelNone, []Stage{StageRequestReceived}},
		{"users match, verb does not", Attributes{User: "system:kube-proxy", Verb: "list", ResourceRequest: true, Resource: "endpoints", Namespace: "payments"}, LevelMetadata, []Stage{StageRequestReceived}},
		{"userGroups: any of the user's groups", Attributes{User: "bob@example.com", Groups: []string{"developers", "contractors"}, Verb: "get", Path: "/apis"}, LevelRequestResponse, []Stage{StageRequestReceived}},
		{"resources in the core group", Attributes{Verb: "get", ResourceRequest: true, Resource: "secrets", Namespace: "payments", Name: "db"}, LevelRequest, []Stage{StageRequestReceived}},
		{"core group does not match another group", Attributes{Verb: "get", ResourceRequest: true, APIGroup: "example.com", Resource: "secrets", Namespace: "dev"}, LevelNone, []Stage{StageRequestReceived}},
		{"resource/subresource", Attributes{Verb: "update", ResourceRequest: true, APIGroup: "apps", Resource: "deployments", Subresource: "scale", Namespace: "dev"}, LevelRequest, []Stage{StageRequestReceived}},
		{"resource alone does not match resource/subresource", Attributes{Verb: "update", ResourceRequest: true, APIGroup: "apps", Resource: "deployments", Namespace: "dev"}, LevelNone, []Stage{StageRequestReceived}},
		{"pods/exec, rule's omitStages joined with the policy's", pods("create", "payments", "web-0", "exec"), LevelRequest, []Stage{StageRequestReceived, StageResponseStarted}},
		{"*/subresource", Attributes{Verb: "create", ResourceRequest: true, Resource: "services", Subresource: "portforward", Namespace: "dev"}, LevelRequest, []Stage{StageRequestReceived, StageResponseStarted}},
		{"*/subresource needs a subresource", Attributes{Verb: "create", ResourceRequest: true, Resource: "portforward", Namespace: "dev"}, LevelNone, []Stage{StageRequestReceived}},
		{"group * and resource/*", Attributes{Verb: "get", ResourceRequest: true, Resource: "nodes", Subresource: "proxy", Name: "n1"}, LevelMetadata, []Stage{StageRequestReceived}},
		{"resource/* matches the resource itself", Attributes{Verb: "get", ResourceRequest: true, Resource: "nodes", Name: "n1"}, LevelMetadata, []Stage{StageRequestReceived}},
		{"resourceNames match", pods("delete", "dev", "break-glass", ""), LevelRequestResponse, []Stage{StageRequestReceived}},
		{"resourceNames do not match", pods("delete", "dev", "web-0", ""), LevelNone, []Stage{StageRequestReceived}},
		{"namespaces with verbs", pods("list", "kube-system", "", ""), LevelNone, []Stage{StageRequestReceived}},
		{"namespace \"\" matches cluster-scoped", Attributes{Verb: "get", ResourceRequest: true, Resource: "namespaces", Name: "dev"}, LevelNone, []Stage{StageRequestReceived}},
		{"group with no resources matches the group", Attributes{Verb: "delete", ResourceRequest: true, APIGroup: "rbac.authorization.k8s.io", Resource: "rolebindings", Namespace: "dev"}, LevelMetadata, []Stage{StageRequestReceived}},
		{"namespaces alone", pods("delete", "payments", "web-0", ""), LevelMetadata, []Stage{StageRequestReceived}},
		{"namespaces do not match a non-resource request", nonResource("get", "/apis/payments"), LevelNone, []Stage{StageRequestReceived}},
		{"no rule matches", pods("delete", "dev", "web-0", ""), LevelNone, []Stage{StageRequestReceived}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotLevel, gotStages := p.Level(tt.attrs)
			if gotLevel != tt.wantLevel {
				t.Errorf("level: got %q, want %q", gotLevel, tt.wantLevel)
			}
			if diff := cmp.Diff(tt.wantStages, gotStages, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("omitted stages (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultPolicy(t *testing.T) {
	for _, a := range []Attributes{{Verb: "get", Path: "/"}, {Verb: "delete", ResourceRequest: true, Resource: "pods", Namespace: "x"}} {
		if got, stages := DefaultPolicy().Level(a); got != LevelMetadata || len(stages) != 0 {
			t.Errorf("DefaultPolicy().Level(%+v): got %q %v, want Metadata and no stages", a, got, stages)
		}
	}
}

func TestParsePolicyErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"empty", "", []string{"p.yaml: empty audit policy"}},
		{"malformed", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  users: [a\n", []string{"p.yaml:", "malformed YAML"}},
		{"wrong apiVersion and kind, no rules", "apiVersion: audit.k8s.io/v1beta1\nkind: Pol\n",
			[]string{`p.yaml:1: apiVersion: got "audit.k8s.io/v1beta1", want "audit.k8s.io/v1"`, `p.yaml:2: kind: got "Pol"`, "p.yaml: rules: a policy needs at least one rule"}},
		{"every problem at once", `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [Sent]
rules:
- level: Verbose
- users: [a]
- level: None
  userz: [a]
- level: None
  nonResourceURLs: [healthz, "/a*b"]
  namespaces: [x]
- level: None
  resources:
  - group: apps/v1
  - group: ""
    resourceNames: [x]
- level: None
  verbs: get
`, []string{
			`p.yaml:3: omitStages[0]: "Sent" is not a stage`,
			`p.yaml:5: rules[0].level: "Verbose" is not a level`,
			`p.yaml:6: rules[1].level: required`,
			`p.yaml:8: unknown field "userz" in a rule`,
			`p.yaml:10: rules[3].nonResourceURLs[0]: "healthz" must begin with /`,
			`p.yaml:10: rules[3].nonResourceURLs[1]: "/a*b": a * may only be the last character`,
			`p.yaml:10: rules[3].nonResourceURLs: a rule cannot apply to both`,
			`p.yaml:14: rules[4].resources[0].group: "apps/v1" is not an API group`,
			`rules[4].resources[1].resourceNames: resourceNames need at least one resource`,
			`p.yaml:18: cannot unmarshal !!str`,
		}},
		{"second document", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None}]\n---\nrules: []\n", []string{"p.yaml:4: a second YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tt.yaml), "p.yaml")
			if err == nil {
				t.Fatalf("got policy %+v, want an error", p)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadPolicyTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, make([]byte, maxPolicySize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPolicy(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("got %v, want a too-large error", err)
	}
}

func FuzzParsePolicy(f *testing.F) {
	seed, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(seed))
	f.Add("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- &r {level: None}\n- *r\n")
	f.Add("a: &a [*a]\n")
	f.Add("rules: [{level: x, resources: [{group: '*', resources: ['*/']}]}]")
	f.Fuzz(func(t *testing.T, data string) {
		if len(data) > 64<<10 {
			t.Skip("larger than any policy worth fuzzing")
		}
		p, err := ParsePolicy([]byte(data), "fuzz.yaml")
		if (p == nil) == (err == nil) {
			t.Fatalf("got policy %v and error %v, want exactly one", p, err)
		}
		if p != nil {
			p.Level(Attributes{Verb: "get", ResourceRequest: true, Resource: "pods", Subresource: "log"})
			p.Level(Attributes{Verb: "get", Path: "/healthz"})
		}
	})
}
