package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/kube"
	"github.com/portcullis-proxy/portcullis/internal/policy"
)

// BenchmarkPipelineKubernetesGETAudit is BenchmarkPipelineKubernetesGET
// with the audit trail off and written to a file (AUDIT_LOG_PATH, the
// default policy: Metadata for every request). The audit backend encodes
// and writes on a goroutine of its own, so that work is counted twice
// over: the backend is shut down, writing out its queue, inside the timed
// region, and cpu-ns/op is the CPU time (user and system) the whole
// process spent per request, which is what a request costs on a machine
// whose cores are all busy. The -parallel variants send requests from
// GOMAXPROCS goroutines at once, as the load generator does, so that ns/op
// is the inverse of throughput.
func BenchmarkPipelineKubernetesGETAudit(b *testing.B) {
	for _, bb := range []struct {
		name     string
		audit    bool
		parallel bool
	}{
		{"off", false, false},
		{"file", true, false},
		{"off-parallel", false, true},
		{"file-parallel", true, true},
	} {
		b.Run(bb.name, func(b *testing.B) {
			benchPipelineAudit(b, bb.audit, bb.parallel)
		})
	}
}

// auditBenchServer is the server of BenchmarkPipelineKubernetesGET, with
// its audit log written to a temporary file when auditOn (else none), and
// a token for kubectlRequest.
func auditBenchServer(b *testing.B, auditOn bool) (s *Server, token, logPath string) {
	up, caPEM := benchAPIServer(b)
	opts := insecureOptions(b, benchFrom)
	route := &opts.Routes[0]
	route.To = []*url.URL{mustURL(b, up.URL)}
	route.TLSCustomCA = caPEM
	route.KubernetesServiceAccountToken = "sa-token.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cG9ydGN1bGxpcyJ9.c2ln"
	route.AllowSPDY, route.AllowWebsockets = true, true
	route.AllowedUsers = []string{"alice@example.com"}
	logPath = filepath.Join(b.TempDir(), "audit.log")
	if auditOn {
		opts.AuditLogPath = logPath
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	s, err := New(opts, logger)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.current().close() })
	return s, benchToken(b, opts, route), logPath
}

// serveBench serves req through s's handler into w, and checks the answer.
func serveBench(b *testing.B, s *Server, w *discardWriter, req *http.Request) {
	w.reset()
	s.handler.ServeHTTP(w, req)
	if w.code != http.StatusOK || w.n != len(benchPod) {
		b.Errorf("got %d with %d bytes, want 200 with %d", w.code, w.n, len(benchPod))
	}
}

func benchPipelineAudit(b *testing.B, auditOn, parallel bool) {
	s, token, logPath := auditBenchServer(b, auditOn)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			req, w := kubectlRequest(token), &discardWriter{h: http.Header{}}
			for pb.Next() {
				serveBench(b, s, w, req)
			}
		})
	} else {
		req, w := kubectlRequest(token), &discardWriter{h: http.Header{}}
		for range b.N {
			serveBench(b, s, w, req)
		}
	}
	if s.audit != nil {
		// What the backend still holds is part of the requests' cost.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s.audit.shutdown(ctx)
		cancel()
	}
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	if auditOn {
		// Every request's event was written: none was dropped, so all of
		// the encoding was measured. A long run rotates the log (100 MB
		// by default): the backups, in the same directory, count too.
		files, err := filepath.Glob(filepath.Join(filepath.Dir(logPath), "*"))
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			n += bytes.Count(data, []byte("\n"))
		}
		if n != b.N {
			b.Fatalf("%d events in the audit log and its backups, want %d", n, b.N)
		}
	}
}

