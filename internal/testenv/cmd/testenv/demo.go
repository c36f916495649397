package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// demo starts a real local cluster and Portcullis in front of it, the way
// the Kubernetes guide deploys it, and runs until interrupted.
func demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	port := fs.Int("port", 8443, "port for Portcullis on 127.0.0.1 (route) and localhost (sign-in)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range []string{"deploy/kubernetes/service-account.yaml", "deploy/kubernetes/user-binding.yaml"} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("run the demo from the root of the Portcullis source tree: %w", err)
		}
	}
	say := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "demo: "+format+"\n", a...) }

	say("starting etcd and kube-apiserver %s on loopback", testenv.KubernetesVersion)
	cluster, err := testenv.StartCluster(ctx, testenv.ClusterOptions{Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	for _, f := range []string{"deploy/kubernetes/service-account.yaml", "deploy/kubernetes/user-binding.yaml"} {
		out, _, err := cluster.Kubectl(ctx, nil, "apply", "-f", f)
		if err != nil {
			return err
		}
		fmt.Fprint(os.Stderr, out)
	}
	saToken, err := cluster.CreateToken(ctx, "default", "portcullis", 24*time.Hour)
	if err != nil {
		return err
	}

	ca, err := testenv.NewCA("portcullis-demo")
	if err != nil {
		return err
	}
	cert, key, err := ca.Issue("portcullis", "127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	dir := filepath.Join(cluster.Dir, "portcullis")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		return err
	}
	say("building portcullis")
	bin, err := testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/cmd/portcullis", dir)
	if err != nil {
		return err
	}
	// The built-in provider signs people in; its one user is the one the
	// RBAC binding above makes cluster-admin.
	const demoUser, demoPassword = "someuser@example.com", "portcullis-demo"
	hash, err := builtin.HashPassword(demoPassword)
	if err != nil {
		return err
	}
	usersFile := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(usersFile, []byte(fmt.Sprintf("- email: %s\n  groups: [demo]\n  password_hash: %q\n", demoUser, hash)), 0o600); err != nil {
		return err
	}
	route := fmt.Sprintf("https://127.0.0.1:%d", *port)
	b64 := base64.StdEncoding.EncodeToString
	policy := fmt.Sprintf("- from: %s\n  to: %s\n  tls_custom_ca: %s\n  allow_spdy: true\n  policy:\n    - allow:\n        or:\n          - email:\n              is: someuser@example.com\n  kubernetes_service_account_token: %q\n",
		route, cluster.URL, b64(cluster.CA.CertPEM), saToken)
	env := []string{
		"ADDRESS=127.0.0.1:" + strconv.Itoa(*port),
		fmt.Sprintf("AUTHENTICATE_SERVICE_URL=https://localhost:%d", *port),
		"CERTIFICATE=" + b64(cert),
		"CERTIFICATE_KEY=" + b64(key),
		"COOKIE_SECRET=" + b64(randomBytes(32)),
		"SHARED_SECRET=" + b64(randomBytes(32)),
		"POLICY=" + b64([]byte(policy)),
		"IDP_PROVIDER=builtin",
		"IDP_USERS_FILE=" + usersFile,
		"LOG_FORMAT=text",
	}
	srv, err := testenv.StartServerProcess(ctx, "portcullis", bin, dir, nil, env, route+"/.pomerium/healthz", ca.ClientTLS())
	if err != nil {
		return err
	}
	defer srv.Stop(15 * time.Second)

	// kubectl through Portcullis: portcullis-cli writes the context, and
	// kubectl runs it as its credential plugin. The demo's "browser" signs
	// in as the demo user over HTTP and says what it does, so the flow runs
	// here with or without a real browser.
	say("building portcullis-cli")
	cli, err := testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/cmd/portcullis-cli", dir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	browserCmd := filepath.Join(dir, "demo-browser")
	script := fmt.Sprintf("#!/bin/sh\nexec %q browse --ca %q --user %q --password %q \"$1\"\n", self, caFile, demoUser, demoPassword)
	if err := os.WriteFile(browserCmd, []byte(script), 0o700); err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cliEnv := append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
	setup := exec.CommandContext(ctx, cli, "k8s", "setup", route, "--name", "portcullis-demo", "--ca-cert", caFile, "--browser-cmd", browserCmd, "--kubeconfig", kubeconfig)
	setup.Env, setup.Stdout, setup.Stderr = cliEnv, os.Stderr, os.Stderr
	if err := setup.Run(); err != nil {
		return fmt.Errorf("portcullis-cli k8s setup: %w", err)
	}
	say("kubectl --context portcullis-demo auth whoami  (the first call signs in)")
	whoami := exec.CommandContext(ctx, cluster.KubectlPath, "--kubeconfig", kubeconfig, "--context", "portcullis-demo", "auth", "whoami")
	whoami.Env, whoami.Stdout, whoami.Stderr = cliEnv, os.Stderr, os.Stderr
	if err := whoami.Run(); err != nil {
		return fmt.Errorf("kubectl auth whoami through Portcullis: %w", err)
	}

	fmt.Fprintf(os.Stderr, `
Portcullis is running, and kubectl went through it as %s.

  route              %s  →  kube-apiserver %s
  sign-in            built-in provider at https://localhost:%d/.portcullis/idp
  demo user          %s, password %s (cluster-admin via RBAC)
  kubeconfig         %s  (context portcullis-demo)
  Portcullis log     %s

Try:
  KUBECONFIG=%s XDG_CACHE_HOME=%s kubectl get ns
  a browser on this machine: %s/.pomerium/   (trust %s, or accept the warning)

Press Ctrl-C to stop; everything started here is removed.
`, demoUser, route, cluster.URL, *port, demoUser, demoPassword, kubeconfig, srv.LogPath, kubeconfig, filepath.Join(dir, "cache"), route, caFile)

	select {
	case <-ctx.Done():
		say("stopping")
		return nil
	case <-srv.Done():
		return fmt.Errorf("portcullis exited; its log ends:\n%s", srv.LogTail(30))
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// browse is the demo's stand-in for a browser: it opens the sign-in URL,
// fills in the built-in provider's login form as the demo user, and
// follows the redirects back to portcullis-cli, saying each step.
func browse(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("browse", flag.ContinueOnError)
	caFile := fs.String("ca", "", "CA certificate that signed Portcullis's certificate")
	user := fs.String("user", "", "email to sign in as")
	password := fs.String("password", "", "password")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: testenv browse --ca FILE --user EMAIL --password PW URL")
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	b := testenv.NewBrowser(&tls.Config{RootCAs: pool})
	fmt.Fprintf(os.Stderr, "demo browser: opening %s and signing in as %s\n", fs.Arg(0), *user)
	final, _, err := b.SignIn(ctx, fs.Arg(0), *user, *password, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "demo browser: signed in; landed on %s://%s%s\n", final.Scheme, final.Host, final.Path)
	return nil
}
