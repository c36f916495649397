package config

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadNothingGivesDefaults(t *testing.T) {
	got, err := Load("", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if diff := cmp.Diff(Defaults(), *got, ignoreLoad); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := got.Check(); err != nil {
		t.Errorf("Defaults().Check() = %v, want nil", err)
	}
}

func TestRouteDefaults(t *testing.T) {
	tests := []struct {
		name        string
		route       string // YAML keys after from and to
		wantSPDY    bool
		wantWS      bool
		wantTimeout time.Duration
		wantIdle    time.Duration
	}{
		{
			name:  "kubernetes route gets upgrades and no timeouts",
			route: "kubernetes_service_account_token: token",
			// kubectl exec, logs -f and watch must never be cut.
			wantSPDY: true, wantWS: true, wantTimeout: 0, wantIdle: 0,
		},
		{
			name:     "token file makes a kubernetes route too",
			route:    "kubernetes_service_account_token_file: /var/run/secrets/token",
			wantSPDY: true, wantWS: true, wantTimeout: 0, wantIdle: 0,
		},
		{
			name:     "kubernetes route keeps what it sets",
			route:    "kubernetes_service_account_token: token\nallow_spdy: false\ntimeout: 1m",
			wantSPDY: false, wantWS: true, wantTimeout: time.Minute, wantIdle: 0,
		},
		{
			name:     "other route",
			route:    "",
			wantSPDY: false, wantWS: false, wantTimeout: 30 * time.Second, wantIdle: 5 * time.Minute,
		},
		{
			name:     "other route with explicit zero timeouts and websockets",
			route:    "allow_websockets: true\ntimeout: 0s\nidle_timeout: 0",
			wantSPDY: false, wantWS: true, wantTimeout: 0, wantIdle: 0,
		},
		{
			name:     "null counts as unset",
			route:    "kubernetes_service_account_token: token\nallow_spdy: ~\ntimeout:",
			wantSPDY: true, wantWS: true, wantTimeout: 0, wantIdle: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "routes:\n  - from: https://a.example.com\n    to: https://b.example.com\n"
			for line := range strings.Lines(tc.route) {
				yaml += "    " + line + "\n"
			}
			o := loadYAML(t, yaml, nil)
			r := o.Routes[0]
			got := [4]any{r.AllowSPDY, r.AllowWebsockets, r.Timeout, r.IdleTimeout}
			want := [4]any{tc.wantSPDY, tc.wantWS, tc.wantTimeout, tc.wantIdle}
			if got != want {
				t.Errorf("spdy, websockets, timeout, idle = %v, want %v", got, want)
			}
		})
	}
}

