package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/bench/internal/contender"
	"github.com/portcullis-proxy/portcullis/bench/internal/load"
	"github.com/portcullis-proxy/portcullis/bench/internal/procstat"
	"github.com/portcullis-proxy/portcullis/bench/internal/stub"
)

// getCase is one small-GET scenario.
type getCase struct {
	scenario    string
	path        string
	concurrency int
	total       int64
	warmup      int64
}

// round is one measured run of one contender.
type round struct {
	res      load.Result
	proxyCPU time.Duration
	upCPU    time.Duration
	newConns int64
	badAuth  int64
	// probe is the variant's probe (nil for the other contenders), and
	// probed what it found in this round.
	probe  probe
	probed probed
}

// A probe checks, in every round of a GET or LIST a variant of Portcullis
// runs (variant.probe), that the variant does what it is there to do,
// and counts it: that sessions in PostgreSQL are not read from the
// database per request, that the audit trail records every request. A
// variant that does not do its job would measure nothing. Each instance
// has a probe of its own, called one round at a time.
type probe interface {
	// begin is called before the round's warm-up.
	begin(ctx context.Context)
	// warmedUp is called after the warm-up of n requests, before the
	// measured phase.
	warmedUp(ctx context.Context, n int64)
	// measured is called after the measured phase of n requests.
	measured(ctx context.Context, n int64) probed
	// row adds the rounds' figures to the row's extra fields.
	row(row *Row, rounds []probed)
}

// probed is what a probe found in one round: its figures, and what the
// variant failed to do ("" if nothing).
type probed struct {
	values  map[string]float64
	problem string
}

// probe is the probe of inst, or nil for a contender that is not a
// variant with one.
func (r *run) probe(inst *contender.Instance) probe {
	v, ok := variants[inst.Name]
	if !ok || v.probe == nil {
		return nil
	}
	p := r.probes[inst]
	if p == nil {
		p = v.probe(inst)
		r.probes[inst] = p
	}
	return p
}

// storeProbe counts the database operations of the session store in
// PostgreSQL (portcullis_store_operation_seconds) during each measured
// phase: reads of sessions (operation "get": a session the replica did
// not hold), and all of them, the periodic ones included.
type storeProbe struct {
	inst        *contender.Instance
	client      *http.Client
	gets0, ops0 int64
}

func newStoreProbe(inst *contender.Instance) probe {
	return &storeProbe{inst: inst, client: &http.Client{Timeout: 10 * time.Second}}
}

// counts reads the store's database operations so far: reads of
// sessions, and all operations.
func (p *storeProbe) counts() (gets, all int64, ok bool) {
	const series = "portcullis_store_operation_seconds_count"
	g, gok := procstat.Metric(p.client, p.inst.Metrics, series, `operation="get"`)
	a, aok := procstat.Metric(p.client, p.inst.Metrics, series, "")
	// No read yet means no "get" sample: zero, as long as the store
	// reports some operation (it migrates and sweeps at start).
	return int64(g), int64(a), aok || gok
}

func (p *storeProbe) begin(context.Context) {}

func (p *storeProbe) warmedUp(context.Context, int64) { p.gets0, p.ops0, _ = p.counts() }

func (p *storeProbe) measured(_ context.Context, n int64) probed {
	g, o, ok := p.counts()
	pr := probed{values: map[string]float64{"reads_per_1000": per1000(g-p.gets0, n), "ops": float64(o - p.ops0)}}
	if !ok {
		pr.problem = "its metrics show no portcullis_store_operation_seconds: the sessions are not in PostgreSQL"
	}
	return pr
}

func (p *storeProbe) row(row *Row, rounds []probed) {
	var reads, ops []float64
	for _, pr := range rounds {
		reads = append(reads, pr.values["reads_per_1000"])
		ops = append(ops, pr.values["ops"])
	}
	if len(rounds) > 0 {
		row.Extra["store_db_reads_per_1000"] = slices.Max(reads)
	}
	row.Extra["store_db_ops_per_round"] = ops
}

