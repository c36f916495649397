package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

// The OPA baseline (bench/policy, a Go module of its own so that this
// module's go.mod never carries OPA) cannot import this package. It writes
// benchRule's policies again, as Rego, and evaluates the bench requests
// with OPA. testdata/bench-decisions.json is what keeps the two in step;
// this test checks it against this package, bench/policy's TestRulesInStep
// and TestDecisions against that module:
//
//   - rules_sha256 is the SHA-256 of benchRule(0…99) encoded as JSON:
//     bench/policy encodes its copy of the rules the same way, so a change
//     to benchRule that is not made there too fails both tests;
//   - requests are benchRequests() as JSON: bench/policy builds its OPA
//     input documents from them;
//   - decisions are what Evaluate decides on each request with 1, 10 and
//     100 rules: OPA must decide the same, with the same reasons.
//
// After changing benchRule or benchRequests, change bench/policy's rules
// to match, then rewrite the file:
//
//	go test ./internal/policy -run TestBenchDecisions -update-bench-decisions
var updateBenchDecisions = flag.Bool("update-bench-decisions", false,
	"rewrite testdata/bench-decisions.json from benchRule, benchRequests and Evaluate")

const benchDecisionsFile = "testdata/bench-decisions.json"

// benchRequestNames name benchRequests() in order, as BenchmarkEvaluate
// does.
var benchRequestNames = []string{"dev-exec-allowed", "prod-exec-denied", "anonymous-denied"}

// benchRuleCount is the number of rules of the largest bench policy.
const benchRuleCount = 100

// benchDecidedAt is the time a request without one is decided at in this
// test. BenchmarkEvaluate decides the anonymous request, which has no
// time, at the wall clock: its reasons, never its decision, then depend
// on the hour (the 10-rule policy has a time_of_day rule).
var benchDecidedAt = time.Date(2025, 6, 4, 10, 0, 0, 0, time.UTC)

type benchDecisionsDoc struct {
	Comment     string              `json:"comment"`
	RulesSHA256 string              `json:"rules_sha256"`
	DecidedAt   time.Time           `json:"decided_at"`
	Requests    []benchRequestDoc   `json:"requests"`
	Decisions   []benchDecisionCase `json:"decisions"`
}

// benchRequestDoc is a Request as JSON; bench/policy reads the same
// fields.
type benchRequestDoc struct {
	Name          string              `json:"name"`
	Authenticated bool                `json:"authenticated"`
	User          string              `json:"user,omitempty"`
	Email         string              `json:"email,omitempty"`
	Groups        []string            `json:"groups,omitempty"`
	Claims        map[string][]string `json:"claims,omitempty"`
	Method        string              `json:"method"`
	Path          string              `json:"path"`
	SourceIP      string              `json:"source_ip"`
	// Time is empty for a request decided at the time it is evaluated.
	Time       string       `json:"time,omitempty"`
	Kubernetes benchKubeDoc `json:"kubernetes"`
}

