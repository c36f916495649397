package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/direct"
)

// TestDirectConfig: `portcullis direct-config` writes the three files,
// readable by their owner only, and says which apiserver flags to set.
func TestDirectConfig(t *testing.T) {
	env := goodEnv(t)
	dir := filepath.Join(t.TempDir(), "direct")
	code, stdout, stderr := runCmd(t, t.Context(), env, "direct-config", "--out", dir)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, name := range []string{direct.AuthenticationFile, direct.AuthorizationFile, direct.WebhookKubeconfigFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", name, err, fi.Mode())
		}
	}
	for _, want := range []string{"--authentication-config=" + filepath.Join(dir, direct.AuthenticationFile),
		"--authorization-config=" + filepath.Join(dir, direct.AuthorizationFile), "portcullis-cli k8s setup https://k8s.example.com --direct-server"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	authz, _ := os.ReadFile(filepath.Join(dir, direct.AuthorizationFile))
	if !strings.Contains(string(authz), "kubeConfigFile: "+filepath.Join(dir, direct.WebhookKubeconfigFile)) {
		t.Errorf("the authorization configuration does not name the webhook kubeconfig it was written beside:\n%s", authz)
	}

	for _, tc := range []struct {
		name string
		args []string
		edit func(map[string]string)
		code int
		want string
	}{
		{"no --out", []string{"direct-config"}, nil, exitUsage, "--out DIR is required"},
		{"no shared secret", []string{"direct-config", "--out", dir}, func(e map[string]string) { delete(e, "SHARED_SECRET") }, exitFailure, "needs SHARED_SECRET set"},
		{"bad configuration", []string{"direct-config", "--out", dir}, func(e map[string]string) { e["COOKIE_SECRET"] = "short" }, exitFailure, "problem(s) found"},
		{"unknown route", []string{"direct-config", "--out", dir, "--route", "https://other.example.com"}, nil, exitFailure, "no route is from"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := goodEnv(t)
			if tc.edit != nil {
				tc.edit(e)
			}
			code, _, stderr := runCmd(t, t.Context(), e, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want %d, with %q in:\n%s", code, tc.code, tc.want, stderr)
			}
		})
	}
}