// getScenarios runs the small GETs on the stub at concurrency 1, 16 and
// 64, interleaved: each round runs every contender once, in a rotated
// order. The stub's counters give the new upstream connections of each
// measured phase (conns-per-1000) and prove the credentials arrived.
func (r *run) getScenarios(ctx context.Context, insts map[string]*contender.Instance) {
	cases := []getCase{
		{GetC1Stub, contender.ReadyPath, 1, r.sz.getC1, r.sz.warmup},
		{GetC16Stub, contender.ReadyPath, 16, r.sz.getC16, r.sz.warmup},
		{GetC64Stub, contender.ReadyPath, 64, r.sz.getC64, r.sz.warmup},
	}
	conns := map[string]map[string]float64{} // contender → scenario → new upstream conns per 1,000
	for _, gc := range cases {
		rounds := r.measureGets(ctx, gc, insts, true)
		for _, name := range contendersOf(gc.scenario) {
			row := r.getRow(gc, name, rounds[name])
			if conns[name] == nil {
				conns[name] = map[string]float64{}
			}
			conns[name][gc.scenario] = row.Extra["new_upstream_conns_per_1000"].(float64)
			r.add(row)
		}
	}
	// conns-per-1000 is the steady state of the busiest case, c64, where
	// a proxy that does not pool enough connections has to open more.
	for _, name := range contendersOf(ConnsPer1000) {
		row := Row{Scenario: ConnsPer1000, Contender: name, Extra: map[string]any{
			"per_1000_at_c1":  conns[name][GetC1Stub],
			"per_1000_at_c16": conns[name][GetC16Stub],
			"per_1000_at_c64": conns[name][GetC64Stub],
			"what":            "new TCP+TLS connections the stub upstream accepted per 1,000 requests, after warm-up",
		}}
		r.add(row)
	}
}

// measureGets runs gc against every contender, r.sz.rounds times.
func (r *run) measureGets(ctx context.Context, gc getCase, insts map[string]*contender.Instance, stubUp bool) map[string][]round {
	out := map[string][]round{}
	for i := range r.sz.rounds {
		for _, name := range order(gc.scenario, i) {
			inst := insts[name]
			r.logf("%s %s round %d/%d", gc.scenario, name, i+1, r.sz.rounds)
			var stopProfile func()
			if i == 0 && inst.Pprof != "" && r.opts.Profile != "" {
				// get-c16-stub-cpu.pb.gz for Portcullis, and for a
				// variant get-c16-stub-postgres-cpu.pb.gz,
				// get-c16-stub-audit-cpu.pb.gz.
				stem := gc.scenario
				if name != contender.Portcullis {
					stem += "-" + strings.TrimPrefix(name, contender.Portcullis+"-")
				}
				stopProfile = r.profile(ctx, inst, stem)
			}
			out[name] = append(out[name], r.measureGet(ctx, gc, inst, stubUp))
			if stopProfile != nil {
				stopProfile()
			}
		}
	}
	return out
}

func (r *run) measureGet(ctx context.Context, gc getCase, inst *contender.Instance, stubUp bool) round {
	tr := load.NewTransport(inst.TLS, gc.concurrency)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	proxy := procstat.Group{Leader: inst.PID()}
	var up procstat.Group
	if stubUp {
		up = r.stub.group()
	}
	// Warm-up is a phase of its own, so the counters below see only the
	// steady state.
	t := load.Target{URL: inst.URL + gc.path, Header: inst.Header}
	pb := r.probe(inst)
	if pb != nil {
		pb.begin(ctx)
	}
	warm := load.Run(ctx, client, t, gc.concurrency, gc.warmup)
	var before, after stub.Stats
	if stubUp {
		before = r.stubStats()
	}
	if pb != nil {
		pb.warmedUp(ctx, warm.Requests)
	}
	p0, u0 := proxy.CPU(), up.CPU()
	res := load.Run(ctx, client, t, gc.concurrency, gc.total)
	rd := round{res: res, proxyCPU: proxy.CPU() - p0, upCPU: up.CPU() - u0, probe: pb}
	if pb != nil {
		rd.probed = pb.measured(ctx, res.Requests)
	}
	if stubUp {
		after = r.stubStats()
		rd.newConns = after.NewConns - before.NewConns
		rd.badAuth = after.BadAuth - before.BadAuth
	}
	return rd
}

func (r *run) stubStats() stub.Stats {
	st, err := r.stub.stats()
	if err != nil {
		r.logf("reading the stub's counters: %v", err)
	}
	return st
}

