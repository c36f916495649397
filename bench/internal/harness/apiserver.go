package harness

import (
	"context"

	"github.com/portcullis-proxy/portcullis/bench/internal/contender"
)

// apiServerScenarios are the reads a kubectl user makes of a real
// kube-apiserver: a small GET at concurrency 16 and a LIST of 1,000
// ConfigMaps (about 1 MB of JSON), interleaved like the stub's.
func (r *run) apiServerScenarios(ctx context.Context, insts map[string]*contender.Instance) {
	if r.want(GetC16APIServer) {
		r.apiGet(ctx, insts)
	}
	if r.want(List1000) {
		r.apiList(ctx, insts)
	}
}

func (r *run) apiGet(ctx context.Context, insts map[string]*contender.Instance) {
	get := getCase{GetC16APIServer, contender.ReadyPath, 16, r.sz.apiGet, r.sz.apiWarmup}
	rounds := r.measureGets(ctx, get, insts, false)
	for _, name := range contendersOf(GetC16APIServer) {
		row := r.getRow(get, name, rounds[name])
		delete(row.Extra, "new_upstream_conns_per_1000") // the stub counts those, not kube-apiserver
		r.add(row)
	}
}

func (r *run) apiList(ctx context.Context, insts map[string]*contender.Instance) {
	list := getCase{List1000, "/api/v1/namespaces/" + listNamespace + "/configmaps", 1, int64(r.sz.listGets), 1}
	rounds := r.measureGets(ctx, list, insts, false)
	for _, name := range contendersOf(List1000) {
		row := r.getRow(list, name, rounds[name])
		delete(row.Extra, "new_upstream_conns_per_1000")
		row.Extra["objects"] = r.sz.listObjects
		if b, ok := row.Extra["bytes_per_response"].(int64); ok {
			row.Extra["mb_per_s"] = round1(row.RPS * float64(b) / 1e6)
		}
		r.add(row)
	}
}
