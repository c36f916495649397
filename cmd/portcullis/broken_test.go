package main

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/server"
)

// brokenCase is a configuration with something wrong: the good one
// (goodEnv) changed by edit, and optionally a config file.
type brokenCase struct {
	name string
	// edit changes the environment; dir is a directory for files the
	// case writes.
	edit func(t *testing.T, env map[string]string, dir string)
	// file, if set, is written to dir/portcullis.yaml and passed with
	// --config.
	file string
	// want are substrings of the one problem reported, naming the setting
	// and saying what is wrong.
	want []string
}

// route is the good configuration's route with extra keys, as ROUTES.
func routes(yaml string) string { return base64.StdEncoding.EncodeToString([]byte(yaml)) }

const kubeRoute = `- from: https://k8s.example.com
  to: https://kubernetes.default.svc
  kubernetes_service_account_token: "sample.token.value"
  allow_any_authenticated_user: true
`

func brokenCases() []brokenCase {
	write := func(dir, name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			panic(err)
		}
		return p
	}
	return []brokenCase{
		// The identity provider: what idp.New refuses, the check refuses.
		{name: "unknown provider", edit: func(_ *testing.T, e map[string]string, _ string) { e["IDP_PROVIDER"] = "okat" },
			want: []string{"IDP_PROVIDER", `"okat" is not supported`, `did you mean "okta"`}},
		{name: "oidc without a URL", edit: func(_ *testing.T, e map[string]string, _ string) { delete(e, "IDP_PROVIDER_URL") },
			want: []string{"IDP_PROVIDER_URL", "not set"}},
		{name: "oidc without a client id", edit: func(_ *testing.T, e map[string]string, _ string) { delete(e, "IDP_CLIENT_ID") },
			want: []string{"IDP_CLIENT_ID", "not set"}},
		{name: "google without a client id", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["IDP_PROVIDER"] = "google"
			delete(e, "IDP_PROVIDER_URL")
			delete(e, "IDP_CLIENT_ID")
		}, want: []string{"IDP_CLIENT_ID", "not set"}},
		{name: "google without a client secret", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["IDP_PROVIDER"] = "google"
			delete(e, "IDP_PROVIDER_URL")
			delete(e, "IDP_CLIENT_SECRET")
		}, want: []string{"IDP_CLIENT_SECRET", `"google" refuses a sign-in without`}},
		{name: "azure common tenant", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["IDP_PROVIDER"] = "azure"
			e["IDP_PROVIDER_URL"] = "https://login.microsoftonline.com/common/v2.0"
		}, want: []string{"IDP_PROVIDER_URL", `"common" accepts accounts of any tenant`}},
		{name: "github with a groups claim", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["IDP_PROVIDER"] = "github"
			delete(e, "IDP_PROVIDER_URL")
			e["IDP_GROUPS_CLAIM"] = "groups"
		}, want: []string{"IDP_GROUPS_CLAIM", "does not apply"}},
		{name: "reserved request parameter", edit: func(_ *testing.T, e map[string]string, _ string) { e["IDP_REQUEST_PARAMS"] = "state=x" },
			want: []string{"IDP_REQUEST_PARAMS", `"state"`}},
		{name: "provider without authenticate URL", edit: func(_ *testing.T, e map[string]string, _ string) { delete(e, "AUTHENTICATE_SERVICE_URL") },
			want: []string{"IDP_PROVIDER", "AUTHENTICATE_SERVICE_URL is not"}},
		{name: "builtin without users file", edit: func(_ *testing.T, e map[string]string, _ string) { e["IDP_PROVIDER"] = "builtin" },
			want: []string{"IDP_PROVIDER", "builtin needs IDP_USERS_FILE"}},
		{name: "builtin with a missing users file", edit: func(_ *testing.T, e map[string]string, dir string) {
			e["IDP_PROVIDER"] = "builtin"
			e["IDP_USERS_FILE"] = filepath.Join(dir, "nope.yaml")
		}, want: []string{"IDP_USERS_FILE", "no such file"}},
		{name: "builtin with a broken users file", edit: func(_ *testing.T, e map[string]string, dir string) {
			e["IDP_PROVIDER"] = "builtin"
			e["IDP_USERS_FILE"] = write(dir, "users.yaml", "- email: a@example.com\n  password_hash: not-a-hash\n")
		}, want: []string{"IDP_USERS_FILE", "users.yaml:2"}},
		{name: "builtin token TTL under a second", edit: func(_ *testing.T, e map[string]string, _ string) { e["IDP_BUILTIN_TOKEN_TTL"] = "100ms" },
			want: []string{"IDP_BUILTIN_TOKEN_TTL", "less than 1s"}},
		{name: "scope with a space", edit: func(_ *testing.T, e map[string]string, _ string) { e["IDP_SCOPES"] = "openid,e mail" },
			want: []string{"IDP_SCOPES", `"e mail" is not valid`}},

		// TLS.
		{name: "no certificate", edit: func(_ *testing.T, e map[string]string, _ string) {
			delete(e, "CERTIFICATE")
			delete(e, "CERTIFICATE_KEY")
		}, want: []string{"CERTIFICATE", "no TLS certificate", "INSECURE_SERVER"}},
		{name: "certificate without key", edit: func(_ *testing.T, e map[string]string, _ string) { delete(e, "CERTIFICATE_KEY") },
			want: []string{"CERTIFICATE", "CERTIFICATE_KEY"}},
		{name: "key of another certificate", edit: func(t *testing.T, e map[string]string, _ string) {
			_, key := selfSignedCert(t)
			e["CERTIFICATE_KEY"] = base64.StdEncoding.EncodeToString(key)
		}, want: []string{"CERTIFICATE", "match"}},
		{name: "certificate not PEM", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["CERTIFICATE"] = base64.StdEncoding.EncodeToString([]byte("hello"))
		},
			want: []string{"CERTIFICATE", "PEM"}},
		{name: "certificate file missing", edit: func(_ *testing.T, e map[string]string, dir string) {
			delete(e, "CERTIFICATE")
			e["CERTIFICATE_FILE"] = filepath.Join(dir, "nope.pem")
		}, want: []string{"CERTIFICATE_FILE", "no such file"}},

		// Secrets and the listener.
		{name: "cookie secret of 16 bytes", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["COOKIE_SECRET"] = base64.StdEncoding.EncodeToString(make([]byte, 16))
		}, want: []string{"COOKIE_SECRET", "16 bytes, want 32"}},
		{name: "cookie secret not base64", edit: func(_ *testing.T, e map[string]string, _ string) { e["COOKIE_SECRET"] = "not base64!!" },
			want: []string{"COOKIE_SECRET", "base64"}},
		{name: "shared secret too short", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["SHARED_SECRET"] = base64.StdEncoding.EncodeToString(make([]byte, 8))
		}, want: []string{"SHARED_SECRET", "want at least 32"}},
		{name: "signing key not a key", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["SIGNING_KEY"] = base64.StdEncoding.EncodeToString([]byte("-----BEGIN NOTHING-----\n"))
		}, want: []string{"SIGNING_KEY"}},
		{name: "secret file missing", edit: func(_ *testing.T, e map[string]string, dir string) {
			delete(e, "COOKIE_SECRET")
			e["COOKIE_SECRET_FILE"] = filepath.Join(dir, "nope")
		}, want: []string{"COOKIE_SECRET_FILE", "no such file"}},
		{name: "address", edit: func(_ *testing.T, e map[string]string, _ string) { e["ADDRESS"] = "nonsense address" },
			want: []string{"ADDRESS"}},
		{name: "metrics on the main address", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ADDRESS"], e["METRICS_ADDRESS"] = "127.0.0.1:8443", "127.0.0.1:8443"
		},
			want: []string{"METRICS_ADDRESS", "also ADDRESS"}},
		{name: "log level", edit: func(_ *testing.T, e map[string]string, _ string) { e["LOG_LEVEL"] = "loud" },
			want: []string{"LOG_LEVEL"}},
		{name: "cookie name", edit: func(_ *testing.T, e map[string]string, _ string) { e["COOKIE_NAME"] = "bad name" },
			want: []string{"COOKIE_NAME", "not a valid cookie name"}},
		{name: "cookie expiry", edit: func(_ *testing.T, e map[string]string, _ string) { e["COOKIE_EXPIRE"] = "-1h" },
			want: []string{"COOKIE_EXPIRE", "not positive"}},
		{name: "limit of zero", edit: func(_ *testing.T, e map[string]string, _ string) { e["LIMIT_CONNECTIONS"] = "0" },
			want: []string{"LIMIT_CONNECTIONS", `"0" is not a limit`, "from 1"}},
		{name: "limit not a number", edit: func(_ *testing.T, e map[string]string, _ string) { e["LIMIT_SIGN_INS_PER_MINUTE"] = "lots" },
			want: []string{"LIMIT_SIGN_INS_PER_MINUTE", `"lots" is not a limit`}},

		// Routes.
		{name: "in-cluster route outside a pod", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes("- from: https://k8s.example.com\n  kubernetes_in_cluster: true\n  allow_any_authenticated_user: true\n")
		}, want: []string{"kubernetes_in_cluster", "not running in a Kubernetes pod", "KUBERNETES_SERVICE_HOST"}},
		{name: "token file missing", edit: func(_ *testing.T, e map[string]string, dir string) {
			e["ROUTES"] = routes("- from: https://k8s.example.com\n  to: https://kubernetes.default.svc\n  allow_any_authenticated_user: true\n  kubernetes_service_account_token_file: " + filepath.Join(dir, "nope") + "\n")
		}, want: []string{"kubernetes_service_account_token_file", "no such file"}},
		{name: "token file empty", edit: func(_ *testing.T, e map[string]string, dir string) {
			e["ROUTES"] = routes("- from: https://k8s.example.com\n  to: https://kubernetes.default.svc\n  allow_any_authenticated_user: true\n  kubernetes_service_account_token_file: " + write(dir, "token", "\n") + "\n")
		}, want: []string{"kubernetes_service_account_token_file", "the token is empty"}},
		{name: "inline token with a space", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes("- from: https://k8s.example.com\n  to: https://kubernetes.default.svc\n  allow_any_authenticated_user: true\n  kubernetes_service_account_token: \"not a token\"\n")
		}, want: []string{"kubernetes_service_account_token", "space"}},
		{name: "token and token file", edit: func(_ *testing.T, e map[string]string, dir string) {
			e["ROUTES"] = routes(kubeRoute + "  kubernetes_service_account_token_file: " + write(dir, "token", "abc") + "\n")
		}, want: []string{"kubernetes_service_account_token_file", "set only one of them"}},
		{name: "hosts differing in case", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes(kubeRoute + "- from: https://K8S.Example.com\n  to: https://other.example.com\n  allow_any_authenticated_user: true\n")
		}, want: []string{"from", "answers the same requests as"}},
		{name: "hosts differing in a trailing dot", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes(kubeRoute + "- from: https://k8s.example.com.\n  to: https://other.example.com\n  allow_any_authenticated_user: true\n")
		}, want: []string{"from", "answers the same requests as"}},
		{name: "hosts differing in scheme", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes(kubeRoute + "- from: http://k8s.example.com\n  to: https://other.example.com\n  allow_any_authenticated_user: true\n")
		}, want: []string{"from", "answers the same requests as"}},
		{name: "authenticate host is a route's", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["AUTHENTICATE_SERVICE_URL"] = "https://K8S.example.com"
		},
			want: []string{"AUTHENTICATE_SERVICE_URL", "give the sign-in service a host of its own"}},
		{name: "route without to", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes("- from: https://k8s.example.com\n  allow_any_authenticated_user: true\n")
		}, want: []string{"no to"}},
		{name: "to not a URL", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes("- from: https://k8s.example.com\n  to: kubernetes\n  allow_any_authenticated_user: true\n")
		}, want: []string{"to:"}},
		{name: "custom CA not PEM", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes(kubeRoute + "  tls_custom_ca: " + base64.StdEncoding.EncodeToString([]byte("hello")) + "\n")
		}, want: []string{"tls_custom_ca", "no PEM certificate"}},
		{name: "client certificate without key", edit: func(t *testing.T, e map[string]string, _ string) {
			cert, _ := selfSignedCert(t)
			e["ROUTES"] = routes(kubeRoute + "  tls_client_cert: " + base64.StdEncoding.EncodeToString(cert) + "\n")
		}, want: []string{"tls_client_cert", "tls_client_key"}},
		{name: "public Kubernetes route", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes("- from: https://k8s.example.com\n  to: https://kubernetes.default.svc\n  kubernetes_service_account_token: abc\n  allow_public_unauthenticated_access: true\n")
		}, want: []string{"allow_public_unauthenticated_access", "not allowed on a Kubernetes route"}},
		{name: "system names on a plain route", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes("- from: https://app.example.com\n  to: https://app.internal\n  allow_any_authenticated_user: true\n  kubernetes_allow_system_names: true\n")
		}, want: []string{"kubernetes_allow_system_names", "not a Kubernetes route"}},
		{name: "negative timeout", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes(kubeRoute + "  timeout: -1s\n")
		}, want: []string{"timeout", "negative"}},
		{name: "unknown criterion", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes("- from: https://k8s.example.com\n  to: https://kubernetes.default.svc\n  kubernetes_service_account_token: abc\n  policy:\n    - allow:\n        or:\n          - emial: {is: a@example.com}\n")
		}, want: []string{"emial", `did you mean "email"`}},
		{name: "unknown operator", edit: func(_ *testing.T, e map[string]string, _ string) {
			e["ROUTES"] = routes("- from: https://k8s.example.com\n  to: https://kubernetes.default.svc\n  kubernetes_service_account_token: abc\n  policy:\n    - allow:\n        xor:\n          - email: {is: a@example.com}\n")
		}, want: []string{`unknown operator "xor"`}},
		// The file: line numbers.
		{name: "unknown key in the file", file: "adress: \":443\"\n", want: []string{"portcullis.yaml:1", "adress", `did you mean "address"`}},
		{name: "token file missing, in the file", edit: func(_ *testing.T, e map[string]string, _ string) { delete(e, "ROUTES") },
			file: "routes:\n  - from: https://k8s.example.com\n    to: https://kubernetes.default.svc\n    allow_any_authenticated_user: true\n    kubernetes_service_account_token_file: /nonexistent/token\n",
			want: []string{"portcullis.yaml:5", "routes[0].kubernetes_service_account_token_file", "no such file"}},
		{name: "unknown provider, in the file", edit: func(_ *testing.T, e map[string]string, _ string) { delete(e, "IDP_PROVIDER") },
			file: "idp_provider: okat\n", want: []string{"portcullis.yaml:1", "idp_provider", `"okat" is not supported`}},
	}
}