// getRow summarizes the rounds of one contender: the median of each figure.
func (r *run) getRow(gc getCase, name string, rounds []round) Row {
	row := Row{Scenario: gc.scenario, Contender: name, Extra: map[string]any{}}
	var rps, p50, p99, genCPU, proxyCPU, upCPU, conns []float64
	var probeds []probed
	var errs int64
	var firstErr string
	var bytes, reqs int64
	for _, rd := range rounds {
		sec := rd.res.Elapsed.Seconds()
		rps = append(rps, rd.res.RPS())
		p50 = append(p50, us(rd.res.Hist.Quantile(0.50)))
		p99 = append(p99, us(rd.res.Hist.Quantile(0.99)))
		genCPU = append(genCPU, pct(rd.res.CPU.Seconds(), sec))
		proxyCPU = append(proxyCPU, pct(rd.proxyCPU.Seconds(), sec))
		upCPU = append(upCPU, pct(rd.upCPU.Seconds(), sec))
		conns = append(conns, per1000(rd.newConns, rd.res.Requests))
		probeds = append(probeds, rd.probed)
		errs += rd.res.Errors
		if firstErr == "" {
			firstErr = rd.res.FirstError
		}
		bytes += rd.res.Bytes
		reqs += rd.res.Requests
		if rd.badAuth > 0 {
			r.fail(&row, "the upstream got %d requests without the proxy's token or Impersonate-User", rd.badAuth)
		}
		if rd.probed.problem != "" {
			r.fail(&row, "%s", rd.probed.problem)
		}
	}
	row.RPS, row.P50, row.P99 = median(rps), median(p50), median(p99)
	row.Extra["rounds_rps"] = rps
	row.Extra["requests_per_round"] = gc.total
	row.Extra["concurrency"] = gc.concurrency
	row.Extra["loadgen_cpu_pct"] = median(genCPU)
	if name != contender.Direct {
		row.Extra["proxy_cpu_pct"] = median(proxyCPU)
	}
	if slices.Max(upCPU) > 0 {
		row.Extra["upstream_cpu_pct"] = median(upCPU)
	}
	row.Extra["new_upstream_conns_per_1000"] = median(conns)
	if len(rounds) > 0 && rounds[0].probe != nil {
		rounds[0].probe.row(&row, probeds)
	}
	if reqs > 0 {
		row.Extra["bytes_per_response"] = bytes / reqs
	}
	if errs > 0 {
		r.fail(&row, "%d of %d requests failed; first: %s", errs, reqs, firstErr)
	}
	return row
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// pct is a CPU time as a share of one core over wall seconds.
func pct(cpu, wall float64) float64 {
	if wall <= 0 {
		return 0
	}
	return round1(100 * cpu / wall)
}

func per1000(n, reqs int64) float64 {
	if reqs == 0 {
		return 0
	}
	return round1(1000 * float64(n) / float64(reqs))
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// profileSeconds is the length of the CPU profile of a measured phase;
// the full-size phases last longer than that.
const profileSeconds = 3

// profile starts a CPU profile of inst (it begins when the warm-up has
// ended, roughly: after a fixed delay) and returns a function that waits
// for it and takes the allocation profile, writing both to the profile
// directory as <scenario>-cpu.pb.gz and <scenario>-allocs.pb.gz.
func (r *run) profile(ctx context.Context, inst *contender.Instance, scenario string) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(500 * time.Millisecond)
		r.fetchProfile(ctx, fmt.Sprintf("%s/profile?seconds=%d", inst.Pprof, profileSeconds), scenario+"-cpu.pb.gz")
	}()
	return func() {
		<-done
		r.fetchProfile(ctx, inst.Pprof+"/allocs", scenario+"-allocs.pb.gz")
	}
}

func (r *run) fetchProfile(ctx context.Context, url, name string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	if err != nil {
		r.logf("profiling: GET %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(r.opts.Profile, 0o755); err != nil {
		r.logf("profiling: %v", err)
		return
	}
	f, err := os.Create(filepath.Join(r.opts.Profile, name))
	if err == nil {
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		r.logf("profiling: writing %s: %v", name, err)
	}
}
