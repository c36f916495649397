package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// goodEnv is a complete configuration in the shape of Pomerium's
// Kubernetes guide, with a fresh self-signed certificate.
func goodEnv(t *testing.T) map[string]string {
	t.Helper()
	certPEM, keyPEM := selfSignedCert(t)
	routes := `- from: https://k8s.example.com
  to: https://kubernetes.default.svc
  kubernetes_service_account_token: "sample.token.value"
  policy:
    - allow:
        or:
          - email:
              is: someone@example.com
`
	b64 := base64.StdEncoding.EncodeToString
	return map[string]string{
		"ADDRESS":                  "127.0.0.1:8443",
		"AUTHENTICATE_SERVICE_URL": "https://authenticate.example.com",
		"CERTIFICATE":              b64(certPEM),
		"CERTIFICATE_KEY":          b64(keyPEM),
		"COOKIE_SECRET":            b64(bytes.Repeat([]byte{7}, 32)),
		"SHARED_SECRET":            b64(bytes.Repeat([]byte{9}, 32)),
		"IDP_PROVIDER":             "oidc",
		"IDP_PROVIDER_URL":         "https://idp.example.com",
		"IDP_CLIENT_ID":            "portcullis",
		"IDP_CLIENT_SECRET":        "client-secret-value",
		"ROUTES":                   b64([]byte(routes)),
	}
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// runCmd runs the command and returns what main would exit with.
func runCmd(t *testing.T, ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut, lookup(env))
	code = exitCode(err, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheckConfigGood(t *testing.T) {
	env := goodEnv(t)
	code, stdout, stderr := runCmd(t, t.Context(), env, "--check-config")
	if code != exitOK {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr: got %q, want nothing", stderr)
	}
	for _, want := range []string{"127.0.0.1:8443", "https://k8s.example.com", "https://authenticate.example.com"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	// The summary says whether secrets are set, never what they are.
	for _, secret := range []string{env["COOKIE_SECRET"], env["IDP_CLIENT_SECRET"], "sample.token.value", "PRIVATE KEY"} {
		if strings.Contains(stdout, secret) {
			t.Errorf("the summary shows a secret (%q):\n%s", secret, stdout)
		}
	}
	if strings.Contains(stdout, "generated") {
		t.Errorf("the summary says secrets will be generated, but all are set:\n%s", stdout)
	}
}

func TestCheckConfigNamesSecretsThatWouldBeGenerated(t *testing.T) {
	env := goodEnv(t)
	delete(env, "COOKIE_SECRET")
	delete(env, "SHARED_SECRET")
	code, stdout, stderr := runCmd(t, t.Context(), env, "--check-config")
	if code != exitOK {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "generated at each start: COOKIE_SECRET, SHARED_SECRET") ||
		!strings.Contains(stdout, "more than one replica") {
		t.Errorf("the summary does not say which secrets a start would generate:\n%s", stdout)
	}
}

func TestCheckConfigBad(t *testing.T) {
	env := goodEnv(t)
	env["COOKIE_SECRET"] = "not base64!!"
	env["ADDRESS"] = "nonsense address"
	code, stdout, stderr := runCmd(t, t.Context(), env, "--check-config")
	if code != exitFailure {
		t.Errorf("exit code %d, want %d", code, exitFailure)
	}
	if stdout != "" {
		t.Errorf("stdout: got %q, want nothing", stdout)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	var problems []string
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "config: ") && !strings.HasPrefix(l, "  ") {
			t.Errorf("stderr line %q: want it to start with \"config: \"", l)
		}
		if strings.HasPrefix(l, "config: ") {
			problems = append(problems, l)
		}
	}
	if got, want := lines[len(lines)-1], "2 problem(s) found"; got != want {
		t.Errorf("last line: got %q, want %q\nstderr:\n%s", got, want, stderr)
	}
	for _, name := range []string{"COOKIE_SECRET", "ADDRESS"} {
		found := false
		for _, p := range problems {
			found = found || strings.Contains(p, name)
		}
		if !found {
			t.Errorf("no problem names %s:\n%s", name, stderr)
		}
	}
	if strings.Contains(stderr, "not base64!!") {
		t.Errorf("a (bad) secret value was printed:\n%s", stderr)
	}
}

func TestStartWithBadConfigPrintsProblems(t *testing.T) {
	env := goodEnv(t)
	env["COOKIE_SECRET"] = "not base64!!"
	code, _, stderr := runCmd(t, t.Context(), env)
	if code != exitFailure {
		t.Errorf("exit code %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr, "config: COOKIE_SECRET") || !strings.HasSuffix(stderr, "1 problem(s) found\n") {
		t.Errorf("stderr:\n%s\nwant the COOKIE_SECRET problem and \"1 problem(s) found\"", stderr)
	}
}

func TestStartAndStop(t *testing.T) {
	env := goodEnv(t)
	delete(env, "COOKIE_SECRET")
	delete(env, "SHARED_SECRET")
	env["ADDRESS"] = freeLoopbackAddr(t)
	env["LOG_FORMAT"] = "text"

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stdout, stderr logbuf.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, &stdout, &stderr, lookup(env)) }()

	// Up: the listener answers.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", env["ADDRESS"])
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not start listening on %s; stderr:\n%s", env["ADDRESS"], stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel() // as SIGTERM would
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	logs := stderr.String()
	for _, want := range []string{
		"level=WARN msg=\"generated random secrets",
		"more than one replica",
		"generated=\"[COOKIE_SECRET SHARED_SECRET]\"",
		"msg=stopped",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

func TestStartWithoutCertificate(t *testing.T) {
	env := goodEnv(t)
	delete(env, "CERTIFICATE")
	delete(env, "CERTIFICATE_KEY")
	code, _, stderr := runCmd(t, t.Context(), env)
	if code != exitFailure {
		t.Errorf("exit code %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr, "CERTIFICATE_KEY") || !strings.Contains(stderr, "INSECURE_SERVER to true") {
		t.Errorf("stderr:\n%s\nwant it to say to set CERTIFICATE/CERTIFICATE_KEY or INSECURE_SERVER to true", stderr)
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string // substring
	}{
		{name: "version", args: []string{"--version"}, wantCode: exitOK, wantStdout: "portcullis dev\n"},
		{name: "help", args: []string{"-h"}, wantCode: exitOK, wantStderr: "Usage: portcullis"},
		{name: "unknown flag", args: []string{"--nope"}, wantCode: exitUsage, wantStderr: "flag provided but not defined: -nope"},
		{name: "argument", args: []string{"serve"}, wantCode: exitUsage, wantStderr: `portcullis: unexpected argument "serve"`},
		{name: "missing config file", args: []string{"--check-config", "--config", "/nonexistent/portcullis.yaml"}, wantCode: exitFailure, wantStderr: "config: /nonexistent/portcullis.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, t.Context(), nil, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if tt.wantStdout != "" && stdout != tt.wantStdout {
				t.Errorf("stdout: got %q, want %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr: got %q, want it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func selfSignedCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	ca, err := testenv.NewCA("portcullis-main-test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err = ca.Issue("k8s.example.com", "k8s.example.com", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// TestCheckConfigWarnsOfAnInsecureAuditWebhook: a webhook whose certificate
// is not checked, or that is plain http, hands the audit trail to whoever
// is on the path; --check-config (and a start) says so.
func TestCheckConfigWarnsOfAnInsecureAuditWebhook(t *testing.T) {
	env := goodEnv(t)
	kubeconfig := t.TempDir() + "/webhook.kubeconfig"
	if err := os.WriteFile(kubeconfig, []byte(`clusters:
- name: audit
  cluster: {server: "https://audit.example.com/events", insecure-skip-tls-verify: true}
users:
- name: portcullis
  user: {token: "webhook-token"}
contexts:
- name: audit
  context: {cluster: audit, user: portcullis}
current-context: audit
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env["AUDIT_WEBHOOK_CONFIG_FILE"] = kubeconfig
	code, stdout, stderr := runCmd(t, t.Context(), env, "--check-config")
	if code != exitOK {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "warning: ") || !strings.Contains(stdout, "insecure-skip-tls-verify") || strings.Contains(stdout, "webhook-token") {
		t.Errorf("--check-config does not warn of insecure-skip-tls-verify (or shows the token):\n%s", stdout)
	}
}

// TestCheckConfigTracing: the OpenTelemetry variables are checked with the
// rest of the configuration, every problem reported at once, and the
// summary says what tracing will do.
func TestCheckConfigTracing(t *testing.T) {
	env := goodEnv(t)
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://otel-collector:4317"
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
	code, stdout, stderr := runCmd(t, t.Context(), env, "--check-config")
	if code != exitOK || !strings.Contains(stdout, "tracing: OTLP grpc to http://otel-collector:4317") {
		t.Fatalf("exit code %d, summary:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "carrier-pigeon"
	env["COOKIE_SECRET"] = "not base64!!"
	code, _, stderr = runCmd(t, t.Context(), env, "--check-config")
	if code != exitFailure || !strings.Contains(stderr, "config: OTEL_EXPORTER_OTLP_PROTOCOL") ||
		!strings.Contains(stderr, "COOKIE_SECRET") || !strings.Contains(stderr, "2 problem(s) found") {
		t.Errorf("exit code %d, stderr:\n%s\nwant both problems", code, stderr)
	}
}
