package direct

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func testOptions() Options {
	return Options{
		Issuer:                "https://auth.example.com",
		Audience:              "k8s.example.com",
		CAPEM:                 []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
		WebhookURL:            "https://k8s.example.com/.pomerium/api/v1/kubernetes/subjectaccessreview",
		WebhookToken:          "webhook-token",
		WebhookKubeconfigPath: "/etc/kubernetes/portcullis-webhook.kubeconfig",
	}
}

// TestGolden pins the three files: what kube-apiserver reads is a
// contract (the e2e suite starts a real kube-apiserver with them). Run
// with -update to rewrite.
func TestGolden(t *testing.T) {
	files, err := Generate(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{AuthenticationFile, AuthorizationFile, WebhookKubeconfigFile} {
		got, ok := files[name]
		if !ok {
			t.Fatalf("no %s", name)
		}
		var v any
		if err := yaml.Unmarshal(got, &v); err != nil {
			t.Errorf("%s is not YAML: %v", name, err)
		}
		path := filepath.Join("testdata", name+".golden")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s:\n%s\nwant (%s):\n%s", name, got, path, want)
		}
	}
}

// TestSystemRoots: without a CA the files name none, and kube-apiserver
// uses its host's roots.
func TestSystemRoots(t *testing.T) {
	o := testOptions()
	o.CAPEM = nil
	files, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if strings.Contains(string(b), "certificate") || strings.Contains(string(b), "certificateAuthority") {
			t.Errorf("%s names a CA:\n%s", name, b)
		}
	}
}

func TestGenerateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no issuer", func(o *Options) { o.Issuer = "" }, "no issuer"},
		{"plain http issuer", func(o *Options) { o.Issuer = "http://auth.example.com" }, "not an https URL"},
		{"plain http webhook", func(o *Options) { o.WebhookURL = "http://k8s.example.com/review" }, "not an https URL"},
		{"no token", func(o *Options) { o.WebhookToken = "" }, "no webhook token"},
		{"relative kubeconfig path", func(o *Options) { o.WebhookKubeconfigPath = "webhook.kubeconfig" }, "must be absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			tc.edit(&o)
			if _, err := Generate(o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}
