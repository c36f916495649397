package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/server"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestDocsExampleConfig: the configuration file docs/kubernetes.md shows
// passes --check-config, and the server starts with it, once the files it
// names exist (next to it: relative paths are relative to the file).
func TestDocsExampleConfig(t *testing.T) {
	doc, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)The same as a file, `portcullis.yaml`:\n\n```yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/kubernetes.md has no portcullis.yaml example after \"The same as a file\"")
	}
	example := string(m[1])

	dir := t.TempDir()
	ca, err := testenv.NewCA("docs example")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("k8s.example.com", "k8s.example.com", "authenticate.example.com")
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	files := map[string][]byte{
		"portcullis.yaml":           []byte(example),
		"k8s.example.com+1.pem":     cert,
		"k8s.example.com+1-key.pem": key,
		"cookie-secret":             []byte(b64(bytes.Repeat([]byte{1}, 32))),
		"shared-secret":             []byte(b64(bytes.Repeat([]byte{2}, 32))),
		"idp-client-secret":         []byte("client-secret"),
		"cluster-ca.crt":            ca.CertPEM,
		"sa-token":                  []byte("sample.service-account.token\n"),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "portcullis.yaml")
	// Not :443: the test runs as anyone, beside anything.
	env := map[string]string{"ADDRESS": "127.0.0.1:0"}

	code, stdout, stderr := runCmd(t, t.Context(), env, "--check-config", "--config", path)
	if code != exitOK || stderr != "" {
		t.Fatalf("--check-config: exit %d, stderr:\n%s", code, stderr)
	}
	if strings.Contains(stdout, "warning") {
		t.Errorf("--check-config warns about the documented example:\n%s", stdout)
	}
	opts, err := config.Load(path, lookup(env), server.Checks()...)
	if err != nil {
		t.Fatal(err)
	}
	opts.GenerateMissingSecrets()
	if _, err := server.New(opts, nil); err != nil {
		t.Errorf("the server refuses the documented example: %v", err)
	}
}

// TestUsageNamesConfigurationReference: --help points to the page that
// lists every setting, and the page is where it says.
func TestUsageNamesConfigurationReference(t *testing.T) {
	code, _, stderr := runCmd(t, t.Context(), nil, "--help")
	if code != exitOK {
		t.Fatalf("--help: exit %d, stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, configReference) {
		t.Errorf("--help does not name %s:\n%s", configReference, stderr)
	}
	if _, err := os.Stat(filepath.Join("..", "..", configReference)); err != nil {
		t.Errorf("--help names %s: %v", configReference, err)
	}
}
