package harness

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-proxy/portcullis/bench/internal/contender"
	"github.com/portcullis-proxy/portcullis/bench/internal/load"
	"github.com/portcullis-proxy/portcullis/bench/internal/procstat"
)

const watchPath = "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1"

// watchScenario holds r.sz.watchStreams idle watches through each
// contender for r.sz.watchHold, then has the stub send one event on every
// stream and waits for all of them to arrive. It reports the proxy's
// memory per stream and goroutines, and the event's delivery latency.
// One contender at a time: thousands of streams through two proxies at
// once would measure neither.
func (r *run) watchScenario(ctx context.Context, insts map[string]*contender.Instance) {
	for _, name := range order(Watch10k, 0) {
		r.logf("%s %s: %d streams held %v", Watch10k, name, r.sz.watchStreams, r.sz.watchHold)
		r.add(r.watchOne(ctx, insts[name]))
	}
}

func (r *run) watchOne(ctx context.Context, inst *contender.Instance) Row {
	n := r.sz.watchStreams
	row := Row{Scenario: Watch10k, Contender: inst.Name, Extra: map[string]any{"streams": n, "held_s": r.sz.watchHold.Seconds()}}
	ctx, cancel := context.WithCancel(ctx)
	tr := load.NewTransport(inst.TLS, 64)
	// No watch waits long for its response headers: a proxy that holds
	// them fails the scenario instead of hanging the run.
	tr.ResponseHeaderTimeout = 30 * time.Second
	if inst.Name == contender.Nginx {
		// nginx 1.22 sends an HTTP/2 stream's response headers only with
		// its first body byte, so an idle watch never starts over HTTP/2
		// (see TestNginx/idle_stream); kubectl through nginx would need
		// HTTP/1.1 too.
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.ForceAttemptHTTP2 = false
	}
	defer func() {
		cancel()
		tr.CloseIdleConnections()
		r.waitWatches(0, 60*time.Second)
	}()
	client := &http.Client{Transport: tr}
	metrics := &http.Client{Timeout: 10 * time.Second}
	proxy := procstat.Group{Leader: inst.PID()}

	time.Sleep(time.Second) // let the previous contender's streams drain
	mem0 := proxy.Memory()
	g0 := procstat.Goroutines(metrics, inst.Metrics)
	goMem0 := goMemory(metrics, inst.Metrics)

	var (
		opened   atomic.Int64
		openErr  atomic.Pointer[string]
		proto    atomic.Pointer[string]
		received = make(chan time.Time, n)
		wg       sync.WaitGroup
	)
	open := func() {
		defer wg.Done()
		var resp *http.Response
		req, err := inst.NewRequest(ctx, http.MethodGet, watchPath)
		if err == nil {
			resp, err = client.Do(req)
		}
		if err == nil && resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			err = fmt.Errorf("GET %s: %s", watchPath, resp.Status)
		}
		if err != nil {
			s := err.Error()
			openErr.CompareAndSwap(nil, &s)
			return
		}
		if opened.Add(1) == 1 {
			proto.Store(&resp.Proto)
		}
		go func() {
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 4096)
			if _, err := br.ReadSlice('\n'); err == nil || err == bufio.ErrBufferFull {
				received <- time.Now()
			}
			<-ctx.Done()
		}()
	}
	// Open the streams 100 at a time, like a fleet of informers starting.
	start := time.Now()
	sem := make(chan struct{}, 100)
	for range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() { defer func() { <-sem }(); open() }()
	}
	wg.Wait()
	row.Extra["open_s"] = round1(time.Since(start).Seconds())
	if p := proto.Load(); p != nil {
		row.Extra["client_protocol"] = *p
	}
	if got := opened.Load(); got != int64(n) {
		msg := ""
		if p := openErr.Load(); p != nil {
			msg = *p
		}
		r.fail(&row, "opened %d of %d watch streams; first error: %s", got, n, msg)
	}
	if err := r.waitWatches(opened.Load(), 60*time.Second); err != nil {
		r.fail(&row, "%v", err)
	}

	time.Sleep(r.sz.watchHold)
	mem1 := proxy.Memory()
	g1 := procstat.Goroutines(metrics, inst.Metrics)
	goMem1 := goMemory(metrics, inst.Metrics)
	if r.opts.Profile != "" && inst.Pprof != "" {
		// What the streams hold: the heap and the goroutines' stacks.
		r.fetchProfile(ctx, inst.Pprof+"/heap", Watch10k+"-heap.pb.gz")
		r.fetchProfile(ctx, inst.Pprof+"/goroutine", Watch10k+"-goroutine.pb.gz")
	}
	st := r.stubStats()
	row.Extra["open_at_end"] = st.Watches

	// One event on every stream; each must arrive.
	sent := time.Now()
	if _, err := r.stub.broadcast(); err != nil {
		r.fail(&row, "broadcasting the event: %v", err)
	}
	hist := &load.Histogram{}
	timeout := time.After(60 * time.Second)
	delivered := 0
wait:
	for delivered < int(opened.Load()) {
		select {
		case t := <-received:
			hist.Record(t.Sub(sent))
			delivered++
		case <-timeout:
			break wait
		}
	}
	row.P50, row.P99 = us(hist.Quantile(0.5)), us(hist.Quantile(0.99))
	row.Extra["delivered"] = delivered
	row.Extra["lost"] = n - delivered
	if delivered != n {
		r.fail(&row, "%d of %d streams got the event within 60 s", delivered, n)
	}
	if inst.PID() != 0 {
		row.Extra["proxy_mem_before_mib"] = round1(float64(mem0) / (1 << 20))
		row.Extra["proxy_mem_after_mib"] = round1(float64(mem1) / (1 << 20))
		row.Extra["proxy_kib_per_stream"] = round1(float64(mem1-mem0) / 1024 / float64(n))
	}
	// Where a Go proxy's memory per stream goes, from its runtime: the
	// goroutines' stacks, and the heap in use (live objects, and garbage
	// not collected yet).
	for k, v0 := range goMem0 {
		if v1, ok := goMem1[k]; ok {
			row.Extra[k+"_kib_per_stream"] = round1((v1 - v0) / 1024 / float64(n))
		}
	}
	if g0 >= 0 && g1 >= 0 {
		row.Extra["goroutines_before"] = g0
		row.Extra["goroutines_after"] = g1
		row.Extra["goroutines_per_stream"] = round1(float64(g1-g0) / float64(n))
	}
	return row
}

// waitWatches waits until the stub has want watches open.
func (r *run) waitWatches(want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := r.stub.stats()
		if err == nil && st.Watches == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the stub has %d watches open, want %d (%v)", st.Watches, want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// goMemory reads a Go proxy's stack and heap in use from its Prometheus
// metrics (the Go collector's), by short name; empty for a proxy that
// has none.
func goMemory(client *http.Client, metricsURL string) map[string]float64 {
	out := map[string]float64{}
	for short, series := range map[string]string{"stack": "go_memstats_stack_inuse_bytes", "heap": "go_memstats_heap_inuse_bytes"} {
		if v, ok := procstat.Metric(client, metricsURL, series, ""); ok {
			out[short] = v
		}
	}
	return out
}
