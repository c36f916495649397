package tracing

import (
	"strings"
	"testing"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name         string
		env          map[string]string
		wantEnabled  bool
		wantSummary  string
		wantProblems []string // each a substring of the error
	}{
		{name: "nothing set", env: nil, wantSummary: "off (set OTEL_EXPORTER_OTLP_ENDPOINT"},
		{name: "a protocol alone turns nothing on", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, wantSummary: "off"},
		{name: "an endpoint, http/protobuf by default",
			env:         map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
			wantEnabled: true, wantSummary: "OTLP http/protobuf to http://collector:4318/v1/traces, sampler parentbased_always_on"},
		{name: "the traces endpoint is used as it is",
			env:         map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector/custom"},
			wantEnabled: true, wantSummary: "OTLP http/protobuf to https://collector/custom,"},
		{name: "grpc",
			env:         map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			wantEnabled: true, wantSummary: "OTLP grpc to http://collector:4317,"},
		{name: "the traces protocol wins",
			env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
				"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
			wantEnabled: true, wantSummary: "OTLP grpc to"},
		{name: "otlp named without an endpoint: the protocol's default",
			env:         map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			wantEnabled: true, wantSummary: "OTLP http/protobuf to http://localhost:4318/v1/traces"},
		{name: "a ratio sampler",
			env:         map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
			wantEnabled: true, wantSummary: "OTLP http/protobuf to http://c:4318/v1/traces, sampler parentbased_traceidratio 0.25"},
		{name: "disabled wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, wantSummary: "off"},
		{name: "exporter none wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, wantSummary: "off"},

		{name: "every problem at once",
			env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
				"OTEL_TRACES_SAMPLER": "sometimes", "OTEL_TRACES_EXPORTER": "zipkin"},
			wantProblems: []string{`OTEL_TRACES_EXPORTER: "zipkin" is not supported`, "OTEL_EXPORTER_OTLP_PROTOCOL: http/json is not supported",
				`OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" is not a URL`, `OTEL_TRACES_SAMPLER: "sometimes" is not a sampler`}},
		{name: "an unknown protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"},
			wantProblems: []string{`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "udp" is not an OTLP protocol`}},
		{name: "credentials in the URL would reach the logs", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://user:secret@c/v1/traces"},
			wantProblems: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the URL holds a user name or password"}},
		{name: "a ratio out of range", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
			wantProblems: []string{`OTEL_TRACES_SAMPLER_ARG: "2" is not a ratio from 0 to 1`}},
		{name: "disabled, but not a boolean", env: map[string]string{"OTEL_SDK_DISABLED": "yes please"},
			wantProblems: []string{`OTEL_SDK_DISABLED: "yes please" is not true or false`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := FromEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if len(tt.wantProblems) > 0 {
				if err == nil {
					t.Fatalf("got no error, want %q", tt.wantProblems)
				}
				for _, p := range tt.wantProblems {
					if !strings.Contains(err.Error(), p) {
						t.Errorf("error %q does not say %q", err, p)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Enabled != tt.wantEnabled || !strings.HasPrefix(s.Summary(), tt.wantSummary) {
				t.Errorf("got enabled %v, %q; want %v, %q…", s.Enabled, s.Summary(), tt.wantEnabled, tt.wantSummary)
			}
		})
	}
}
