package tracing

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The OpenTelemetry environment variables Portcullis reads itself, as the
// specification names them
// (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/,
// https://opentelemetry.io/docs/specs/otel/protocol/exporter/). The
// exporters read the rest (headers, timeout, certificates, compression)
// from the environment themselves.
const (
	envSDKDisabled     = "OTEL_SDK_DISABLED"
	envTracesExporter  = "OTEL_TRACES_EXPORTER"
	envEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol        = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol  = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envSampler         = "OTEL_TRACES_SAMPLER"
	envSamplerArg      = "OTEL_TRACES_SAMPLER_ARG"
	protocolGRPC       = "grpc"
	protocolHTTP       = "http/protobuf"
	defaultHTTPTraces  = "http://localhost:4318/v1/traces"
	defaultGRPCTraces  = "http://localhost:4317"
	defaultSamplerName = "parentbased_always_on"
)

// Settings are the tracing settings of the environment.
type Settings struct {
	// Enabled: an OTLP endpoint is set (or OTEL_TRACES_EXPORTER=otlp), and
	// neither OTEL_SDK_DISABLED nor OTEL_TRACES_EXPORTER=none says no.
	Enabled bool
	// Protocol is grpc or http/protobuf (the default, as the
	// specification says).
	Protocol string
	// Endpoint is where traces go, for the start-up log and
	// --check-config; the exporter reads it from the environment.
	Endpoint string
	// SamplerName is OTEL_TRACES_SAMPLER with its argument, for display.
	SamplerName string
	sampler     sdktrace.Sampler
}

// FromEnv reads the tracing settings from the environment (lookupEnv is
// os.LookupEnv outside tests), and reports every problem in them at once,
// naming the variable.
func FromEnv(lookupEnv func(string) (string, bool)) (Settings, error) {
	get := func(k string) string {
		v, _ := lookupEnv(k)
		return strings.TrimSpace(v)
	}
	var s Settings
	var errs []error
	if v := get(envSDKDisabled); v != "" {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not true or false", envSDKDisabled, v))
		}
		if disabled {
			return s, errors.Join(errs...)
		}
	}
	exporterNamed := false
	switch v := strings.ToLower(get(envTracesExporter)); v {
	case "":
	case "none":
		return s, errors.Join(errs...)
	case "otlp":
		exporterNamed = true
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not supported; Portcullis exports traces over OTLP: set otlp (or none, or leave it unset)", envTracesExporter, v))
	}

	s.Protocol = protocolHTTP
	protoVar := envProtocol
	if v := get(envTracesProtocol); v != "" {
		s.Protocol, protoVar = v, envTracesProtocol
	} else if v := get(envProtocol); v != "" {
		s.Protocol = v
	}
	switch s.Protocol {
	case protocolGRPC, protocolHTTP:
	case "http/json":
		errs = append(errs, fmt.Errorf("%s: http/json is not supported; set http/protobuf or grpc", protoVar))
	default:
		errs = append(errs, fmt.Errorf("%s: %q is not an OTLP protocol; set http/protobuf (port 4318) or grpc (port 4317)", protoVar, s.Protocol))
	}

	endpointVar, endpoint := envTracesEndpoint, get(envTracesEndpoint)
	if endpoint == "" {
		endpointVar, endpoint = envEndpoint, get(envEndpoint)
	}
	if endpoint == "" && !exporterNamed {
		// No collector named: tracing is off, whatever else is set.
		return Settings{}, errors.Join(errs...)
	}
	s.Enabled = true
	switch {
	case endpoint != "":
		if err := checkEndpoint(endpoint); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", endpointVar, err))
		}
		s.Endpoint = endpoint
		if endpointVar == envEndpoint && s.Protocol == protocolHTTP {
			// The base URL: the exporter adds the signal's path.
			s.Endpoint = strings.TrimSuffix(endpoint, "/") + "/v1/traces"
		}
	case s.Protocol == protocolGRPC:
		s.Endpoint = defaultGRPCTraces
	default:
		s.Endpoint = defaultHTTPTraces
	}

	var err error
	if s.sampler, s.SamplerName, err = samplerFromEnv(get(envSampler), get(envSamplerArg)); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// checkEndpoint requires an http or https URL with a host: what both
// exporters take. A URL with user information would put a secret in the
// logs that show the endpoint; OTEL_EXPORTER_OTLP_HEADERS is the place for
// credentials.
func checkEndpoint(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not a URL such as http://otel-collector:4318 (http/protobuf) or http://otel-collector:4317 (grpc)", v)
	}
	if u.User != nil {
		return errors.New("the URL holds a user name or password; put credentials in OTEL_EXPORTER_OTLP_HEADERS instead")
	}
	return nil
}

// samplerFromEnv is the sampler OTEL_TRACES_SAMPLER and its argument name,
// as the specification defines them; parentbased_always_on by default.
// Portcullis starts every trace itself (see Tracer.StartRequest), so the
// parent-based samplers decide as their root sampler does.
func samplerFromEnv(name, arg string) (sdktrace.Sampler, string, error) {
	name = strings.ToLower(name)
	if name == "" {
		name = defaultSamplerName
	}
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("%s: %q is not a ratio from 0 to 1", envSamplerArg, arg)
		}
		return r, nil
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), name, nil
	case "always_off":
		return sdktrace.NeverSample(), name, nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), name, nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), name, nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, "", err
		}
		s := sdktrace.TraceIDRatioBased(r)
		if name == "parentbased_traceidratio" {
			s = sdktrace.ParentBased(s)
		}
		return s, name + " " + strconv.FormatFloat(r, 'g', -1, 64), nil
	}
	return nil, "", fmt.Errorf("%s: %q is not a sampler; set always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", envSampler, name)
}

// Summary says in one line what tracing does, for --check-config and the
// start-up log.
func (s Settings) Summary() string {
	if !s.Enabled {
		return "off (set OTEL_EXPORTER_OTLP_ENDPOINT to send traces to an OTLP collector)"
	}
	return fmt.Sprintf("OTLP %s to %s, sampler %s", s.Protocol, s.Endpoint, s.SamplerName)
}
