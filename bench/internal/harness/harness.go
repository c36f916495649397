// Package harness runs the benchmark: it starts the upstreams (the stub
// and a real kube-apiserver with a kwok node) and every contender in front
// of each, runs every scenario against every contender in the same run,
// interleaved round by round, and collects the rows that results.go
// writes out. It measures; it asserts nothing about timing. What it does
// check is that each contender did its job (the upstream saw the right
// credentials, every watch got its event), since a number from a broken
// setup is worse than none.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/portcullis-proxy/portcullis/bench/internal/contender"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// The scenarios, in the order they run and are reported.
const (
	GetC1Stub       = "get-c1-stub"
	GetC16Stub      = "get-c16-stub"
	GetC64Stub      = "get-c64-stub"
	GetC16APIServer = "get-c16-apiserver"
	List1000        = "list-1000"
	Watch10k        = "watch-10k"
	ExecMBps        = "exec-mbps"
	PortForwardMBps = "portforward-mbps"
	ConnsPer1000    = "conns-per-1000"
	Startup         = "startup"
)

// Scenarios lists every scenario in report order.
var Scenarios = []string{GetC1Stub, GetC16Stub, GetC64Stub, GetC16APIServer, List1000, Watch10k, ExecMBps, PortForwardMBps, ConnsPer1000, Startup}

// Contenders lists every contender in report order.
var Contenders = []string{contender.Direct, contender.DirectMode, contender.Portcullis, contender.PortcullisPostgres, contender.PortcullisAudit, contender.Nginx, contender.OAuth2Proxy}

// A variant is Portcullis's own build in another configuration, run beside
// the plain one only in the scenarios where what it changes shows: in the
// others it would measure the plain one again, and cost the run minutes.
type variant struct {
	// configure turns a Portcullis contender into this variant.
	configure func(*contender.PortcullisContender)
	// scenarios are the scenarios it runs in.
	scenarios []string
	// probe, if set, makes the probe that checks, in every round of a GET
	// or LIST of inst, that the variant does what it is there to do.
	probe func(inst *contender.Instance) probe
	// about says in RESULTS.md what it is and where it runs.
	about string
}

// variants are the contenders that are Portcullis in another
// configuration, by name.
var variants = map[string]variant{
	// The requests that each look their session up, where a store that
	// went to the database would show. Watches and streams look it up
	// once per stream, and startup would time PostgreSQL's own start.
	contender.PortcullisPostgres: {
		configure: func(c *contender.PortcullisContender) { c.Postgres = true },
		scenarios: []string{GetC1Stub, GetC16Stub, GetC64Stub, ConnsPer1000, GetC16APIServer, List1000},
		probe:     newStoreProbe,
		about:     "Portcullis with its sessions in PostgreSQL; it runs the small GETs and the LIST",
	},
	// An event per request: the small GETs, the most requests per second
	// for the least work each, are where its cost shows. A LIST, a watch
	// or a stream is one or two events for far more work.
	contender.PortcullisAudit: {
		configure: func(c *contender.PortcullisContender) { c.Audit = true },
		scenarios: []string{GetC1Stub, GetC16Stub, GetC64Stub, GetC16APIServer},
		probe:     newAuditProbe,
		about: "Portcullis writing its audit trail to a file (no audit policy, so every request at " +
			"`Metadata` level, the default; default rotation); it runs the small GETs",
	},
	// No proxy: kube-apiserver validates the Portcullis token and asks
	// Portcullis's webhook. Only kube-apiserver can do that, so only its
	// scenarios; the streams would measure the apiserver alone, as direct
	// does.
	contender.DirectMode: {
		configure: func(c *contender.PortcullisContender) { c.DirectMode = true },
		scenarios: []string{GetC16APIServer, List1000},
		about: "Portcullis in direct mode (docs/direct-mode.md): the client sends the bare Portcullis token of a real " +
			"sign-in to kube-apiserver itself, restarted with the files `portcullis direct-config` wrote, which validates " +
			"it (its JWT authenticator) and asks Portcullis's authorization webhook (cached 10 s); Portcullis's process, the " +
			"webhook, counts as its proxy CPU. It starts before the proxies, as the restart does; it runs the GET and LIST " +
			"from kube-apiserver",
	},
}

// contendersOf lists the contenders scenario sc runs against, in report
// order: every one but the variants that do not run in it.
func contendersOf(sc string) []string {
	return slices.DeleteFunc(slices.Clone(Contenders), func(name string) bool {
		v, ok := variants[name]
		return ok && !slices.Contains(v.scenarios, sc)
	})
}

// The person every request is made as.
const (
	benchUser = "bench@example.com"
)

var benchGroups = []string{"bench-readers", "oncall"}

// Options configure a run.
type Options struct {
	Short bool // the smoke-test sizes: small counts, one round
	// StubBin is the command that runs the stub upstream: the harness's
	// own executable with its "stub" subcommand.
	StubBin []string
	Log     io.Writer
	// Profile, if set, is a directory for Portcullis's CPU and
	// allocation profiles, taken in the first round of the small GETs.
	Profile string
	// Only, if not empty, limits the run to these scenarios (and the
	// upstreams they need).
	Only []string
}