// loadYAML loads config.yaml with contents data from a temporary working
// directory, failing the test on any problem.
func loadYAML(t *testing.T, data string, e env) *Options {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := Load(path, e.lookup)
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	return o
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestEnvironmentWinsOverFile(t *testing.T) {
	fileSecret := b64(strings.Repeat("f", 32))
	envSecret := b64(strings.Repeat("e", 32))
	file := `
address: ":8443"
cookie_name: file_cookie
cookie_secret: ` + fileSecret + `
log_level: debug
log_format: text
idp_scopes: [openid, email]
policy:
  - from: https://file-policy.example.com
    to: https://upstream.example.com
routes:
  - from: https://file-route.example.com
    to: https://upstream.example.com
`
	e := env{
		"ADDRESS":     ":9443",
		"COOKIE_NAME": "", // empty counts as unset: the file's value stays
		// COOKIE_SECRET_FILE in the environment replaces the file's
		// cookie_secret: they are one setting.
		"COOKIE_SECRET_FILE": "secret.txt",
		"LOG_LEVEL":          "WARN",
		"IDP_SCOPES":         "openid, profile,,groups",
		"INSECURE_SERVER":    "true",
		"ROUTES": b64("- from: https://env-route.example.com\n" +
			"  to: [https://u1.example.com, https://u2.example.com]\n"),
	}
	dir := t.TempDir()
	t.Chdir(dir)
	writeFiles(t, dir, map[string]string{"secret.txt": envSecret + "\n", "config.yaml": file})

	o, err := Load("config.yaml", e.lookup)
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	want := Defaults()
	want.Address = ":9443"
	want.CookieName = "file_cookie"
	want.CookieSecret = []byte(strings.Repeat("e", 32))
	want.LogLevel = 4 // slog.LevelWarn
	want.LogFormat = "text"
	want.IDPScopes = []string{"openid", "profile", "groups"}
	want.InsecureServer = true
	plain := func(from string, to ...string) Route {
		r := Route{From: mustURL(t, from), Timeout: 30 * time.Second, IdleTimeout: 5 * time.Minute}
		for _, u := range to {
			r.To = append(r.To, mustURL(t, u))
		}
		return r
	}
	// Policy first, then routes; ROUTES replaced the file's routes.
	want.Routes = []Route{
		plain("https://file-policy.example.com", "https://upstream.example.com"),
		plain("https://env-route.example.com", "https://u1.example.com", "https://u2.example.com"),
	}
	if diff := cmp.Diff(&want, o, ignoreLoad); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestFileSettings(t *testing.T) {
	certPEM := readTestdata(t, "guide-cert.pem")
	keyPEM := readTestdata(t, "guide-key.pem")
	signingPEM := newECKeyPEM(t)
	cookie := strings.Repeat("c", 32)
	shared := strings.Repeat("s", 48)

	dir := t.TempDir()
	t.Chdir(dir)
	writeFiles(t, dir, map[string]string{
		"cert.pem":       certPEM,
		"key.pem":        keyPEM,
		"signing.pem":    signingPEM,
		"cookie":         b64(cookie) + "\n",
		"shared":         "  " + b64(shared) + "\n",
		"client-secret":  "s3cret\n",
		"ca.pem":         certPEM,
		"client.pem":     certPEM,
		"client-key.pem": keyPEM,
		"config.yaml": `
routes:
  - from: https://k8s.example.com
    to: https://kubernetes.default.svc
    tls_custom_ca_file: ca.pem
    tls_client_cert_file: client.pem
    tls_client_key_file: client-key.pem
    # Not read at load (it is re-read on rotation): it need not exist.
    kubernetes_service_account_token_file: /nonexistent/token
`,
	})
	e := env{
		"CERTIFICATE_FILE":       "cert.pem",
		"CERTIFICATE_KEY_FILE":   "key.pem",
		"SIGNING_KEY_FILE":       "signing.pem",
		"COOKIE_SECRET_FILE":     "cookie",
		"SHARED_SECRET_FILE":     "shared",
		"IDP_CLIENT_SECRET_FILE": "client-secret",
	}
	o, err := Load("config.yaml", e.lookup)
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	r := o.Routes[0]
	for _, c := range []struct {
		name      string
		got, want string
	}{
		{"Certificate", string(o.Certificate), certPEM},
		{"CertificateKey", string(o.CertificateKey), keyPEM},
		{"SigningKey", string(o.SigningKey), signingPEM},
		{"CookieSecret", string(o.CookieSecret), cookie},
		{"SharedSecret", string(o.SharedSecret), shared},
		{"IDPClientSecret", o.IDPClientSecret, "s3cret"},
		{"TLSCustomCA", string(r.TLSCustomCA), certPEM},
		{"TLSCustomCAFile", r.TLSCustomCAFile, "ca.pem"},
		{"TLSClientCert", string(r.TLSClientCert), certPEM},
		{"TLSClientCertFile", r.TLSClientCertFile, "client.pem"},
		{"TLSClientKey", string(r.TLSClientKey), keyPEM},
		{"TLSClientKeyFile", r.TLSClientKeyFile, "client-key.pem"},
		{"KubernetesServiceAccountTokenFile", r.KubernetesServiceAccountTokenFile, "/nonexistent/token"},
		{"KubernetesServiceAccountToken", r.KubernetesServiceAccountToken, ""},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if !r.IsKubernetes() || !r.AllowSPDY {
		t.Errorf("route with a token file: IsKubernetes = %v, AllowSPDY = %v; want both true", r.IsKubernetes(), r.AllowSPDY)
	}

	// The same settings spelt as *_file keys in the file.
	writeFiles(t, dir, map[string]string{"config.yaml": `
certificate_file: cert.pem
certificate_key_file: key.pem
signing_key_file: signing.pem
cookie_secret_file: cookie
shared_secret_file: shared
idp_client_secret_file: client-secret
`})
	o2, err := Load("config.yaml", nil)
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	o.Routes = nil
	if diff := cmp.Diff(o, o2, ignoreLoad); diff != "" {
		t.Errorf("*_file keys in the file differ from *_FILE variables (-env +file):\n%s", diff)
	}
}

func TestIDPScopes(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  env
		want []string
	}{
		{name: "env comma list", env: env{"IDP_SCOPES": "openid, email,,profile "}, want: []string{"openid", "email", "profile"}},
		{name: "yaml list", file: "idp_scopes: [openid, email]", want: []string{"openid", "email"}},
		{name: "yaml comma string", file: "idp_scopes: openid,email", want: []string{"openid", "email"}},
		{name: "unset", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := loadYAML(t, tc.file, tc.env)
			if diff := cmp.Diff(tc.want, o.IDPScopes); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRouteListForms(t *testing.T) {
	routes := "- from: https://a.example.com\n  to: https://b.example.com\n"
	tests := []struct {
		name     string
		file     string
		env      env
		wantFrom []string
	}{
		{
			name:     "policy as base64 string in the file",
			file:     "policy: " + b64(routes),
			wantFrom: []string{"https://a.example.com"},
		},
		{
			name:     "env POLICY and ROUTES: policy first",
			env:      env{"ROUTES": b64(routes), "POLICY": b64(strings.ReplaceAll(routes, "a.example", "p.example"))},
			wantFrom: []string{"https://p.example.com", "https://a.example.com"},
		},
		{
			name:     "base64 wrapped at 76 columns and unpadded",
			env:      env{"POLICY": wrap(strings.TrimRight(b64(routes+"# padding\n"), "="), 76)},
			wantFrom: []string{"https://a.example.com"},
		},
		{
			// Unknown top-level keys are problems, so anchors for reuse
			// live on the first route that uses them.
			name: "anchors, aliases and merge keys",
			file: `
routes:
  - &base
    from: https://one.example.com
    to: https://kubernetes.default.svc
    kubernetes_service_account_token: token
    policy: &policy
      - allow: {or: [{email: {is: a@example.com}}]}
  - <<: *base
    from: https://two.example.com
    policy: *policy
`,
			wantFrom: []string{"https://one.example.com", "https://two.example.com"},
		},
		{
			name:     "empty list",
			file:     "routes: []\npolicy:",
			wantFrom: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := loadYAML(t, tc.file, tc.env)
			var got []string
			for _, r := range o.Routes {
				got = append(got, r.From.String())
			}
			if diff := cmp.Diff(tc.wantFrom, got); diff != "" {
				t.Errorf("froms (-want +got):\n%s", diff)
			}
			if len(o.Routes) == 2 && o.Routes[1].Policy != nil {
				// The merged route is its base but for from.
				base, merged := o.Routes[0], o.Routes[1]
				merged.From = base.From
				if diff := cmp.Diff(base, merged, ignorePositions); diff != "" {
					t.Errorf("(-base +merged):\n%s", diff)
				}
			}
		})
	}
}

// wrap breaks s into lines of n characters, as base64 does by default.
func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

func TestPolicyParse(t *testing.T) {
	crit := func(name string, v any) PolicyExpr { return PolicyExpr{Criterion: name, Value: v} }
	op := func(name string, children ...PolicyExpr) PolicyExpr { return PolicyExpr{Op: name, Children: children} }
	tests := []struct {
		name   string
		policy string // the route's policy: value, indented under it
		want   *Policy
	}{
		{
			name:   "single rule",
			policy: "allow:\n  and:\n    - email: {is: a@example.com}",
			want: &Policy{Rules: []PolicyRule{{Action: "allow",
				Root: op("and", crit("email", map[string]any{"is": "a@example.com"}))}}},
		},
		{
			name: "list of rules with deny and bare values",
			policy: "- allow:\n    or:\n      - domain: example.com\n      - groups: {has: [sre, ops]}\n" +
				"- deny:\n    not:\n      - accept: true\n      - claim/level: 3",
			want: &Policy{Rules: []PolicyRule{
				{Action: "allow", Root: op("or",
					crit("domain", "example.com"),
					crit("groups", map[string]any{"has": []any{"sre", "ops"}}))},
				{Action: "deny", Root: op("not", crit("accept", true), crit("claim/level", 3))},
			}},
		},
		{
			name: "several operators in one body are separate rules",
			// Pomerium ORs the operators of a body, like separate rules.
			policy: "allow:\n  and: [{email: a@example.com}]\n  nor: [{user: b}]\ndeny:\n  or: []",
			want: &Policy{Rules: []PolicyRule{
				{Action: "allow", Root: op("and", crit("email", "a@example.com"))},
				{Action: "allow", Root: op("nor", crit("user", "b"))},
				{Action: "deny", Root: op("or")},
			}},
		},
		{
			name:   "nested operators",
			policy: "allow:\n  and:\n    - or: [{groups: sre}, {groups: ops}]\n    - http_method: GET",
			want: &Policy{Rules: []PolicyRule{{Action: "allow", Root: op("and",
				op("or", crit("groups", "sre"), crit("groups", "ops")),
				crit("http_method", "GET"))}}},
		},
		{
			name:   "unknown criteria are kept for the policy package",
			policy: "{allow: {or: [{emial: a@example.com}]}}",
			want:   &Policy{Rules: []PolicyRule{{Action: "allow", Root: op("or", crit("emial", "a@example.com"))}}},
		},
		{
			name:   "empty list",
			policy: "[]",
			want:   nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "routes:\n  - from: https://a.example.com\n    to: https://b.example.com\n    policy:\n"
			for line := range strings.Lines(tc.policy) {
				yaml += "      " + line + "\n"
			}
			if !strings.Contains(tc.policy, "\n") {
				yaml = strings.Replace(yaml, "policy:\n      ", "policy: ", 1)
			}
			o := loadYAML(t, yaml, nil)
			if diff := cmp.Diff(tc.want, o.Routes[0].Policy, ignorePositions); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestGenerateMissingSecrets(t *testing.T) {
	o := Defaults()
	o.SharedSecret = []byte(strings.Repeat("s", 32))
	got := o.GenerateMissingSecrets()
	if diff := cmp.Diff([]string{"COOKIE_SECRET"}, got); diff != "" {
		t.Errorf("generated (-want +got):\n%s", diff)
	}
	if len(o.CookieSecret) != 32 {
		t.Errorf("len(CookieSecret) = %d, want 32", len(o.CookieSecret))
	}
	if string(o.SharedSecret) != strings.Repeat("s", 32) {
		t.Errorf("SharedSecret was replaced; a set secret must be kept")
	}
	if err := o.Check(); err != nil {
		t.Errorf("Check after GenerateMissingSecrets: %v", err)
	}
	if got := o.GenerateMissingSecrets(); got != nil {
		t.Errorf("second call generated %v, want nothing", got)
	}
}

func TestSummaryShowsNoSecrets(t *testing.T) {
	e := readEnvFile(t, "testdata/guide.env")
	o, err := Load("", e.lookup)
	if err != nil {
		t.Fatal(err)
	}
	o.SharedSecret = []byte("shared-secret-value-0123456789abcdef")
	o.SigningKey = []byte(newECKeyPEM(t))
	o.Routes[0].TLSClientKey = []byte("client-key-value")
	o.IDPClientSecret = "client-secret-value"
	s := o.Summary()
	for name, secret := range map[string]string{
		"COOKIE_SECRET":                    e["COOKIE_SECRET"],
		"cookie secret bytes":              string(o.CookieSecret),
		"client secret":                    o.IDPClientSecret,
		"CERTIFICATE_KEY":                  e["CERTIFICATE_KEY"],
		"certificate key PEM":              string(o.CertificateKey),
		"kubernetes_service_account_token": o.Routes[0].KubernetesServiceAccountToken,
		"shared secret":                    string(o.SharedSecret),
		"signing key":                      string(o.SigningKey),
		"client key":                       "client-key-value",
	} {
		if strings.Contains(s, secret) {
			t.Errorf("Summary shows the %s:\n%s", name, s)
		}
	}
}

// TestBuiltinTokenTTL: IDP_BUILTIN_TOKEN_TTL defaults to an hour, and is
// read from the environment or the file (environment first).
func TestBuiltinTokenTTL(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  env
		want time.Duration
	}{
		{name: "default", want: time.Hour},
		{name: "environment", env: env{"IDP_BUILTIN_TOKEN_TTL": "5s"}, want: 5 * time.Second},
		{name: "file", file: "idp_builtin_token_ttl: 90s\n", want: 90 * time.Second},
		{name: "environment wins", file: "idp_builtin_token_ttl: 90s\n", env: env{"IDP_BUILTIN_TOKEN_TTL": "1m"}, want: time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := loadYAML(t, "address: \":443\"\n"+tc.file, tc.env)
			if o.IDPBuiltinTokenTTL != tc.want {
				t.Errorf("IDPBuiltinTokenTTL: got %v, want %v", o.IDPBuiltinTokenTTL, tc.want)
			}
			if err := o.Check(); err != nil {
				t.Errorf("Check: %v", err)
			}
		})
	}
}

// TestRelativePaths: a relative path in the config file is relative to the
// file's directory, wherever Portcullis runs from; one in the environment
// is relative to the working directory.
func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	secret := bytes.Repeat([]byte{1}, 32)
	writeTestFile(t, filepath.Join(dir, "conf", "cookie-secret"), base64.StdEncoding.EncodeToString(secret))
	writeTestFile(t, filepath.Join(dir, "conf", "portcullis.yaml"), `cookie_secret_file: cookie-secret
idp_users_file: users.yaml
routes:
  - from: https://k8s.example.com
    to: https://kubernetes.default.svc
    kubernetes_service_account_token_file: tokens/sa
`)
	t.Chdir(dir) // somewhere else than the config file
	o, err := Load("conf/portcullis.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.CookieSecret, secret) {
		t.Errorf("cookie_secret_file: read %q", o.CookieSecret)
	}
	if want := filepath.Join("conf", "users.yaml"); o.IDPUsersFile != want {
		t.Errorf("idp_users_file: got %q, want %q", o.IDPUsersFile, want)
	}
	if want := filepath.Join("conf", "tokens", "sa"); o.Routes[0].KubernetesServiceAccountTokenFile != want {
		t.Errorf("kubernetes_service_account_token_file: got %q, want %q", o.Routes[0].KubernetesServiceAccountTokenFile, want)
	}
	o, err = Load("", env{"IDP_USERS_FILE": "users.yaml", "COOKIE_SECRET_FILE": "conf/cookie-secret"}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if o.IDPUsersFile != "users.yaml" || !bytes.Equal(o.CookieSecret, secret) {
		t.Errorf("from the environment: IDP_USERS_FILE %q, cookie secret %q; want them relative to the working directory", o.IDPUsersFile, o.CookieSecret)
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
