package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// howToGet is appended to start-up failures: the e2e suite never skips, it
// fails and says what is missing.
const howToGet = "testenv builds kube-apiserver, kubectl and etcd from the Go module proxy on first use " +
	"(`make testenv`); it needs the go command, network access to the module proxy for the first build, and loopback ports"

// NewCluster starts a Cluster for one test and stops it when the test ends,
// with apiserverArgs added to kube-apiserver's flags.
// A cluster that cannot start fails the test with the reason.
func NewCluster(t testing.TB, apiserverArgs ...string) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, ClusterOptions{Progress: testWriter{t}, APIServerArgs: apiserverArgs})
	if err != nil {
		t.Fatalf("testenv: starting kube-apiserver and etcd: %v\n%s", err, howToGet)
	}
	t.Cleanup(c.Stop)
	return c
}

// ToolPath returns the path of one of the tools (Tool), building it on
// first use. A tool that cannot be built fails the test with the reason:
// like the e2e suite, the tests that use it never skip.
func ToolPath(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	p, err := Tool(ctx, name, testWriter{t})
	if err != nil {
		t.Fatalf("testenv: %v\ntestenv builds %s from its pinned module in internal/testenv/tools on first use "+
			"(`make tools`, or `go run ./internal/testenv/cmd/testenv path %s`); it needs the go command and "+
			"network access to the Go module proxy for the first build", err, name, name)
	}
	return p
}

// NewOIDCProvider starts an OIDCProvider for one test.
func NewOIDCProvider(t testing.TB, redirectURIs []string, users []OIDCUser) *OIDCProvider {
	t.Helper()
	p, err := StartOIDCProvider(nil, redirectURIs, users)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// BuildCommand builds a main package of this module (e.g.
// "github.com/portcullis-proxy/portcullis/cmd/portcullis") into dir and
// returns the binary's path. The Go build cache makes repeat builds quick.
func BuildCommand(ctx context.Context, pkg, dir string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// StartServer starts a server binary with env, logging to dir, and waits
// until GET readyURL answers 200. The process is stopped when the test ends,
// and its log is shown if the test failed.
func StartServer(t testing.TB, name, bin, dir string, args, env []string, readyURL string, tlsConfig *tls.Config) *Process {
	t.Helper()
	p, err := StartServerProcess(context.Background(), name, bin, dir, args, env, readyURL, tlsConfig)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		p.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("%s log (%s) ends:\n%s", name, p.LogPath, p.LogTail(40))
		}
	})
	return p
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	// Also to stderr: a first build takes minutes, and `go test -v` buffers
	// nothing, but the plain `go test` shows only failures.
	os.Stderr.Write(p)
	return len(p), nil
}
