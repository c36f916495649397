package kubeconfig

import (
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const testCA = `-----BEGIN CERTIFICATE-----
MIIBdzCCAR2gAwIBAgIQUtOs6aUJCxsCbwrYJdLIhzAKBggqhkjOPQQDAjAZMRcw
FQYDVQQDEw5wb3J0Y3VsbGlzLWUyZTAeFw0yNjExMjcwNzAwMDBaFw0yNjExMjgw
NzAwMDBaMBkxFzAVBgNVBAMTDnBvcnRjdWxsaXMtZTJlMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAE
-----END CERTIFICATE-----
`

func options(path string) Options {
	return Options{
		Path:    path,
		Name:    "portcullis-k8s.example.com",
		Server:  "https://k8s.example.com",
		CAData:  []byte(testCA),
		Command: "/usr/local/bin/portcullis-cli",
		Args:    []string{"k8s", "exec-credential", "https://k8s.example.com", "--ca-cert", "/etc/portcullis/ca.pem", "--browser-cmd", "/usr/bin/firefox"},
	}
}

func TestSetupGolden(t *testing.T) {
	for _, tt := range []struct {
		name, existing string
	}{
		{"new", ""},
		{"existing", "testdata/existing.yaml"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "nested", "config")
			if tt.existing != "" {
				b, err := os.ReadFile(tt.existing)
				if err != nil {
					t.Fatal(err)
				}
				os.MkdirAll(filepath.Dir(path), 0o700)
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			changed, err := Setup(options(path))
			if err != nil || !changed {
				t.Fatalf("got changed %v, %v, want a change", changed, err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "setup-"+tt.name+".golden.yaml"), got)

			// kubectl reads it without complaint: the same loader and
			// validation (apiVersion and interactiveMode are required).
			cfg, err := clientcmd.LoadFromFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := clientcmd.Validate(*cfg); err != nil {
				t.Errorf("clientcmd.Validate: %v", err)
			}
			ctx := cfg.Contexts["portcullis-k8s.example.com"]
			if ctx == nil || ctx.Cluster != "portcullis-k8s.example.com" || ctx.AuthInfo != "portcullis-k8s.example.com" {
				t.Errorf("context: got %+v", ctx)
			}
			if tt.existing != "" {
				if cfg.CurrentContext != "kind-dev" || cfg.AuthInfos["kind-dev"] == nil || ctx.Namespace != "team-a" {
					t.Errorf("other entries, the current context or the chosen namespace were not kept")
				}
			}

			// Idempotent: the same options change nothing.
			fi, _ := os.Stat(path)
			changed, err = Setup(options(path))
			if err != nil || changed {
				t.Errorf("second run: got changed %v, %v, want no change", changed, err)
			}
			again, _ := os.ReadFile(path)
			fi2, _ := os.Stat(path)
			if string(again) != string(got) || !fi.ModTime().Equal(fi2.ModTime()) {
				t.Errorf("second run rewrote the file")
			}
			if fi2.Mode().Perm() != 0o600 && tt.existing == "" {
				t.Errorf("new kubeconfig mode %v, want 0600 (it may hold credentials)", fi2.Mode().Perm())
			}

			// Different options update the entries in place.
			o := options(path)
			o.Server = "https://k8s2.example.com"
			if changed, err := Setup(o); err != nil || !changed {
				t.Errorf("new server: got changed %v, %v, want a change", changed, err)
			}
			cfg, _ = clientcmd.LoadFromFile(path)
			if got := cfg.Clusters["portcullis-k8s.example.com"].Server; got != "https://k8s2.example.com" {
				t.Errorf("server: got %s", got)
			}
		})
	}
}

func TestSetupRefusesBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	os.WriteFile(path, []byte("clusters: [this is not: a kubeconfig"), 0o600)
	if _, err := Setup(options(path)); err == nil || !strings.Contains(err.Error(), "reading kubeconfig "+path) {
		t.Errorf("got %v, want an error naming the file", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "clusters: [this is not: a kubeconfig" {
		t.Errorf("a file that could not be read was overwritten")
	}
}

func TestPath(t *testing.T) {
	for _, tt := range []struct {
		name, explicit, env, home, want string
	}{
		{"--kubeconfig wins", "/tmp/k", "/a:/b", "/home/u", "/tmp/k"},
		{"first file of $KUBECONFIG", "", "/a/config:/b/config", "/home/u", "/a/config"},
		{"empty entries skipped", "", ":/b/config", "/home/u", "/b/config"},
		{"~/.kube/config", "", "", "/home/u", "/home/u/.kube/config"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Path(tt.explicit, tt.env, tt.home)
			if err != nil || got != tt.want {
				t.Errorf("got %s, %v, want %s", got, err, tt.want)
			}
		})
	}
	if _, err := Path("", "", ""); err == nil {
		t.Errorf("no home: got no error")
	}
}

func TestDefaultName(t *testing.T) {
	for raw, want := range map[string]string{
		"https://k8s.example.com":   "portcullis-k8s.example.com",
		"https://127.0.0.1:8443":    "portcullis-127.0.0.1-8443",
		"https://[::1]:8443":        "portcullis---1-8443",
		"https://k8s.example.com/x": "portcullis-k8s.example.com",
	} {
		u, _ := url.Parse(raw)
		if got := DefaultName(u); got != want {
			t.Errorf("%s: got %s, want %s", raw, got, want)
		}
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}
