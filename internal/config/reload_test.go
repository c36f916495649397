package config

import (
	"encoding/base64"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// restartEnvs gives every setting that needs a restart (setting.restart)
// a value in a and a different one in b. A restart setting added without
// a line here fails TestRestartRequired, naming it.
// (The storage type is the same in both: a connection string needs
// postgres, and the difference is covered by the connection string.)
var restartEnvs = map[string][2]string{
	"ADDRESS":                              {":8443", ":9443"},
	"AUTHENTICATE_SERVICE_URL":             {"https://auth.example.com", "https://login.example.com"},
	"COOKIE_SECRET":                        {b64(strings.Repeat("a", 32)), b64(strings.Repeat("b", 32))},
	"COOKIE_NAME":                          {"_a", "_b"},
	"COOKIE_EXPIRE":                        {"8h", "9h"},
	"ACCESS_TOKEN_LIFETIME":                {"5m", "6m"},
	"DEVICE_CODE_LIFETIME":                 {"10m", "5m"},
	"DEVICE_POLL_INTERVAL":                 {"5s", "6s"},
	"DATABROKER_STORAGE_TYPE":              {"postgres", "postgres"},
	"DATABROKER_STORAGE_CONNECTION_STRING": {"postgres://a@db.example.com/a", "postgres://b@db.example.com/b"},
	"DATABROKER_STORAGE_GRACE":             {"1m", "2m"},
	"SHARED_SECRET":                        {b64(strings.Repeat("c", 32)), b64(strings.Repeat("d", 32))},
	"INSECURE_SERVER":                      {"false", "true"},
	"METRICS_ADDRESS":                      {":9090", ":9091"},
	"LOG_FORMAT":                           {"json", "text"},
	"LIMIT_CONNECTIONS":                    {"100", "200"},
	"LIMIT_CONNECTIONS_PER_CLIENT":         {"10", "20"},
	"LIMIT_SIGN_INS_PER_MINUTE":            {"10", "20"},
	"LIMIT_LOGINS_PER_MINUTE":              {"10", "20"},
	"LIMIT_DEVICE_POLLS_PER_MINUTE":        {"10", "20"},
	"LIMIT_PENDING_SIGN_INS":               {"10", "20"},
	"LIMIT_SESSIONS_PER_PERSON":            {"10", "20"},
	"LIMIT_SIGN_IN_BODY_BYTES":             {"1000", "2000"},
	"AUDIT_LOG_PATH":                       {"/var/log/a.log", "/var/log/b.log"},
	"AUDIT_LOG_MAXSIZE":                    {"1", "2"},
	"AUDIT_LOG_MAXBACKUP":                  {"1", "2"},
	"AUDIT_POLICY_FILE":                    {"/etc/a.yaml", "/etc/b.yaml"},
	"AUDIT_WEBHOOK_CONFIG_FILE":            {"/etc/a.kubeconfig", "/etc/b.kubeconfig"},
}

// TestRestartRequired checks that a reload names every setting it cannot
// apply, and that KeepRestartSettings gives a reloaded configuration the
// running value of each: afterwards nothing differs that needs a restart.
func TestRestartRequired(t *testing.T) {
	a, b := env{}, env{}
	var want []string
	for _, s := range topSettings() {
		if !s.restart {
			continue
		}
		name := strings.ToUpper(s.key)
		if name == "SIGNING_KEY" {
			a[name] = base64.StdEncoding.EncodeToString([]byte(newECKeyPEM(t)))
			b[name] = base64.StdEncoding.EncodeToString([]byte(newECKeyPEM(t)))
			want = append(want, name)
			continue
		}
		v, ok := restartEnvs[name]
		if !ok {
			t.Fatalf("%s needs a restart, but restartEnvs has no values for it", name)
		}
		a[name], b[name] = v[0], v[1]
		if v[0] != v[1] {
			want = append(want, name)
		}
	}
	old, err := Load("", a.lookup)
	if err != nil {
		t.Fatal(err)
	}
	reloaded, err := Load("", b.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := RestartRequired(old, reloaded); !slices.Equal(got, want) {
		t.Errorf("RestartRequired: (-want +got)\n%s", cmp.Diff(want, got))
	}
	reloaded.KeepRestartSettings(old)
	if got := RestartRequired(old, reloaded); len(got) != 0 {
		t.Errorf("after KeepRestartSettings, still different: %v", got)
	}
}

// TestReloadableSettingsAreNotRestart checks that what a reload applies
// (routes, the identity provider, the certificate) is not reported as
// needing a restart.
func TestReloadableSettingsAreNotRestart(t *testing.T) {
	a := env{"IDP_PROVIDER": "oidc", "IDP_PROVIDER_URL": "https://a.example.com", "IDP_CLIENT_ID": "a", "IDP_CLIENT_SECRET": "a",
		"AUTHENTICATE_SERVICE_URL": "https://auth.example.com",
		"POLICY":                   b64("- from: https://a.example.com\n  to: https://b.example.com\n  allow_any_authenticated_user: true\n")}
	b := env{"IDP_PROVIDER": "oidc", "IDP_PROVIDER_URL": "https://c.example.com", "IDP_CLIENT_ID": "c", "IDP_CLIENT_SECRET": "c",
		"AUTHENTICATE_SERVICE_URL": "https://auth.example.com",
		"POLICY":                   b64("- from: https://c.example.com\n  to: https://d.example.com\n  allowed_users: [a@example.com]\n")}
	old, err := Load("", a.lookup)
	if err != nil {
		t.Fatal(err)
	}
	reloaded, err := Load("", b.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := RestartRequired(old, reloaded); len(got) != 0 {
		t.Errorf("RestartRequired: got %v, want none", got)
	}
}

// TestFiles checks that Options.Files lists the files settings came from,
// which the server watches to reload.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key := readTestdata(t, "guide-cert.pem"), readTestdata(t, "guide-key.pem")
	writeFiles(t, dir, map[string]string{
		"cert.pem": cert, "key.pem": key, "ca.pem": cert,
		"portcullis.yaml": "certificate_file: cert.pem\ncertificate_key_file: key.pem\n" +
			"routes:\n  - from: https://a.example.com\n    to: https://b.example.com\n    tls_custom_ca_file: ca.pem\n    allow_any_authenticated_user: true\n",
	})
	o, err := Load(filepath.Join(dir, "portcullis.yaml"), env{}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "portcullis.yaml")}
	if diff := cmp.Diff(want, o.Files()); diff != "" {
		t.Errorf("Files: (-want +got)\n%s", diff)
	}
}

func TestAdminToken(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  env
		want string // a problem's text, or "" for none
	}{
		{name: "short", env: env{"ADMIN_TOKEN": "short", "METRICS_ADDRESS": ":9090"}, want: "want at least 32"},
		{name: "no metrics listener", env: env{"ADMIN_TOKEN": strings.Repeat("x", 32)}, want: "METRICS_ADDRESS is not set"},
		{name: "good", env: env{"ADMIN_TOKEN": strings.Repeat("x", 32), "METRICS_ADDRESS": ":9090"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("", tc.env.lookup)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want no problem", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want a problem containing %q", err, tc.want)
			}
		})
	}
}
