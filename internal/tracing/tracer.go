package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracer makes Portcullis's spans. A nil *Tracer is tracing off: its
// methods do nothing and allocate nothing.
type Tracer struct {
	tracer   trace.Tracer
	provider *sdktrace.TracerProvider
}

// maxAttributeLength bounds an attribute's value by default.
const maxAttributeLength = 1024

// tracerName is the instrumentation scope of Portcullis's spans.
const tracerName = "github.com/portcullis-proxy/portcullis"

// Start sets up the exporter and the tracer provider s describes, or
// returns nil when tracing is off. Nothing is sent yet: spans are batched
// and exported in the background, and an export that fails is logged, never
// felt by a request. version is Portcullis's, for the service.version
// resource attribute.
func Start(ctx context.Context, s Settings, version string, logger *slog.Logger) (*Tracer, error) {
	if !s.Enabled {
		return nil, nil
	}
	var exp sdktrace.SpanExporter
	var err error
	// Both exporters read OTEL_EXPORTER_OTLP_* themselves (endpoint,
	// headers, timeout, certificate, compression); FromEnv has checked the
	// ones a typo in would silently send nothing.
	if s.Protocol == protocolGRPC {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("setting up the OTLP trace exporter (%s): %w", s.Protocol, err)
	}
	// service.name is portcullis unless OTEL_SERVICE_NAME or
	// OTEL_RESOURCE_ATTRIBUTES says otherwise: the environment comes last
	// and wins.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "portcullis"), attribute.String("service.version", version)),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("reading OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	// Export failures reach the log through the SDK's global handler; the
	// batcher drops spans (never blocks) when the collector is slow.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("exporting traces", "error", err)
	}))
	// Span attributes carry what clients send (paths, user agents):
	// bounded, unless OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT or
	// OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT says otherwise.
	limits := sdktrace.NewSpanLimits()
	if limits.AttributeValueLengthLimit < 0 {
		limits.AttributeValueLengthLimit = maxAttributeLength
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(s.sampler),
		sdktrace.WithRawSpanLimits(limits),
	)
	return &Tracer{tracer: tp.Tracer(tracerName, trace.WithInstrumentationVersion(version)), provider: tp}, nil
}

// Shutdown exports the spans still held, until ctx ends.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// w3c reads and writes the W3C traceparent and tracestate headers
// (https://www.w3.org/TR/trace-context/).
var w3c propagation.TraceContext

// StartRequest starts the server span of a request as a new trace. A
// client's own traceparent is never the parent: a client could choose the
// trace id Portcullis's and the cluster's spans are recorded under, and make
// every request sampled. It is kept as a link, for a client that traces
// itself (the way kube-apiserver treats the trace context of a client it
// does not trust).
func (t *Tracer) StartRequest(r *http.Request, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...)}
	if client := trace.SpanContextFromContext(w3c.Extract(context.Background(), propagation.HeaderCarrier(r.Header))); client.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: client,
			Attributes: []attribute.KeyValue{attribute.String("portcullis.link", "client trace context")}}))
	}
	return t.tracer.Start(r.Context(), name, opts...)
}

// Start starts a span inside the request whose context ctx is. With tracing
// off (t is nil) it returns ctx and a span that does nothing, without
// allocating: callers set attributes only when span.IsRecording().
func (t *Tracer) Start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind))
}

// Inject sets the traceparent (and tracestate) of the span in ctx on an
// upstream request's header h, replacing any the client sent, so that the
// upstream's spans join (or link to) Portcullis's trace. Without a span it
// leaves h alone.
func Inject(ctx context.Context, h http.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	delete(h, HeaderTraceState) // a client's, which would ride along with Portcullis's traceparent
	w3c.Inject(ctx, propagation.HeaderCarrier(h))
}

// The W3C trace context headers, in their canonical form.
const (
	HeaderTraceParent = "Traceparent"
	HeaderTraceState  = "Tracestate"
)

// TraceID returns the id of the trace the request whose context ctx is
// belongs to, or "" when it is not traced: for the access log.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}
