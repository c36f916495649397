package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/bench/internal/contender"
)

// Report is a run's results with what is needed to read and rerun them:
// the command, the commit and the machine.
type Report struct {
	Commit    string   `json:"commit"`
	Dirty     bool     `json:"dirty,omitempty"`
	Date      string   `json:"date"`
	Command   string   `json:"command"`
	Short     bool     `json:"short"`
	Machine   Machine  `json:"machine"`
	DurationS float64  `json:"duration_s"`
	Rows      []Row    `json:"rows"`
	Problems  []string `json:"problems,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int     `json:"cpus"`
	CPUModel  string  `json:"cpu_model"`
	MemoryGiB float64 `json:"memory_gib"`
	Kernel    string  `json:"kernel"`
	GoVersion string  `json:"go_version"`
	// LoadBefore and LoadAfter are the 1-minute load averages around the
	// run: other work on the machine shows up here.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
}

// NewReport starts a report: commit, machine, load before the run.
func NewReport(command string, short bool) *Report {
	r := &Report{Command: command, Short: short, Date: time.Now().UTC().Format(time.RFC3339)}
	if root, err := contender.RepoRoot(); err == nil {
		if out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err == nil {
			r.Commit = strings.TrimSpace(string(out))
		}
		if out, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
			r.Dirty = len(bytes.TrimSpace(out)) > 0
		}
	}
	r.Machine = Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadBefore: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				r.Machine.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%g", &kb)
		r.Machine.MemoryGiB = math.Round(kb/(1<<20)*10) / 10
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Machine.Kernel = strings.TrimSpace(string(b))
	}
	return r
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}

// Finish adds the rows and the run's problems.
func (r *Report) Finish(rows []Row, runErr error, d time.Duration) {
	r.Rows = rows
	r.DurationS = math.Round(d.Seconds())
	r.Machine.LoadAfter = loadAvg()
	if runErr != nil {
		r.Problems = strings.Split(runErr.Error(), "\n")
	}
}

// WriteJSON writes results.json.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func (r *Report) row(scenario, name string) (Row, bool) {
	for _, row := range r.Rows {
		if row.Scenario == scenario && row.Contender == name {
			return row, true
		}
	}
	return Row{}, false
}

// num reads a number from a row's extra fields.
func num(row Row, key string) (float64, bool) {
	switch v := row.Extra[key].(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	}
	return 0, false
}

// rounds returns a row's requests per second round by round, in round
// order, as the run recorded them or as results.json gives them back.
func rounds(row Row) []float64 {
	switch v := row.Extra["rounds_rps"].(type) {
	case []float64:
		return v
	case []any:
		out := make([]float64, 0, len(v))
		for _, x := range v {
			f, ok := x.(float64)
			if !ok {
				return nil
			}
			out = append(out, f)
		}
		return out
	}
	return nil
}

// pairedRatio is the median over rounds of a's requests per second over
// b's in the same round. The contenders of a round run within a minute of
// each other, so a round the machine ran slow for everyone cancels out,
// where the ratio of the two medians can pair a fast round of one with a
// slow round of the other.
func pairedRatio(a, b Row) (float64, bool) {
	ra, rb := rounds(a), rounds(b)
	if len(ra) == 0 || len(ra) != len(rb) {
		return 0, false
	}
	ratios := make([]float64, 0, len(ra))
	for i := range ra {
		if rb[i] <= 0 {
			return 0, false
		}
		ratios = append(ratios, ra[i]/rb[i])
	}
	slices.Sort(ratios)
	n := len(ratios)
	if n%2 == 1 {
		return ratios[n/2], true
	}
	return (ratios[n/2-1] + ratios[n/2]) / 2, true
}

// metric is the figure a scenario is judged by.
type metric struct {
	label  string
	higher bool // whether more is better
	get    func(Row) (float64, bool)
}

func metricOf(scenario string) metric {
	rps := metric{"req/s", true, func(r Row) (float64, bool) { return r.RPS, r.RPS > 0 }}
	switch scenario {
	case Watch10k:
		return metric{"KiB per stream", false, func(r Row) (float64, bool) { return num(r, "proxy_kib_per_stream") }}
	case ExecMBps, PortForwardMBps:
		return metric{"MB/s", true, func(r Row) (float64, bool) { return num(r, "mb_per_s") }}
	case ConnsPer1000:
		return metric{"new conns per 1,000 (c64)", false, func(r Row) (float64, bool) { return num(r, "per_1000_at_c64") }}
	case Startup:
		return metric{"ms to first served request", false, func(r Row) (float64, bool) { return num(r, "ready_ms") }}
	}
	return rps
}

// WriteMarkdown writes RESULTS.md: how it was made, the targets, then a
// table per scenario with ratios to direct and Portcullis against each peer.
func (r *Report) WriteMarkdown(path string) error {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Benchmark results: Portcullis, direct access, nginx and oauth2-proxy\n\n")
	w("Written by the harness in `bench/` (see [README.md](README.md)); the same numbers are in\n")
	w("[`results.json`](results.json). Every scenario ran against every contender in this one run,\n")
	w("interleaved round by round. Ratios are what count: absolute numbers depend on the machine,\n")
	w("and on this one the load generator, the upstream and the proxy share the same cores.\n")
	w("What the numbers mean, the profiles, and what was changed because of them:\n")
	w("[`ANALYSIS.md`](ANALYSIS.md). Per-request micro-benchmarks and the policy engine against\n")
	w("OPA: [`MICRO.md`](MICRO.md).\n\n")
	for _, name := range Contenders {
		if v, ok := variants[name]; ok {
			w("- `%s` is %s.\n", name, v.about)
		}
	}
	w("\nEach of these runs Portcullis's own build; its \"Portcullis vs this\" is the plain Portcullis's\n")
	w("figure over its own.\n\n")
	if r.Short {
		w("**This is a short (smoke-test) run: small counts, one round. Do not read the numbers as results.**\n\n")
	}
	w("## Command\n\n```sh\n%s\n```\n\n", r.Command)
	dirty := ""
	if r.Dirty {
		dirty = " (with uncommitted changes)"
	}
	w("## Machine\n\n")
	w("- %d CPUs, %s, %.1f GiB RAM, Linux %s\n", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemoryGiB, r.Machine.Kernel)
	w("- %s; commit `%s`%s\n", r.Machine.GoVersion, r.Commit, dirty)
	w("- %s, %v s; 1-minute load average %.2f before, %.2f after\n\n", r.Date, r.DurationS, r.Machine.LoadBefore, r.Machine.LoadAfter)
	if len(r.Problems) > 0 {
		w("## Problems in this run\n\n")
		for _, p := range r.Problems {
			if strings.TrimSpace(p) != "" {
				w("- %s\n", p)
			}
		}
		w("\n")
	}
	r.writeTargets(w)
	w("## Results\n\n")
	for _, sc := range Scenarios {
		r.writeScenario(w, sc)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// ratio is a/b, or NaN.
func ratio(a, b float64, okA, okB bool) float64 {
	if !okA || !okB || b == 0 {
		return math.NaN()
	}
	return a / b
}

func fmtRatio(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", f)
}

func fmtNum(f float64, ok bool) string {
	if !ok {
		return "—"
	}
	switch {
	case f == math.Trunc(f) || f >= 100:
		return strconv.FormatFloat(math.Round(f), 'f', -1, 64)
	case f >= 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

func (r *Report) writeScenario(w func(string, ...any), sc string) {
	m := metricOf(sc)
	w("### %s\n\n%s\n\n", sc, scenarioText[sc])
	w("| contender | %s | p50 µs | p99 µs | × direct | Portcullis vs this | details |\n|---|---:|---:|---:|---:|---:|---|\n", m.label)
	direct, _ := r.row(sc, contender.Direct)
	dv, dok := m.get(direct)
	pc, _ := r.row(sc, contender.Portcullis)
	pv, pok := m.get(pc)
	for _, name := range contendersOf(sc) {
		row, ok := r.row(sc, name)
		if !ok {
			w("| %s | not run | | | | | |\n", name)
			continue
		}
		v, vok := m.get(row)
		toDirect, vsThis := ratio(v, dv, vok, dok), ratio(pv, v, pok, vok)
		if !m.higher { // lower is better: say how many times better Portcullis is
			vsThis = ratio(v, pv, vok, pok)
		}
		if name == contender.Direct {
			toDirect = math.NaN()
		}
		if name == contender.Portcullis {
			vsThis = math.NaN()
		}
		w("| %s | %s | %s | %s | %s | %s | %s |\n", name, fmtNum(v, vok), fmtNum(row.P50, row.P50 > 0), fmtNum(row.P99, row.P99 > 0),
			fmtRatio(toDirect), fmtRatio(vsThis), details(row))
	}
	w("\n")
}

// details lists a row's extra fields, short.
func details(row Row) string {
	keys := make([]string, 0, len(row.Extra))
	for k := range row.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		v := row.Extra[k]
		if k == "what" || k == "error" {
			continue
		}
		b, _ := json.Marshal(compact(v))
		parts = append(parts, fmt.Sprintf("%s %s", k, strings.ReplaceAll(string(b), "|", "\\|")))
	}
	if e, ok := row.Extra["error"].(string); ok {
		parts = append([]string{"**error:** " + strings.ReplaceAll(e, "|", "\\|")}, parts...)
	}
	return strings.Join(parts, "; ")
}

// compact rounds the numbers of an extra field to one decimal for the
// table; results.json keeps them whole. Fields read back from JSON hold
// []any, not []float64.
func compact(v any) any {
	switch v := v.(type) {
	case float64:
		return round1(v)
	case []float64:
		out := make([]float64, len(v))
		for i, f := range v {
			out[i] = round1(f)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = compact(e)
		}
		return out
	}
	return v
}

// ReadReport reads a results.json back, to write its RESULTS.md again.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &r, nil
}

var scenarioText = map[string]string{
	GetC1Stub:       "GET of one ConfigMap (about 1 KB of JSON) from the stub upstream, one request at a time: latency added per request.",
	GetC16Stub:      "The same GET from 16 concurrent clients on one HTTP/2 connection, like kubectl or an informer: throughput.",
	GetC64Stub:      "The same GET from 64 concurrent clients.",
	GetC16APIServer: "GET of one ConfigMap from the real kube-apiserver, 16 concurrent clients: what users feel.",
	List1000:        "LIST of 1,000 ConfigMaps from kube-apiserver, one at a time: bytes through and latency.",
	Watch10k:        "Idle watch streams held open through the proxy, then one event sent on every stream: the proxy's memory per stream (PSS after minus before, divided by streams), its goroutines, and the event's delivery latency (p50/p99). Every stream must get the event.",
	ExecMBps:        "`kubectl exec pod -- head -c N /dev/zero` on a kwok pod through kube-apiserver: MB/s of stdout from the first byte to the last.",
	PortForwardMBps: "`kubectl port-forward` to a kwok pod whose port reaches a byte source: MB/s from the first byte to the last.",
	ConnsPer1000:    "New TCP+TLS connections the stub upstream accepted per 1,000 requests after warm-up, from the small-GET runs (connection reuse).",
	Startup:         "Start of the proxy process to its first served request (p50 column, µs), then its memory when idle and its binary's size.",
}

// writeTargets checks the stretch targets of the benchmark issue against
// this run: a table of target, measured value and whether it was met.
func (r *Report) writeTargets(w func(string, ...any)) {
	type target struct {
		what  string
		value float64
		ok    bool
		met   func(float64) bool
		unit  string
	}
	rps := func(sc, name string) (float64, bool) {
		row, ok := r.row(sc, name)
		return row.RPS, ok && row.RPS > 0
	}
	extra := func(sc, name, key string) (float64, bool) {
		row, ok := r.row(sc, name)
		if !ok {
			return 0, false
		}
		return num(row, key)
	}
	div := func(a float64, okA bool, b float64, okB bool) (float64, bool) {
		if !okA || !okB || b == 0 {
			return 0, false
		}
		return a / b, true
	}
	var ts []target
	add := func(what string, v float64, ok bool, unit string, met func(float64) bool) {
		ts = append(ts, target{what, v, ok, met, unit})
	}
	at := func(min float64) func(float64) bool { return func(v float64) bool { return v >= min } }
	atMost := func(max float64) func(float64) bool { return func(v float64) bool { return v <= max } }

	p, pok := rps(GetC16Stub, contender.Portcullis)
	for _, t := range []struct {
		peer string
		min  float64
	}{{contender.Direct, 0.45}, {contender.Nginx, 0.7}, {contender.OAuth2Proxy, 1.5}} {
		o, ook := rps(GetC16Stub, t.peer)
		v, ok := div(p, pok, o, ook)
		add(fmt.Sprintf("get-c16-stub: Portcullis ≥ %g× %s", t.min, t.peer), v, ok, "×", at(t.min))
	}
	// CPU per request: the proxy's CPU share over its request rate.
	pc, pcok := extra(GetC16Stub, contender.Portcullis, "proxy_cpu_pct")
	v, ok := div(pc*1e4, pcok, p, pok) // percent of a core → µs per request
	add("get-c16-stub: Portcullis's CPU per request ≤ 100 µs", v, ok, "µs", atMost(100))
	pr, prok := r.row(GetC1Stub, contender.Portcullis)
	dr, drok := r.row(GetC1Stub, contender.Direct)
	add("get-c1-stub: p50 added over direct ≤ 250 µs", pr.P50-dr.P50, prok && drok && pr.P50 > 0 && dr.P50 > 0, "µs", atMost(250))
	a, aok := rps(GetC16APIServer, contender.Portcullis)
	d, dok := rps(GetC16APIServer, contender.Direct)
	v, ok = div(a, aok, d, dok)
	add("get-c16-apiserver: Portcullis ≥ 0.9× direct", v, ok, "×", at(0.9))
	m, mok := rps(GetC16APIServer, contender.DirectMode)
	v, ok = div(m, mok, d, dok)
	add("get-c16-apiserver: direct mode ≥ 0.95× direct", v, ok, "×", at(0.95))
	for _, k := range []string{"per_1000_at_c1", "per_1000_at_c16", "per_1000_at_c64"} {
		v, ok := extra(ConnsPer1000, contender.Portcullis, k)
		add("conns-per-1000: ≤ 1 new upstream connection per 1,000 requests ("+strings.TrimPrefix(k, "per_1000_at_")+")", v, ok, "", atMost(1))
	}
	v, ok = extra(Watch10k, contender.Portcullis, "proxy_kib_per_stream")
	add("watch-10k: ≤ 20 KiB of proxy memory per stream", v, ok, "KiB", atMost(20))
	v, ok = extra(Watch10k, contender.Portcullis, "lost")
	add("watch-10k: zero lost events", v, ok, "lost", atMost(0))
	for _, sc := range []string{ExecMBps, PortForwardMBps} {
		a, aok := extra(sc, contender.Portcullis, "mb_per_s")
		d, dok := extra(sc, contender.Direct, "mb_per_s")
		v, ok := div(a, aok, d, dok)
		add(sc+": Portcullis ≥ 0.9× direct throughput", v, ok, "×", at(0.9))
	}
	// The session store's promise: no database round trip on the hot
	// path, so the sessions' place does not change the small GET.
	reads, readsOK := 0.0, false
	for _, sc := range []string{GetC1Stub, GetC16Stub, GetC64Stub} {
		a, aok := rps(sc, contender.PortcullisPostgres)
		m, mok := rps(sc, contender.Portcullis)
		v, ok := div(a, aok, m, mok)
		add(sc+": Portcullis on PostgreSQL ≥ 0.95× Portcullis in memory", v, ok, "×", at(0.95))
		if v, ok := extra(sc, contender.PortcullisPostgres, "store_db_reads_per_1000"); ok {
			reads, readsOK = max(reads, v), true
		}
	}
	// A replica reads a session once to cache it, then never again until
	// it changes: a read per 1,000 requests is a cache fill, not a
	// read per request.
	add("small GETs on PostgreSQL: no database read per request (reads per 1,000 requests, ≤ 1)", reads, readsOK, "", atMost(1))
	// The audit trail's promise: its writing never makes a request wait
	// (docs/audit.md), so an event per request costs the small GET little.
	perRequest, perRequestOK := 0.0, false
	for _, sc := range variants[contender.PortcullisAudit].scenarios {
		a, aok := r.row(sc, contender.PortcullisAudit)
		m, mok := r.row(sc, contender.Portcullis)
		v, ok := pairedRatio(a, m)
		add(sc+": auditing to a file on / off ≥ 0.95× (median of the rounds' ratios)", v, ok && aok && mok, "×", at(0.95))
		if v, ok := extra(sc, contender.PortcullisAudit, "audit_events_per_request"); ok {
			if !perRequestOK || v < perRequest {
				perRequest = v
			}
			perRequestOK = true
		}
	}
	// An audit trail that drops events under load would look cheap: the
	// file must hold an event for every request of every round.
	add("small GETs with auditing: every request in the audit file (fewest events per request in a round, ≥ 1)", perRequest, perRequestOK, "", at(1))
	w("## Targets\n\nThe stretch targets for Portcullis on this machine, checked against this run.\n\n")
	w("| target | measured | met |\n|---|---:|---|\n")
	for _, t := range ts {
		got, met := "not measured", "—"
		if t.ok {
			got = fmtNum(t.value, true) + " " + t.unit
			if t.unit == "×" {
				got = fmt.Sprintf("%.2f×", t.value)
			}
			met = "no"
			if t.met(t.value) {
				met = "yes"
			}
		}
		w("| %s | %s | %s |\n", t.what, strings.TrimSpace(got), met)
	}
	w("\n")
}
