package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
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
	srv, err := testenv.StartServerProcess(ctx, "portcullis", bin, dir, nil, env, route+"/healthz", ca.ClientTLS())
	if err != nil {
		return err
	}
	defer srv.Stop(15 * time.Second)

	fmt.Fprintf(os.Stderr, `
Portcullis is running.

  route              %s  →  kube-apiserver %s
  sign-in            built-in provider at https://localhost:%d/.portcullis/idp
  demo user          %s, password %s (cluster-admin via RBAC)
  service account    default/portcullis (may impersonate users and groups)
  Portcullis log     %s
  admin kubeconfig   %s

Try:
  a browser on this machine: %s/.pomerium/   (trust %s, or accept the warning)
  curl --cacert %s %s/healthz
  KUBECONFIG=%s kubectl get --raw /version     # the cluster directly, as admin

Not there yet: portcullis-cli's kubectl exec-credential plugin, so kubectl
cannot sign in through Portcullis yet. See README.md.

Press Ctrl-C to stop; everything started here is removed.
`, route, cluster.URL, *port, demoUser, demoPassword, srv.LogPath, cluster.Kubeconfig, route, caFile, caFile, route, cluster.Kubeconfig)

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