// TestBrokenConfigurations: for every broken configuration, --check-config
// fails naming the setting, a start fails with the same problem before it
// listens, and server.New, given Options that config alone accepted,
// refuses them with the same problem too: one validation path.
func TestBrokenConfigurations(t *testing.T) {
	cases := brokenCases()
	if len(cases) < 40 {
		t.Fatalf("%d broken configurations, want at least 40", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			env := goodEnv(t)
			env["ADDRESS"] = "127.0.0.1:0"
			if tc.edit != nil {
				tc.edit(t, env, dir)
			}
			var args []string
			path := ""
			if tc.file != "" {
				path = filepath.Join(dir, "portcullis.yaml")
				if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = []string{"--config", path}
			}
			contains := func(what, got string) {
				t.Helper()
				for _, w := range tc.want {
					if !strings.Contains(got, w) {
						t.Errorf("%s: %q lacks %q", what, got, w)
					}
				}
			}

			code, stdout, checkErr := runCmd(t, t.Context(), env, append([]string{"--check-config"}, args...)...)
			if code != exitFailure || stdout != "" {
				t.Errorf("--check-config: exit %d, stdout %q; want %d and nothing", code, stdout, exitFailure)
			}
			contains("--check-config", checkErr)

			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			code, _, startErr := runCmd(t, ctx, env, args...)
			if code != exitFailure {
				t.Errorf("start: exit %d, want %d; stderr:\n%s", code, exitFailure, startErr)
			}
			if startErr != checkErr {
				t.Errorf("start said\n%s\nwant what --check-config said:\n%s", startErr, checkErr)
			}

			// Options config accepts on its own, the server refuses with
			// the same words.
			opts, err := config.Load(path, lookup(env))
			if err != nil {
				return // config's own problem: Load refuses it for both
			}
			_, err = server.New(opts, nil)
			var cerr *server.ConfigError
			if !errors.As(err, &cerr) {
				t.Fatalf("server.New: got %v, want a *server.ConfigError", err)
			}
			for _, p := range config.Problems(cerr.Err) {
				if !strings.Contains(checkErr, p.Error()) {
					t.Errorf("server.New said %q, which --check-config did not:\n%s", p, checkErr)
				}
			}
		})
	}
}
