package e2e

import (
	"bufio"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestGuideExecuted follows docs/kubernetes.md with a real cluster in
// place of kind: the guide's YAML is applied and Portcullis runs with the
// guide's environment (startSigninStack), then the guide's own three
// `kubectl config` commands, read from the guide itself, write a fresh
// kubeconfig, and kubectl cluster-info and auth whoami go through
// Portcullis, signing in at a real OpenID provider.
func TestGuideExecuted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := startSigninStack(t, ctx)
	// portcullis-cli is on the person's PATH, as the guide assumes.
	u := newCLIUser(t, ctx, s.cluster.KubectlPath, s.routeURL, s.ca.CertPEM)
	self, caFile := u.self, u.caFile

	commands := guideKubectlConfigCommands(t)
	if len(commands) != 3 {
		t.Fatalf("docs/kubernetes.md: found %d `kubectl config` commands, want the guide's three", len(commands))
	}
	for _, args := range commands {
		// What differs from the guide's example is only this machine: the
		// route's address, the test CA, and the stand-in browser.
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "https://k8s.example.com", s.routeURL)
		}
		switch args[2] {
		case "set-cluster":
			args = append(args, "--certificate-authority="+caFile)
		case "set-credentials":
			args = append(args, "--exec-arg=--ca-cert,"+caFile+",--browser-cmd,"+self)
		}
		if _, errOut, err := u.kubectl(ctx, args[1:]...); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args[1:], " "), err, errOut)
		}
	}
	out, errOut, err := u.kubectl(ctx, "--context=via-portcullis", "cluster-info")
	if err != nil || !strings.Contains(out, "Kubernetes control plane is running at "+s.routeURL) {
		kc, _ := os.ReadFile(u.kubeconfig)
		t.Fatalf("cluster-info: got %q, %v\n%s\nkubeconfig:\n%s", out, err, errOut, kc)
	}
	out, errOut, err = u.kubectl(ctx, "--context=via-portcullis", "auth", "whoami")
	if err != nil || !strings.Contains(out, signinEmail) {
		t.Fatalf("auth whoami: got %q, %v\n%s", out, err, errOut)
	}
	if n := u.browserRuns(); n != 1 {
		t.Errorf("browser sign-ins: got %d, want 1 (cluster-info signed in, whoami used the cache)", n)
	}

	// The guide's recipe for signing in over SSH, applied to that user,
	// leaves the plugin its command: kubectl replaces the arguments with
	// the ones given, so a recipe of --exec-arg=--device alone would not.
	guide, err := os.ReadFile("../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("`kubectl (config set-credentials via-portcullis --exec-arg=[^`]*--device)`").FindSubmatch(guide)
	if m == nil {
		t.Fatalf("docs/kubernetes.md: no kubectl config set-credentials recipe with --device")
	}
	recipe := strings.Fields(strings.ReplaceAll(string(m[1]), "https://k8s.example.com", s.routeURL))
	if _, errOut, err := u.kubectl(ctx, recipe...); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", m[1], err, errOut)
	}
	out, errOut, err = u.kubectl(ctx, "config", "view", "-o", "jsonpath={.users[?(@.name==\"via-portcullis\")].user.exec.args}")
	if want := `["k8s","exec-credential","` + s.routeURL + `","--device"]`; err != nil || out != want {
		t.Errorf("the plugin's arguments after the SSH recipe: got %s, %v, %s; want %s", out, err, errOut, want)
	}
}

// guideKubectlConfigCommands returns the `kubectl config …` commands of the
// guide's manual kubectl setup, split into arguments (backslash line
// continuations joined).
func guideKubectlConfigCommands(t *testing.T) [][]string {
	t.Helper()
	f, err := os.Open("../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds [][]string
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && !strings.HasPrefix(line, "kubectl config set-") {
			continue
		}
		cur += " " + strings.TrimSuffix(line, "\\")
		if !strings.HasSuffix(line, "\\") {
			cmds = append(cmds, strings.Fields(cur))
			cur = ""
		}
	}
	return cmds
}
