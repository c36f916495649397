package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
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

func benchPipelineAudit(b *testing.B, auditOn, parallel bool) {
	up, caPEM := benchAPIServer(b)
	opts := insecureOptions(b, benchFrom)
	route := &opts.Routes[0]
	route.To = []*url.URL{mustURL(b, up.URL)}
	route.TLSCustomCA = caPEM
	route.KubernetesServiceAccountToken = "sa-token.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cG9ydGN1bGxpcyJ9.c2ln"
	route.AllowSPDY, route.AllowWebsockets = true, true
	route.AllowedUsers = []string{"alice@example.com"}
	logPath := filepath.Join(b.TempDir(), "audit.log")
	if auditOn {
		opts.AuditLogPath = logPath
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	s, err := New(opts, logger)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.current().close() })
	token := benchToken(b, opts, route)
	serve := func(w *discardWriter, req *http.Request) {
		w.reset()
		s.handler.ServeHTTP(w, req)
		if w.code != http.StatusOK || w.n != len(benchPod) {
			b.Errorf("got %d with %d bytes, want 200 with %d", w.code, w.n, len(benchPod))
		}
	}

	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			req, w := kubectlRequest(token), &discardWriter{h: http.Header{}}
			for pb.Next() {
				serve(w, req)
			}
		})
	} else {
		req, w := kubectlRequest(token), &discardWriter{h: http.Header{}}
		for range b.N {
			serve(w, req)
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
		// the encoding was measured.
		data, err := os.ReadFile(logPath)
		if err != nil {
			b.Fatal(err)
		}
		if n := bytes.Count(data, []byte("\n")); n != b.N {
			b.Fatalf("%d events in the audit log, want %d", n, b.N)
		}
	}
}

// processCPU is the CPU time, user and system, the process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
