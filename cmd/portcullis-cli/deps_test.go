package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The CLI runs on people's laptops: it must not link the server, its
// identity providers or their dependencies (bigger binary, more to
// patch, and server code where it has no business).
func TestNoServerDependencies(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test lists the CLI's imports with the go command, which is not on PATH: %v", err)
	}
	out, err := exec.Command(goCmd, "list", "-deps", "github.com/portcullis-proxy/portcullis/cmd/portcullis-cli").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const module = "github.com/portcullis-proxy/portcullis/"
	forbidden := []string{
		module + "internal/server",
		module + "internal/proxy",
		module + "internal/authenticate",
		module + "internal/idp",
		module + "internal/session",
		module + "internal/respond",
		module + "internal/policy",
		module + "internal/config",
		module + "internal/testenv",
		"github.com/prometheus/",
		"github.com/zitadel/",
		"github.com/coreos/go-oidc",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed %d packages; the check would prove nothing", len(deps))
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == strings.TrimSuffix(f, "/") || strings.HasPrefix(dep, f) || strings.HasPrefix(dep, f+"/") {
				t.Errorf("portcullis-cli imports %s (forbidden: %s)", dep, f)
			}
		}
	}
}
