package policy

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"
)

var update = flag.Bool("update", false, "rewrite testdata/policy-10.rego")

// TestRulesInStep checks that benchRule is still a copy of
// internal/policy's: both hash their first 100 rules, and internal/policy
// records its hash in the decisions file.
func TestRulesInStep(t *testing.T) {
	doc, err := loadDecisions()
	if err != nil {
		t.Fatal(err)
	}
	got, err := rulesSHA256(100)
	if err != nil {
		t.Fatal(err)
	}
	if got != doc.RulesSHA256 {
		t.Errorf("benchRule(0…99) hashes to %s, %s records %s for internal/policy's: make rules.go's benchRule a copy of it again",
			got, decisionsFile, doc.RulesSHA256)
	}
}

// TestDecisions checks that OPA, with either query, decides each bench
// request as Portcullis does (recorded in the decisions file), with the
// same reasons.
func TestDecisions(t *testing.T) {
	doc, err := loadDecisions()
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Decisions) == 0 {
		t.Fatalf("%s has no decisions", decisionsFile)
	}
	requests := map[string]*benchRequest{}
	for i := range doc.Requests {
		requests[doc.Requests[i].Name] = &doc.Requests[i]
	}
	for _, query := range []string{pomeriumQuery, leanQuery} {
		prepared := map[int]rego.PreparedEvalQuery{}
		for _, tc := range doc.Decisions {
			t.Run(fmt.Sprintf("%s/rules=%d/%s", queryName(query), tc.Rules, tc.Request), func(t *testing.T) {
				r, ok := requests[tc.Request]
				if !ok {
					t.Fatalf("no request %q in %s", tc.Request, decisionsFile)
				}
				q, ok := prepared[tc.Rules]
				if !ok {
					var err error
					if q, err = prepare(t.Context(), tc.Rules, query); err != nil {
						t.Fatal(err)
					}
					prepared[tc.Rules] = q
				}
				at, err := r.at()
				if err != nil {
					t.Fatal(err)
				}
				if at.IsZero() {
					at = doc.DecidedAt
				}
				rs, err := q.Eval(t.Context(), rego.EvalInput(r.input()), rego.EvalTime(at))
				if err != nil {
					t.Fatal(err)
				}
				got, err := decide(rs)
				if err != nil {
					t.Fatal(err)
				}
				if got.Allow != tc.Allow || !slices.Equal(got.Reasons, tc.Reasons) {
					t.Errorf("OPA decided allow=%v %q, Portcullis allow=%v %q", got.Allow, got.Reasons, tc.Allow, tc.Reasons)
				}
			})
		}
	}
}

// TestDecisionsAtNight checks the time_of_day rule: at 23:00 in Berlin the
// on-call rule fails, so the anonymous request's reasons gain
// time-of-day-unauthorized. Portcullis's conformance tests cover its
// side.
func TestDecisionsAtNight(t *testing.T) {
	doc, err := loadDecisions()
	if err != nil {
		t.Fatal(err)
	}
	q, err := prepare(t.Context(), 10, leanQuery)
	if err != nil {
		t.Fatal(err)
	}
	anon := doc.Requests[len(doc.Requests)-1]
	night := time.Date(2025, 6, 4, 21, 0, 0, 0, time.UTC) // 23:00 CEST
	rs, err := q.Eval(t.Context(), rego.EvalInput(anon.input()), rego.EvalTime(night))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decide(rs)
	if err != nil {
		t.Fatal(err)
	}
	if got.Allow || !slices.Contains(got.Reasons, "time-of-day-unauthorized") {
		t.Errorf("%s at 23:00 Berlin: got allow=%v %q, want a refusal with time-of-day-unauthorized", anon.Name, got.Allow, got.Reasons)
	}
}

func queryName(q string) string {
	if q == pomeriumQuery {
		return "pomerium-query"
	}
	return "lean-query"
}

// TestRegoGolden keeps testdata/policy-10.rego, the 10-rule policy as
// Rego, for reading and review: go test -run TestRegoGolden -update.
func TestRegoGolden(t *testing.T) {
	got, err := regoModule(benchRules(10))
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/policy-10.rego"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("the generated Rego differs from %s: rerun with -update and review the diff", golden)
	}
}
