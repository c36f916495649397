package config

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// env is a fake environment for Load's lookupEnv.
type env map[string]string

func (e env) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// readEnvFile reads KEY=VALUE lines, skipping blank lines and # comments.
func readEnvFile(t testing.TB, path string) env {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := env{}
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=VALUE", path, line)
		}
		e[k] = v
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return e
}

// ignorePositions compares Options loaded from different sources: the
// lines policies were written on necessarily differ.
var ignorePositions = cmp.Options{
	cmpopts.IgnoreFields(PolicyRule{}, "Source"),
	cmpopts.IgnoreFields(PolicyExpr{}, "Source"),
	ignoreLoad,
}

// ignoreLoad leaves out what Load records about where settings came from
// and what it warned about: Options compare by their settings.
var ignoreLoad = cmpopts.IgnoreUnexported(Options{})

// messages returns the text of each Problem in err.
func messages(err error) []string {
	var out []string
	for _, p := range Problems(err) {
		out = append(out, p.Error())
	}
	return out
}

// loadProblems loads file as config.yaml (no file when it is "") with
// the environment e, and returns the text of each Problem.
func loadProblems(file string, e env) []string {
	path := ""
	if file != "" {
		path = "config.yaml"
	}
	_, err := load(path, e.lookup, configFile(path, file))
	return messages(err)
}

// golden compares got with the golden file at path, or rewrites the file
// under -update.
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

// writeFiles writes name → contents into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func readTestdata(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// configFile is a readFile for load that serves text as the config file at
// path and reads any other file as Load does.
func configFile(path, text string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if name == path {
			return []byte(text), nil
		}
		return readBounded(name)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// newECKeyPEM returns a fresh EC private key in PEM ("EC PRIVATE KEY").
func newECKeyPEM(tb testing.TB) string {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}
