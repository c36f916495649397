// Package policy is the OPA baseline for Portcullis's policy benchmark: the
// policies of internal/policy's BenchmarkEvaluate, written as Rego the way
// Pomerium's PPL-to-Rego generator writes them, and evaluated with OPA's
// prepared queries, as Pomerium's authorize service evaluates them.
//
// It is a Go module of its own so that the product's go.mod never carries
// OPA; and, being another module, it cannot import internal/policy. So it
// owns:
//   - a copy of internal/policy's benchRule, as plain data (rules.go); it
//     must stay in step with the original, which
//     internal/policy/testdata/bench-decisions.json enforces: both modules'
//     tests hash their rules and compare the hash recorded there;
//   - a small generator from those rules to Rego in Pomerium's shape
//     (rego.go), kept readable in testdata/policy-10.rego;
//   - the OPA side of the benchmark (bench_test.go) and a test that OPA
//     decides each bench request as Portcullis does, reasons included
//     (decisions_test.go).
//
// It must not be imported by the product, and the product must not depend
// on it. run.sh runs both sides' benchmarks interleaved and prints the
// comparison; bench/RESULTS.md records it.
package policy