// want reports whether scenario sc is part of this run.
func (r *run) want(sc ...string) bool {
	if len(r.opts.Only) == 0 {
		return true
	}
	for _, s := range sc {
		if slices.Contains(r.opts.Only, s) {
			return true
		}
	}
	return false
}

// sizes are the request counts and durations of one run.
type sizes struct {
	rounds                int
	warmup                int64
	getC1, getC16, getC64 int64
	apiWarmup, apiGet     int64
	listObjects, listGets int
	watchStreams          int
	watchHold             time.Duration
	streamBytes           int64
	startupRounds         int
}

func sizesFor(short bool) sizes {
	if short {
		return sizes{rounds: 1, warmup: 200, getC1: 300, getC16: 2000, getC64: 2000,
			apiWarmup: 100, apiGet: 400, listObjects: 1000, listGets: 3,
			watchStreams: 300, watchHold: 2 * time.Second, streamBytes: 4 << 20, startupRounds: 1}
	}
	// Five rounds: on a shared virtual machine one round in five can run
	// slow, and the median of five is not moved by it.
	return sizes{rounds: 5, warmup: 2000, getC1: 5000, getC16: 30000, getC64: 30000,
		apiWarmup: 500, apiGet: 5000, listObjects: 1000, listGets: 30,
		watchStreams: 10000, watchHold: 60 * time.Second, streamBytes: 256 << 20, startupRounds: 5}
}

// Row is one scenario's result for one contender.
type Row struct {
	Scenario  string         `json:"scenario"`
	Contender string         `json:"contender"`
	RPS       float64        `json:"rps"`
	P50       float64        `json:"p50_us"`
	P99       float64        `json:"p99_us"`
	Extra     map[string]any `json:"extra"`
}

// run is the state of one benchmark run.
type run struct {
	opts       Options
	sz         sizes
	dir        string
	log        io.Writer
	ca         *testenv.CA
	certFile   string
	keyFile    string
	certPEM    []byte
	keyPEM     []byte
	issuer     *contender.Issuer
	contenders map[string]contender.Contender
	stub       *stubUpstream
	cluster    *clusterUpstream
	// probes are the variants' probes, by instance (run.probe).
	probes   map[*contender.Instance]probe
	rows     []Row
	problems []error
}

// variantOf is v: a Portcullis contender that runs base's build.
func variantOf(base *contender.PortcullisContender, v variant) *contender.PortcullisContender {
	c := &contender.PortcullisContender{BinaryOf: base}
	v.configure(c)
	return c
}

// Run runs every scenario against every contender and returns the rows,
// in report order. The error lists every check that failed; rows are
// returned even then, with the failure in their extra fields.
func Run(ctx context.Context, opts Options) ([]Row, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	dir, err := os.MkdirTemp("", "portcullis-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r := &run{opts: opts, sz: sizesFor(opts.Short), dir: dir, log: opts.Log, probes: map[*contender.Instance]probe{}}
	pc := &contender.PortcullisContender{Profiling: opts.Profile != "", BinDir: dir}
	r.contenders = map[string]contender.Contender{
		contender.Direct:      contender.DirectContender{},
		contender.Portcullis:  pc,
		contender.Nginx:       &contender.NginxContender{},
		contender.OAuth2Proxy: &contender.OAuth2ProxyContender{},
	}
	for name, v := range variants {
		r.contenders[name] = variantOf(pc, v)
	}
	for _, name := range Contenders {
		r.logf("preparing %s", name)
		if err := r.contenders[name].Prepare(ctx, opts.Log); err != nil {
			return nil, fmt.Errorf("preparing %s: %w", name, err)
		}
	}
	if err := r.setupTLS(); err != nil {
		return nil, err
	}
	if r.issuer, err = contender.StartIssuer(r.ca); err != nil {
		return nil, fmt.Errorf("starting the JWT issuer for oauth2-proxy: %w", err)
	}
	defer r.issuer.Close()

	// The stub upstream first: the proxy-cost scenarios.
	if r.want(GetC1Stub, GetC16Stub, GetC64Stub, ConnsPer1000, Watch10k, Startup) {
		if r.stub, err = r.startStub(ctx); err != nil {
			return nil, err
		}
		defer r.stub.stop()
		stubInsts, err := r.startAll(ctx, "stub", r.stub.upstream, GetC1Stub, GetC16Stub, GetC64Stub, ConnsPer1000, Watch10k)
		defer stopAll(stubInsts)
		if err != nil {
			return nil, err
		}
		if r.want(GetC1Stub, GetC16Stub, GetC64Stub, ConnsPer1000) {
			r.getScenarios(ctx, stubInsts)
		}
		if r.want(Watch10k) {
			r.watchScenario(ctx, stubInsts)
		}
		stopAll(stubInsts)
		if r.want(Startup) {
			r.startupScenario(ctx)
		}
	}

	// Then the real kube-apiserver: what users feel.
	if r.want(GetC16APIServer, List1000, ExecMBps, PortForwardMBps) {
		if r.cluster, err = r.startCluster(ctx); err != nil {
			return r.sorted(), errors.Join(append(r.problems, err)...)
		}
		defer r.cluster.stop()
		apiInsts, err := r.startAll(ctx, "apiserver", r.cluster.upstream, GetC16APIServer, List1000, ExecMBps, PortForwardMBps)
		defer stopAll(apiInsts)
		if err != nil {
			return r.sorted(), errors.Join(append(r.problems, err)...)
		}
		r.apiServerScenarios(ctx, apiInsts)
		if r.want(ExecMBps, PortForwardMBps) {
			r.streamScenarios(ctx, apiInsts)
		}
	}
	return r.sorted(), errors.Join(r.problems...)
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "bench: "+format+"\n", args...)
}