type benchKubeDoc struct {
	Verb        string `json:"verb"`
	APIGroup    string `json:"api_group"`
	Resource    string `json:"resource"`
	Subresource string `json:"subresource"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
}

type benchDecisionCase struct {
	Rules   int      `json:"rules"`
	Request string   `json:"request"`
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
}

// TestBenchDecisions checks testdata/bench-decisions.json against
// benchRule, benchRequests and Evaluate; see updateBenchDecisions.
func TestBenchDecisions(t *testing.T) {
	want := makeBenchDecisions(t)
	if *updateBenchDecisions {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(want); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.FromSlash(benchDecisionsFile), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", benchDecisionsFile)
		return
	}

	data, err := os.ReadFile(filepath.FromSlash(benchDecisionsFile))
	if err != nil {
		t.Fatal(err)
	}
	var got benchDecisionsDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("reading %s: %v", benchDecisionsFile, err)
	}
	if got.RulesSHA256 != want.RulesSHA256 {
		t.Errorf("%s: rules_sha256 %s, but benchRule(0…%d) hashes to %s: change bench/policy's rules as benchRule changed, then rerun with -update-bench-decisions",
			benchDecisionsFile, got.RulesSHA256, benchRuleCount-1, want.RulesSHA256)
	}
	if !got.DecidedAt.Equal(want.DecidedAt) {
		t.Errorf("%s: decided_at %v, want %v", benchDecisionsFile, got.DecidedAt, want.DecidedAt)
	}
	if diff := cmp.Diff(want.Requests, got.Requests, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s: requests differ from benchRequests() (-want +got):\n%s", benchDecisionsFile, diff)
	}
	// The requests as read back must be benchRequests(), or bench/policy
	// would build its input from something else.
	for i, doc := range got.Requests {
		r, err := doc.request()
		if err != nil {
			t.Errorf("%s: request %q: %v", benchDecisionsFile, doc.Name, err)
			continue
		}
		if i < len(benchRequests()) {
			if diff := cmp.Diff(benchRequests()[i], r, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: request %q read back differs from benchRequests()[%d] (-want +got):\n%s", benchDecisionsFile, doc.Name, i, diff)
			}
		}
	}
	if diff := cmp.Diff(want.Decisions, got.Decisions, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s: decisions differ from Evaluate's (-want +got):\n%s", benchDecisionsFile, diff)
	}
}

// makeBenchDecisions builds the file's content from benchRule,
// benchRequests and Evaluate.
func makeBenchDecisions(t *testing.T) benchDecisionsDoc {
	t.Helper()
	rules := make([]config.PolicyRule, benchRuleCount)
	for i := range rules {
		rules[i] = benchRule(i)
	}
	raw, err := json.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)

	doc := benchDecisionsDoc{
		Comment: "Written by go test ./internal/policy -run TestBenchDecisions -update-bench-decisions; " +
			"read by bench/policy's TestDecisions, which checks that OPA decides the same. See internal/policy/bench_decisions_test.go.",
		RulesSHA256: hex.EncodeToString(sum[:]),
		DecidedAt:   benchDecidedAt,
	}
	reqs := benchRequests()
	if len(reqs) != len(benchRequestNames) {
		t.Fatalf("benchRequests() has %d requests, benchRequestNames %d names", len(reqs), len(benchRequestNames))
	}
	for i, r := range reqs {
		doc.Requests = append(doc.Requests, benchRequestJSON(benchRequestNames[i], r))
	}
	for _, n := range []int{1, 10, 100} {
		p := benchPolicy(t, n)
		for i, r := range reqs {
			if r.Time.IsZero() {
				r.Time = benchDecidedAt
			}
			d := p.Evaluate(&r)
			doc.Decisions = append(doc.Decisions, benchDecisionCase{
				Rules: n, Request: benchRequestNames[i], Allow: d.Allow, Reasons: d.Reasons,
			})
		}
	}
	return doc
}

func benchRequestJSON(name string, r Request) benchRequestDoc {
	doc := benchRequestDoc{
		Name:          name,
		Authenticated: r.Authenticated,
		User:          r.User,
		Email:         r.Email,
		Groups:        r.Groups,
		Method:        r.Method,
		Path:          r.Path,
		SourceIP:      r.SourceIP.String(),
		Kubernetes: benchKubeDoc{
			Verb:        r.Kubernetes.Verb,
			APIGroup:    r.Kubernetes.APIGroup,
			Resource:    r.Kubernetes.Resource,
			Subresource: r.Kubernetes.Subresource,
			Namespace:   r.Kubernetes.Namespace,
			Name:        r.Kubernetes.Name,
		},
	}
	if m, ok := r.Claims.(ClaimMap); ok {
		doc.Claims = m
	}
	if !r.Time.IsZero() {
		doc.Time = r.Time.Format(time.RFC3339Nano)
	}
	return doc
}

func (doc benchRequestDoc) request() (Request, error) {
	r := Request{
		Authenticated: doc.Authenticated,
		User:          doc.User,
		Email:         doc.Email,
		Groups:        doc.Groups,
		Method:        doc.Method,
		Path:          doc.Path,
		Kubernetes: Kubernetes{
			Verb:        doc.Kubernetes.Verb,
			APIGroup:    doc.Kubernetes.APIGroup,
			Resource:    doc.Kubernetes.Resource,
			Subresource: doc.Kubernetes.Subresource,
			Namespace:   doc.Kubernetes.Namespace,
			Name:        doc.Kubernetes.Name,
		},
	}
	if doc.Claims != nil {
		r.Claims = ClaimMap(doc.Claims)
	}
	var err error
	if r.SourceIP, err = netip.ParseAddr(doc.SourceIP); err != nil {
		return Request{}, err
	}
	if doc.Time != "" {
		if r.Time, err = time.Parse(time.RFC3339Nano, doc.Time); err != nil {
			return Request{}, err
		}
	}
	return r, nil
}
