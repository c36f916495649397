// Package stub is the benchmark's minimal upstream: a TLS server that
// answers like kube-apiserver's GET of one ConfigMap (about 1 KB of JSON)
// and holds watch streams, so that a proxy's own cost shows with no
// apiserver work behind it. It counts new connections (connection reuse),
// checks that every request carries the credentials a proxy must send,
// and on its admin listener reports those counts and sends one event to
// every open watch.
package stub

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what the stub checks and serves.
type Config struct {
	// Token is the bearer token every request must carry.
	Token string
	// User must be the request's Impersonate-User.
	User string
}

// Stats are the stub's counters, as its admin endpoint reports them.
type Stats struct {
	Requests int64 `json:"requests"`
	// NewConns counts accepted TCP connections since start.
	NewConns int64 `json:"new_conns"`
	// BadAuth counts requests without the expected token or
	// Impersonate-User: a contender that lets those through is broken.
	BadAuth int64 `json:"bad_auth"`
	// Watches is the number of watch streams open now.
	Watches int64 `json:"watches"`
}

// Stub is the upstream's handler and counters.
type Stub struct {
	cfg      Config
	auth     []byte
	cm       []byte // one ConfigMap, as kube-apiserver encodes it
	stats    Stats
	mu       sync.Mutex
	gen      int64
	event    chan struct{} // closed by Broadcast, then replaced
	eventRaw []byte        // the event the last Broadcast sent
}

// New returns a stub for cfg.
func New(cfg Config) *Stub {
	s := &Stub{cfg: cfg, auth: []byte("Bearer " + cfg.Token), event: make(chan struct{})}
	s.cm = configMap("bench", "1")
	return s
}

// configMap encodes a ConfigMap of about 1 KB the way kube-apiserver does:
// metadata with managedFields, and a data map.
func configMap(name, rv string) []byte {
	data := map[string]string{}
	for i := range 8 {
		data[fmt.Sprintf("key-%d", i)] = strings.Repeat(string(rune('a'+i)), 64)
	}
	cm := map[string]any{
		"kind":       "ConfigMap",
		"apiVersion": "v1",
		"metadata": map[string]any{
			"name": name, "namespace": "default", "uid": "6f1b1b5e-2c1a-4c1e-9d1e-6a4b8f1e2d3c",
			"resourceVersion": rv, "creationTimestamp": "2026-11-27T10:00:00Z",
			"managedFields": []any{map[string]any{
				"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
				"time": "2026-11-27T10:00:00Z", "fieldsType": "FieldsV1",
				"fieldsV1": map[string]any{"f:data": map[string]any{".": map[string]any{}}},
			}},
		},
		"data": data,
	}
	b, _ := json.Marshal(cm)
	return append(b, '\n')
}

// ServeHTTP answers GET of a ConfigMap and watches of ConfigMaps.
func (s *Stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	atomic.AddInt64(&s.stats.Requests, 1)
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), s.auth) != 1 ||
		r.Header.Get("Impersonate-User") != s.cfg.User {
		atomic.AddInt64(&s.stats.BadAuth, 1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"stub: missing the proxy's token or Impersonate-User","reason":"Unauthorized","code":401}` + "\n"))
		return
	}
	if r.URL.Query().Get("watch") != "" {
		s.watch(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(s.cm)))
	w.Write(s.cm)
}

// watch holds the stream open, idle, and writes one event each time
// Broadcast is called, like a watch on a quiet namespace.
func (s *Stub) watch(w http.ResponseWriter, r *http.Request) {
	// The watch is counted, and takes the event to wait for, before its
	// client sees the response: a client that has its answer, or a
	// harness that has counted it in Stats, may broadcast at once, and
	// the event must reach it.
	s.mu.Lock()
	ch := s.event
	s.mu.Unlock()
	atomic.AddInt64(&s.stats.Watches, 1)
	defer atomic.AddInt64(&s.stats.Watches, -1)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ch:
		}
		s.mu.Lock()
		ev := s.eventRaw
		// The latest event and the channel of the next, together:
		// broadcasts faster than the write coalesce into the latest.
		ch = s.event
		s.mu.Unlock()
		if _, err := w.Write(ev); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// Broadcast sends one MODIFIED event to every open watch and returns how
// many were open.
func (s *Stub) Broadcast() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	obj := configMap("bench", fmt.Sprint(s.gen+1))
	ev, _ := json.Marshal(map[string]json.RawMessage{"type": json.RawMessage(`"MODIFIED"`), "object": obj[:len(obj)-1]})
	s.eventRaw = append(ev, '\n')
	close(s.event)
	s.event = make(chan struct{})
	return atomic.LoadInt64(&s.stats.Watches)
}

// Snapshot returns the counters now.
func (s *Stub) Snapshot() Stats {
	return Stats{
		Requests: atomic.LoadInt64(&s.stats.Requests),
		NewConns: atomic.LoadInt64(&s.stats.NewConns),
		BadAuth:  atomic.LoadInt64(&s.stats.BadAuth),
		Watches:  atomic.LoadInt64(&s.stats.Watches),
	}
}

// ConnState counts new connections; set it as http.Server.ConnState.
func (s *Stub) ConnState(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		atomic.AddInt64(&s.stats.NewConns, 1)
	}
}

// Admin is the stub's control endpoint, on a listener of its own so its
// requests never count as upstream traffic: GET /stats, POST /broadcast.
func (s *Stub) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Snapshot())
	})
	mux.HandleFunc("POST /broadcast", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d\n", s.Broadcast())
	})
	return mux
}

// Serve runs the stub on ln with TLS from certFile/keyFile (HTTP/2 and
// HTTP/1.1, like kube-apiserver) and the admin handler on adminLn, until
// ctx is done.
func Serve(ctx context.Context, s *Stub, ln, adminLn net.Listener, certFile, keyFile string) error {
	srv := &http.Server{
		Handler:           s,
		ConnState:         s.ConnState,
		ReadHeaderTimeout: 30 * time.Second,
		// kube-apiserver allows many streams per HTTP/2 connection; so
		// does the stub, or a proxy multiplexing 10,000 watches onto few
		// connections would be held back by the upstream, not itself.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1000},
	}
	admin := &http.Server{Handler: s.Admin(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.ServeTLS(ln, certFile, keyFile) }()
	go func() { errc <- admin.Serve(adminLn) }()
	select {
	case <-ctx.Done():
		srv.Close()
		admin.Close()
		return nil
	case err := <-errc:
		srv.Close()
		admin.Close()
		return err
	}
}