// fail records a failed check; the run goes on so every other number is
// still measured, and the row says what went wrong.
func (r *run) fail(row *Row, format string, args ...any) {
	err := fmt.Errorf("%s/%s: "+format, append([]any{row.Scenario, row.Contender}, args...)...)
	r.problems = append(r.problems, err)
	if row.Extra == nil {
		row.Extra = map[string]any{}
	}
	row.Extra["error"] = err.Error()
	r.logf("FAILED %v", err)
}

func (r *run) add(row Row) { r.rows = append(r.rows, row) }

// sorted returns the rows in report order: scenario, then contender.
func (r *run) sorted() []Row {
	rows := slices.Clone(r.rows)
	slices.SortStableFunc(rows, func(a, b Row) int {
		if c := slices.Index(Scenarios, a.Scenario) - slices.Index(Scenarios, b.Scenario); c != 0 {
			return c
		}
		return slices.Index(Contenders, a.Contender) - slices.Index(Contenders, b.Contender)
	})
	return rows
}

// setupTLS makes the bench CA and the one serving certificate every
// contender and the stub use, so TLS costs the same everywhere.
func (r *run) setupTLS() error {
	var err error
	if r.ca, err = testenv.NewCA("portcullis-bench"); err != nil {
		return err
	}
	if r.certPEM, r.keyPEM, err = r.ca.Issue("bench", "127.0.0.1", "localhost"); err != nil {
		return err
	}
	r.certFile = filepath.Join(r.dir, "tls.crt")
	r.keyFile = filepath.Join(r.dir, "tls.key")
	for f, b := range map[string][]byte{r.certFile: r.certPEM, r.keyFile: r.keyPEM, filepath.Join(r.dir, "ca.crt"): r.ca.CertPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// env is the environment of one contender in front of up.
func (r *run) env(name, upName string, up contender.Upstream) (contender.Env, error) {
	d := filepath.Join(r.dir, upName+"-"+name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return contender.Env{}, err
	}
	return contender.Env{
		Dir: d, CA: r.ca, CertFile: r.certFile, KeyFile: r.keyFile, CertPEM: r.certPEM, KeyPEM: r.keyPEM,
		Upstream: up, User: benchUser, Groups: benchGroups, Issuer: r.issuer, Log: r.log,
		RestartUpstream: r.restartAPIServer(upName),
	}, nil
}

// restartAPIServer is Env.RestartUpstream for the upstream upName: kube-
// apiserver restarted with other flags, once kwok's node serves exec
// again; nil for the stub.
func (r *run) restartAPIServer(upName string) func(context.Context, ...string) error {
	if upName != "apiserver" || r.cluster == nil {
		return nil
	}
	return func(ctx context.Context, args ...string) error {
		c := r.cluster.cluster
		if err := c.RestartAPIServer(ctx, args...); err != nil {
			return fmt.Errorf("%w\nkube-apiserver's log ends:\n%s", err, c.APIServerLogTail(30))
		}
		return c.WaitExec(ctx, podNamespace, podName)
	}
}

// startAll starts, in front of up, every contender that one of the
// scenarios of this run among scenarios runs against. Their clients'
// tokens name live sessions (contender.Env.Session).
func (r *run) startAll(ctx context.Context, upName string, up contender.Upstream, scenarios ...string) (map[string]*contender.Instance, error) {
	insts := map[string]*contender.Instance{}
	for _, name := range Contenders {
		if !slices.ContainsFunc(scenarios, func(sc string) bool { return r.want(sc) && slices.Contains(contendersOf(sc), name) }) {
			continue
		}
		env, err := r.env(name, upName, up)
		if err != nil {
			return insts, err
		}
		env.Session = true
		inst, err := r.contenders[name].Start(ctx, env)
		if err != nil {
			return insts, fmt.Errorf("starting %s in front of the %s: %w", name, upName, err)
		}
		r.logf("%s in front of the %s at %s (served after %v)", name, upName, inst.URL, inst.Ready.Round(time.Millisecond))
		insts[name] = inst
	}
	return insts, nil
}

func stopAll(insts map[string]*contender.Instance) {
	for _, i := range insts {
		i.Stop()
	}
}

// order is the order of scenario sc's contenders in round i: rotated each
// round, so no contender always runs first (on a cold cache) or last.
func order(sc string, i int) []string {
	names := contendersOf(sc)
	n := len(names)
	out := make([]string, n)
	for j := range n {
		out[j] = names[(i+j)%n]
	}
	return out
}
