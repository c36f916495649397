package tracing

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestExport sends a request's spans to a real OTLP receiver over each
// protocol, the exporters reading their endpoint from the environment as
// they do in production.
func TestExport(t *testing.T) {
	collector, err := testenv.StartTraceCollector()
	if err != nil {
		t.Fatal(err)
	}
	defer collector.Close()
	for _, tt := range []struct{ protocol, endpoint string }{
		{"http/protobuf", collector.HTTPURL},
		{"grpc", "http://" + collector.GRPCAddr},
	} {
		t.Run(tt.protocol, func(t *testing.T) {
			env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": tt.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": tt.protocol,
				"OTEL_SERVICE_NAME": "portcullis-" + tt.protocol}
			for k, v := range env {
				t.Setenv(k, v)
			}
			s, err := FromEnv(os.LookupEnv)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := Start(context.Background(), s, "test", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, "/api", nil)
			ctx, span := tr.StartRequest(r, "GET")
			_, child := tr.Start(ctx, "upstream", trace.SpanKindClient)
			h := http.Header{"Tracestate": {"client=chosen"}}
			Inject(trace.ContextWithSpan(ctx, child), h)
			child.End()
			span.End()
			sc := child.SpanContext()
			if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; h.Get("Traceparent") != want || h.Get("Tracestate") != "" {
				t.Errorf("the upstream's header: %v, want traceparent %s and no tracestate", h, want)
			}
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tr.Shutdown(sctx); err != nil {
				t.Fatal(err)
			}
			var got int
			for _, sp := range collector.Spans() {
				if sp.Service == env["OTEL_SERVICE_NAME"] && sp.TraceID == sc.TraceID().String() {
					got++
				}
			}
			if got != 2 {
				t.Errorf("the collector got %d spans of the trace, want 2", got)
			}
		})
	}
}

// TestOffCostsNothing: with tracing off, the request path's calls do
// nothing and allocate nothing.
func TestOffCostsNothing(t *testing.T) {
	var tr *Tracer
	ctx := context.Background()
	h := http.Header{}
	allocs := testing.AllocsPerRun(100, func() {
		c, span := tr.Start(ctx, "authorize", trace.SpanKindInternal)
		if span.IsRecording() {
			t.Fatal("a span of tracing off records")
		}
		span.End()
		Inject(c, h)
		_ = TraceID(c)
	})
	if allocs != 0 || len(h) != 0 {
		t.Errorf("tracing off: %v allocations a request, header %v; want none", allocs, h)
	}
}
