package testenv

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// TraceCollector is an OpenTelemetry collector's OTLP trace receiver on
// loopback, over gRPC (what kube-apiserver exports with) and over HTTP
// with protobuf bodies (OTLP/HTTP, the SDKs' default), decoding with the
// protocol's own generated types. It keeps every span it receives.
type TraceCollector struct {
	// GRPCAddr is the gRPC receiver's host:port (OTLP's 4317).
	GRPCAddr string
	// HTTPURL is the HTTP receiver's base URL, http://127.0.0.1:PORT
	// (OTLP's 4318); spans are POSTed to HTTPURL/v1/traces.
	HTTPURL string

	grpc *grpc.Server
	http *http.Server

	mu    sync.Mutex
	spans []Span
}

// Span is what a test reads of a received span; ids are in hex.
type Span struct {
	Service      string // the resource's service.name
	Name         string
	Kind         tracepb.Span_SpanKind
	TraceID      string
	SpanID       string
	ParentSpanID string
	Attributes   map[string]string // every value as text
	Links        []SpanLink
}

// SpanLink is a link of a Span to another span.
type SpanLink struct{ TraceID, SpanID string }

// StartTraceCollector starts a TraceCollector; Close stops it.
func StartTraceCollector() (*TraceCollector, error) {
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("trace collector: %w", err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gl.Close()
		return nil, fmt.Errorf("trace collector: %w", err)
	}
	c := &TraceCollector{GRPCAddr: gl.Addr().String(), HTTPURL: "http://" + hl.Addr().String(), grpc: grpc.NewServer()}
	coltracepb.RegisterTraceServiceServer(c.grpc, grpcTraces{c: c})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", c.serveHTTP)
	c.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go c.grpc.Serve(gl)
	go c.http.Serve(hl)
	return c, nil
}

// Close stops both receivers.
func (c *TraceCollector) Close() {
	c.grpc.Stop()
	c.http.Close()
}

// Spans returns a copy of every span received so far.
func (c *TraceCollector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

type grpcTraces struct {
	coltracepb.UnimplementedTraceServiceServer
	c *TraceCollector
}

func (g grpcTraces) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.c.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// serveHTTP is OTLP/HTTP with a binary protobuf body
// (https://opentelemetry.io/docs/specs/otlp/#otlphttp).
func (c *TraceCollector) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "want application/x-protobuf, got "+ct, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.add(&req)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (c *TraceCollector) add(req *coltracepb.ExportTraceServiceRequest) {
	var spans []Span
	for _, rs := range req.GetResourceSpans() {
		service := text(attributes(rs.GetResource().GetAttributes())["service.name"])
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s := Span{Service: service, Name: sp.GetName(), Kind: sp.GetKind(),
					TraceID: hex.EncodeToString(sp.GetTraceId()), SpanID: hex.EncodeToString(sp.GetSpanId()),
					ParentSpanID: hex.EncodeToString(sp.GetParentSpanId()), Attributes: map[string]string{}}
				for k, v := range attributes(sp.GetAttributes()) {
					s.Attributes[k] = text(v)
				}
				for _, l := range sp.GetLinks() {
					s.Links = append(s.Links, SpanLink{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())})
				}
				spans = append(spans, s)
			}
		}
	}
	c.mu.Lock()
	c.spans = append(c.spans, spans...)
	c.mu.Unlock()
}

func attributes(kvs []*commonpb.KeyValue) map[string]*commonpb.AnyValue {
	m := make(map[string]*commonpb.AnyValue, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue()
	}
	return m
}

// text renders an attribute value as text.
func text(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_ArrayValue:
		var parts []string
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, text(e))
		}
		return strings.Join(parts, ",")
	}
	return ""
}

// WaitForSpans waits until match holds for the spans received, or ctx
// ends: spans arrive in batches, some time after their requests.
func (c *TraceCollector) WaitForSpans(ctx context.Context, what string, match func([]Span) bool) ([]Span, error) {
	for {
		spans := c.Spans()
		if match(spans) {
			return spans, nil
		}
		select {
		case <-ctx.Done():
			return spans, errors.New("trace collector: waiting for " + what + ": " + ctx.Err().Error())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
