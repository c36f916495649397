package harness

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/bench/internal/contender"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testReport is a report with one row per scenario and contender.
func testReport() *Report {
	r := &Report{Commit: "0123456789abcdef", Date: "2026-11-27T12:00:00Z", Command: "make bench",
		Machine: Machine{CPUs: 2, CPUModel: "test CPU", MemoryGiB: 8, Kernel: "6.0", GoVersion: "go1.26"}, DurationS: 60}
	rps := map[string]float64{contender.Direct: 10000, contender.DirectMode: 9900, contender.Portcullis: 6000, contender.PortcullisPostgres: 5850,
		contender.PortcullisAudit: 5820, contender.Nginx: 8000, contender.OAuth2Proxy: 3000}
	for _, sc := range Scenarios {
		for _, c := range contendersOf(sc) {
			row := Row{Scenario: sc, Contender: c, RPS: rps[c], P50: 1e6 / rps[c], P99: 3e6 / rps[c], Extra: map[string]any{}}
			if c == contender.PortcullisPostgres && sc != ConnsPer1000 {
				row.Extra["store_db_reads_per_1000"] = 0.0
			}
			switch c {
			case contender.Portcullis:
				row.Extra["rounds_rps"] = []float64{6000, 6000, 6000}
			case contender.PortcullisAudit:
				// Paired with Portcullis's rounds: 0.94, 0.97, 1.05.
				row.Extra["rounds_rps"] = []float64{5640, 5820, 6300}
			}
			if c == contender.PortcullisAudit {
				row.Extra["audit_events_per_request"] = 1.0
				row.Extra["audit_bytes_per_event"] = 1100.0
			}
			switch sc {
			case Watch10k:
				row.RPS = 0
				row.Extra["lost"] = 0
				if c != contender.Direct {
					row.Extra["proxy_kib_per_stream"] = 60000 / rps[c]
				}
			case ExecMBps, PortForwardMBps:
				row.RPS, row.P50, row.P99 = 0, 0, 0
				row.Extra["mb_per_s"] = rps[c] / 50
			case ConnsPer1000:
				row.RPS, row.P50, row.P99 = 0, 0, 0
				for _, k := range []string{"per_1000_at_c1", "per_1000_at_c16", "per_1000_at_c64"} {
					row.Extra[k] = 0.0
				}
			case Startup:
				row.RPS, row.P99 = 0, 0
				row.Extra["ready_ms"] = 100000 / rps[c]
			}
			r.Rows = append(r.Rows, row)
		}
	}
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file (run go test -update and review the diff):\n%s", name, got)
	}
}

// results.json is a contract: {"commit", "rows": [{"scenario",
// "contender", "rps", "p50_us", "p99_us", "extra"}]} and the run's facts.
func TestResultsJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	if err := testReport().WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "results.golden.json", b)
	var doc struct {
		Commit string
		Rows   []map[string]json.RawMessage
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, sc := range Scenarios {
		want += len(contendersOf(sc))
	}
	if doc.Commit == "" || len(doc.Rows) != want {
		t.Fatalf("got commit %q and %d rows, want a commit and %d rows", doc.Commit, len(doc.Rows), want)
	}
	for _, k := range []string{"scenario", "contender", "rps", "p50_us", "p99_us", "extra"} {
		if _, ok := doc.Rows[0][k]; !ok {
			t.Errorf("row without %q: %v", k, doc.Rows[0])
		}
	}
}

func TestResultsMarkdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	if err := testReport().WriteMarkdown(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "RESULTS.golden.md", b)
	md := string(b)
	for _, want := range []string{
		"make bench", "commit `0123456789abcdef`",
		// 6000 / 10000 direct, 6000 / 8000 nginx, 6000 / 3000 oauth2-proxy.
		"| get-c16-stub: Portcullis ≥ 0.45× direct | 0.60× | yes |",
		"| get-c16-stub: Portcullis ≥ 0.7× nginx | 0.75× | yes |",
		"| get-c16-stub: Portcullis ≥ 1.5× oauth2-proxy | 2.00× | yes |",
		"| watch-10k: ≤ 20 KiB of proxy memory per stream | 10 KiB | yes |",
		// 5850 / 6000.
		"| get-c16-stub: Portcullis on PostgreSQL ≥ 0.95× Portcullis in memory | 0.97× | yes |",
		"| small GETs on PostgreSQL: no database read per request (reads per 1,000 requests, ≤ 1) | 0 | yes |",
		"| portcullis-postgres | 5850 |",
		// The rounds' ratios 5640/6000, 5820/6000, 6300/6000: their
		// median, 0.97, in each small GET the audit contender runs.
		"| get-c1-stub: auditing to a file on / off ≥ 0.95× (median of the rounds' ratios) | 0.97× | yes |",
		"| get-c16-stub: auditing to a file on / off ≥ 0.95× (median of the rounds' ratios) | 0.97× | yes |",
		"| get-c64-stub: auditing to a file on / off ≥ 0.95× (median of the rounds' ratios) | 0.97× | yes |",
		"| get-c16-apiserver: auditing to a file on / off ≥ 0.95× (median of the rounds' ratios) | 0.97× | yes |",
		"| small GETs with auditing: every request in the audit file (fewest events per request in a round, ≥ 1) | 1 | yes |",
		"| portcullis-audit | 5820 |",
		"- `portcullis-audit` is Portcullis writing its audit trail to a file",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q", want)
		}
	}
	for _, sc := range Scenarios {
		if !strings.Contains(md, "### "+sc+"\n") {
			t.Errorf("RESULTS.md has no section for %s", sc)
		}
	}
	// A variant runs only its scenarios, and is not listed as "not run"
	// in the others.
	for name, v := range variants {
		for _, sc := range Scenarios {
			_, after, _ := strings.Cut(md, "### "+sc+"\n")
			if end := strings.Index(after, "###"); end >= 0 {
				after = after[:end]
			}
			if got, want := strings.Contains(after, "| "+name+" |"), slices.Contains(v.scenarios, sc); got != want {
				t.Errorf("the %s section lists %s: %v, want %v", sc, name, got, want)
			}
		}
	}
}

// Each variant is the Portcullis contender of its name, in scenarios the
// harness has, and the audit one in every small GET on the stub.
func TestVariants(t *testing.T) {
	base := &contender.PortcullisContender{}
	for name, v := range variants {
		if got := variantOf(base, v).Name(); got != name {
			t.Errorf("variant %s configures a contender named %s", name, got)
		}
		if !slices.Contains(Contenders, name) {
			t.Errorf("variant %s is not in Contenders", name)
		}
		for _, sc := range v.scenarios {
			if !slices.Contains(Scenarios, sc) {
				t.Errorf("variant %s runs in %q, which is no scenario", name, sc)
			}
		}
	}
	for _, sc := range []string{GetC1Stub, GetC16Stub, GetC64Stub} {
		if !slices.Contains(contendersOf(sc), contender.PortcullisAudit) {
			t.Errorf("%s does not run %s", sc, contender.PortcullisAudit)
		}
	}
	if slices.Contains(contendersOf(Watch10k), contender.PortcullisAudit) {
		t.Errorf("%s runs %s", Watch10k, contender.PortcullisAudit)
	}
}

// RESULTS.md written again from results.json ("bench render") is the one
// the run wrote.
func TestRenderFromJSON(t *testing.T) {
	dir := t.TempDir()
	rep := testReport()
	rep.Rows[0].Extra["rounds_rps"] = []float64{1000.123, 999.987}
	if err := rep.WriteJSON(filepath.Join(dir, "results.json")); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteMarkdown(filepath.Join(dir, "want.md")); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := back.WriteMarkdown(filepath.Join(dir, "got.md")); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(dir, "want.md"))
	got, _ := os.ReadFile(filepath.Join(dir, "got.md"))
	if string(got) != string(want) {
		t.Errorf("rendered from results.json:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(string(got), "rounds_rps [1000.1,1000]") {
		t.Error("rounds are not rounded to one decimal in the table")
	}
}
