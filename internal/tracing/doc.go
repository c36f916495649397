// Package tracing sends OpenTelemetry traces of the requests Portcullis
// serves to an OTLP collector, set up from the standard OTEL_* environment
// variables (Settings, FromEnv), and carries a request's trace context to
// the upstream in the W3C traceparent header.
//
// It owns the trust boundary of trace context: a trace starts at
// Portcullis. A client's traceparent never becomes the parent of
// Portcullis's spans (it would let a client choose trace ids and force
// sampling); it is kept as a span link. With tracing off, a nil *Tracer
// does nothing and costs a nil check.
//
// It must not decide anything about a request or record personal data in
// spans: who made a request is in the audit trail, joined to a trace by the
// audit id the spans carry.
package tracing
