package policy

import (
	"context"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// The benchmarks have the names of internal/policy's BenchmarkEvaluate
// (rules=N/request), so that run.sh can set them side by side. Each
// decision is checked against the first one, as there.

// BenchmarkEvaluate is a decision as Pomerium's authorize service makes
// it: the prepared query result = data.pomerium.policy, the input a Go
// value (OPA converts it on each Eval), and allow and deny read from the
// bindings.
func BenchmarkEvaluate(b *testing.B) {
	benchmarkOPA(b, pomeriumQuery, func(r *benchRequest) rego.EvalOption {
		return rego.EvalInput(r.input())
	})
}

// BenchmarkEvaluateLean is OPA at its cheapest with the same Rego: the
// input converted to a Rego value once, before timing, and a query for
// allow and deny only.
func BenchmarkEvaluateLean(b *testing.B) {
	benchmarkOPA(b, leanQuery, func(r *benchRequest) rego.EvalOption {
		v, err := ast.InterfaceToValue(r.input())
		if err != nil {
			b.Fatal(err)
		}
		return rego.EvalParsedInput(v)
	})
}

// BenchmarkEvaluateFloor is OPA's floor on this machine, for scale: the
// 1-rule policy's criterion as one line of hand-written Rego, no reasons,
// the input parsed beforehand, one boolean read back. No PPL policy of
// Pomerium's shape evaluates faster in OPA.
func BenchmarkEvaluateFloor(b *testing.B) {
	q, err := rego.New(
		rego.Module("floor.rego", "package floor\n\nallow if \"dev\" in input.groups\n"),
		rego.Query("allow = data.floor.allow"),
	).PrepareForEval(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	in, err := ast.InterfaceToValue(map[string]any{"groups": []any{"everyone", "dev"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("rules=1/dev-exec-allowed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rs, err := q.Eval(b.Context(), rego.EvalParsedInput(in))
			if err != nil || len(rs) != 1 || rs[0].Bindings["allow"] != true {
				b.Fatalf("got %v, %v; want allow", rs, err)
			}
		}
	})
}

func benchmarkOPA(b *testing.B, query string, input func(*benchRequest) rego.EvalOption) {
	doc, err := loadDecisions()
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 10, 100} {
		q, err := prepare(b.Context(), n, query)
		if err != nil {
			b.Fatal(err)
		}
		for i := range doc.Requests {
			r := &doc.Requests[i]
			b.Run(fmt.Sprintf("rules=%d/%s", n, r.Name), func(b *testing.B) {
				at, err := r.at()
				if err != nil {
					b.Fatal(err)
				}
				in := input(r)
				// A request without a time is decided at the time of
				// evaluation, OPA's default, as Portcullis decides it.
				opts := []rego.EvalOption{in}
				if !at.IsZero() {
					opts = append(opts, rego.EvalTime(at))
				}
				ctx := b.Context()
				want, err := evalDecision(ctx, q, opts)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					d, err := evalDecision(ctx, q, opts)
					if err != nil || d.Allow != want.Allow {
						b.Fatalf("decision changed: %v, %v", d, err)
					}
				}
			})
		}
	}
}

// evalDecision is one decision: Eval, then allow and deny read from the
// result, as Pomerium's PolicyEvaluator.evaluateQuery does.
func evalDecision(ctx context.Context, q rego.PreparedEvalQuery, opts []rego.EvalOption) (decision, error) {
	rs, err := q.Eval(ctx, opts...)
	if err != nil {
		return decision{}, err
	}
	return decide(rs)
}