// BenchmarkPipelineKubernetesGETAuditPaired compares the two servers of
// BenchmarkPipelineKubernetesGETAudit in one run, for a machine whose
// other load comes and goes: they take turns at chunks of requests, from
// one client or four at once, and each turn's process CPU time and
// elapsed time is counted to its server. A turn of the audited server
// ends when the backend has written all its events (the wait is not
// counted as elapsed time; the CPU the writer spends in it is counted).
// It reports both servers' CPU and elapsed time per request, and
// cpu-ratio and throughput-ratio, auditing off over on: the target is
// ≥ 0.95.
func BenchmarkPipelineKubernetesGETAuditPaired(b *testing.B) {
	for _, clients := range []int{1, 4} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			off, offToken, _ := auditBenchServer(b, false)
			on, onToken, _ := auditBenchServer(b, true)
			written := on.audit.written.WithLabelValues("log")
			const chunk = 200
			var cpu, elapsed [2]time.Duration
			logged := 0
			b.ResetTimer()
			for done := 0; done < b.N; done += chunk {
				n := min(chunk, b.N-done)
				for i, s := range []*Server{off, on} {
					token := []string{offToken, onToken}[i]
					cpu0, t0 := processCPU(b), time.Now()
					var wg sync.WaitGroup
					for c := range clients {
						wg.Go(func() {
							req, w := kubectlRequest(token), &discardWriter{h: http.Header{}}
							for i := c; i < n; i += clients {
								serveBench(b, s, w, req)
							}
						})
					}
					wg.Wait()
					elapsed[i] += time.Since(t0)
					if s == on {
						logged += n
						for deadline := time.Now().Add(time.Minute); counterValue(b, written) < logged; {
							if time.Now().After(deadline) {
								b.Fatalf("%v of %d events written", counterValue(b, written), logged)
							}
							time.Sleep(time.Millisecond)
						}
					}
					cpu[i] += processCPU(b) - cpu0
				}
			}
			b.StopTimer()
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
			b.ReportMetric(per(cpu[0]), "off-cpu-ns/op")
			b.ReportMetric(per(cpu[1]), "on-cpu-ns/op")
			b.ReportMetric(per(elapsed[0]), "off-ns/op")
			b.ReportMetric(per(elapsed[1]), "on-ns/op")
			b.ReportMetric(float64(cpu[0])/float64(cpu[1]), "cpu-ratio")
			b.ReportMetric(float64(elapsed[0])/float64(elapsed[1]), "throughput-ratio")
		})
	}
}

// counterValue is c's value now.
func counterValue(tb testing.TB, c prometheus.Counter) int {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		tb.Fatal(err)
	}
	return int(m.GetCounter().GetValue())
}

// processCPU is the CPU time, user and system, the process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRequestAudit is the audit trail's own work for one kubectl GET
// on a Kubernetes route, with the audit log written to a file: the
// record begun at authorization and finished when the handler returns,
// and the backend's encoding and writing of its event. The backend runs
// on a goroutine of its own and is shut down, writing out its queue,
// inside the timed region; cpu-ns/op is the CPU time the process spent
// per event, which is what auditing adds to a request on a busy machine.
func BenchmarkRequestAudit(b *testing.B) {
	s, _, _ := auditBenchServer(b, true)
	r := kubectlRequest("")
	info, err := kube.ParseRequestInfo(r.Method, r.URL.Path, r.URL.RawQuery)
	if err != nil {
		b.Fatal(err)
	}
	id := &identity.Identity{User: "alice-id", Email: "alice@example.com", Groups: []string{"sre", "dev", "k8s-admins"},
		SessionID: "Zk9yZXZlci1hLXNlc3Npb24taWQtb2YtMzItYnl0ZXM"}
	d := policy.Decision{Allow: true, Reasons: []string{policy.ReasonEmailOK}, Rule: &policy.Rule{Action: "allow", Path: "policy[0].allow.or"}}
	w := &responseWriter{ResponseWriter: &discardWriter{h: http.Header{}}, status: http.StatusOK, bytes: int64(len(benchPod))}
	route := benchFrom
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		s.beginAudit(r, time.Now(), route, &info, id, d).finish(w, nil, false)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s.audit.shutdown(ctx)
	cancel()
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
