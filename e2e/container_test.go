package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestContainerImage runs Portcullis's container image, built as `make
// image` builds it, the way a pod runs it: with runc, a read-only root
// filesystem, the image's own non-root user, its configuration, certificate
// and secrets mounted as files where the Helm chart mounts them, and the
// pod's service-account directory in the kubelet's layout holding a token
// the real API server minted. The route uses in-cluster mode: it names no
// address, CA or token, and finds them from KUBERNETES_SERVICE_HOST/PORT
// and the mounted directory, as a pod's would. Real kubectl signs in
// through it with the built-in provider, a rotated token is taken up
// without a restart, and exec and port-forward stream through it.
func TestContainerImage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	layout, ref := testenv.BuildImage(t, ctx)

	c := testenv.NewCluster(t)
	kwok, err := c.StartKwok(ctx)
	if err != nil {
		t.Fatalf("testenv: starting kwok: %v", err)
	}
	installPortcullisRBAC(t, ctx, c)
	apiserver, err := url.Parse(c.URL)
	if err != nil {
		t.Fatal(err)
	}

	// The pod's service-account directory. Each token is bound to a Secret
	// of its own, so that deleting the Secret revokes that token alone:
	// the way to show which token Portcullis is sending.
	token1 := boundToken(t, ctx, c, "portcullis-token-1")
	token2 := boundToken(t, ctx, c, "portcullis-token-2")
	saFiles := func(token string) map[string][]byte {
		return map[string][]byte{"token": []byte(token), "ca.crt": c.CA.CertPEM, "namespace": []byte("default")}
	}
	saVolume, err := testenv.NewProjectedVolume(filepath.Join(t.TempDir(), "serviceaccount"), saFiles(token1))
	if err != nil {
		t.Fatal(err)
	}

	// The files the chart mounts: configuration, certificate, secrets.
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	routeURL := fmt.Sprintf("https://127.0.0.1:%d", port)
	authURL := fmt.Sprintf("https://localhost:%d", port)
	ca, err := testenv.NewCA("portcullis-e2e")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("portcullis", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	hash, err := builtin.HashPassword(signinPassword)
	if err != nil {
		t.Fatal(err)
	}
	configDir := testenv.PodVolume(t, map[string]string{
		"portcullis.yaml": fmt.Sprintf(`address: 127.0.0.1:%d
authenticate_service_url: %s
certificate_file: /etc/portcullis/tls/tls.crt
certificate_key_file: /etc/portcullis/tls/tls.key
cookie_secret_file: /etc/portcullis/secrets/cookie-secret
shared_secret_file: /etc/portcullis/secrets/shared-secret
idp_provider: builtin
idp_users_file: users.yaml
routes:
  - from: %s
    kubernetes_in_cluster: true
    policy:
      - allow:
          or:
            - email:
                is: %s
`, port, authURL, routeURL, signinEmail),
		"users.yaml": fmt.Sprintf("- email: %s\n  password_hash: %q\n", signinEmail, hash),
	})
	tlsDir := testenv.PodVolume(t, map[string]string{"tls.crt": string(cert), "tls.key": string(key)})
	secretsDir := testenv.PodVolume(t, map[string]string{"cookie-secret": b64(random(32)), "shared-secret": b64(random(32))})

	spec := testenv.ContainerSpec{
		Layout: layout, Ref: ref,
		Args: []string{"--config", "/etc/portcullis/config/portcullis.yaml"},
		Env: []string{
			// What the kubelet sets in every container.
			"KUBERNETES_SERVICE_HOST=" + apiserver.Hostname(),
			"KUBERNETES_SERVICE_PORT=" + apiserver.Port(),
		},
		Mounts: []testenv.Mount{
			{Source: configDir, Destination: "/etc/portcullis/config"},
			{Source: tlsDir, Destination: "/etc/portcullis/tls"},
			{Source: secretsDir, Destination: "/etc/portcullis/secrets"},
			{Source: saVolume.Dir, Destination: "/var/run/secrets/kubernetes.io/serviceaccount"},
		},
	}

	t.Run("check-config shows what in-cluster mode found, or what the pod lacks", func(t *testing.T) {
		check := spec
		check.Args = append(spec.Args[:len(spec.Args):len(spec.Args)], "--check-config")
		out, err := testenv.RunContainerCommand(t, ctx, check)
		for _, want := range []string{
			routeURL + " → " + c.URL,
			"kubernetes in-cluster (the pod's cluster; token from /var/run/secrets/kubernetes.io/serviceaccount/token, CA from /var/run/secrets/kubernetes.io/serviceaccount/ca.crt)",
		} {
			if err != nil || !strings.Contains(out, want) {
				t.Errorf("portcullis --check-config in the container: %v, output lacks %q:\n%s", err, want, out)
			}
		}
		// A pod whose service account is not mounted
		// (automountServiceAccountToken: false).
		check.Mounts = spec.Mounts[:len(spec.Mounts)-1]
		out, err = testenv.RunContainerCommand(t, ctx, check)
		if want := "automountServiceAccountToken: false"; exitCode(err) != 1 || !strings.Contains(out, want) {
			t.Errorf("--check-config with no service-account mount: exit %d, output lacks %q:\n%s", exitCode(err), want, out)
		}
	})

	ctr := testenv.RunContainer(t, ctx, spec, routeURL+"/.pomerium/healthz", ca.ClientTLS())
	pid, err := ctr.PID(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("runs as the image's non-root user on a read-only root", func(t *testing.T) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Uid:\t65532\t65532\t65532\t65532", "Gid:\t65532\t65532\t65532\t65532", "CapEff:\t0000000000000000"} {
			if !strings.Contains(string(status), want+"\n") {
				t.Errorf("/proc/%d/status lacks %q:\n%s", pid, want, status)
			}
		}
		if root, _ := ctr.Config["root"].(map[string]any); root["readonly"] != true {
			t.Errorf("runtime config root: got %v, want readonly", root)
		}
	})

	u := newCLIUser(t, ctx, c.KubectlPath, routeURL, ca.CertPEM)
	t.Run("kubectl signs in through the container", func(t *testing.T) {
		u.setup()
		user, errOut := u.whoami(ctx)
		if user != signinEmail {
			t.Fatalf("auth whoami: got %q, want %s\nkubectl stderr:\n%s", user, signinEmail, errOut)
		}
		if got := u.browserRuns(); got != 1 {
			t.Errorf("browser runs: got %d, want 1", got)
		}
	})

	t.Run("the pod's service account is nobody's to use", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS()}, Timeout: 30 * time.Second}
		defer client.CloseIdleConnections()
		// No Portcullis token: refused, never sent on under the pod's
		// service account.
		if got := selfSubjectReview(t, client, routeURL, http.Header{}); got.code != http.StatusUnauthorized {
			t.Errorf("no credential: got %d (user %q), want 401", got.code, got.user)
		}
		// The person's token asking to be the pod's own service account,
		// in system:masters: refused, never forwarded (system: names are
		// no one's to impersonate through Portcullis).
		h := http.Header{"Authorization": {"Bearer Pomerium-" + u.cachedToken(routeURL)},
			"Impersonate-User": {"system:serviceaccount:default:portcullis"}, "Impersonate-Group": {"system:masters"}}
		if got := selfSubjectReview(t, client, routeURL, h); got.code != http.StatusForbidden || got.user != "" {
			t.Errorf("impersonation headers sent by the person: got %d as %q in %v, want 403 and nothing forwarded", got.code, got.user, got.groups)
		}
	})

	t.Run("a rotated token is used without a restart", func(t *testing.T) {
		if err := saVolume.Update(saFiles(token2)); err != nil {
			t.Fatal(err)
		}
		// Revoke the first token and wait until the API server refuses
		// it (it caches a token's review for a few seconds).
		if _, _, err := c.Kubectl(ctx, nil, "-n", "default", "delete", "secret", "portcullis-token-1"); err != nil {
			t.Fatal(err)
		}
		direct := &http.Client{Transport: &http.Transport{TLSClientConfig: c.CA.ClientTLS()}, Timeout: 10 * time.Second}
		defer direct.CloseIdleConnections()
		waitFor(t, ctx, time.Minute, "the API server refuses the revoked first token", func() error {
			if got := selfSubjectReview(t, direct, c.URL, http.Header{"Authorization": {"Bearer " + token1}}); got.code != http.StatusUnauthorized {
				return fmt.Errorf("got %d", got.code)
			}
			return nil
		})
		// Only the second token can now get a request through.
		user, errOut := u.whoami(ctx)
		if user != signinEmail {
			t.Fatalf("auth whoami after rotation: got %q, want %s\nkubectl stderr:\n%s", user, signinEmail, errOut)
		}
		if got := u.browserRuns(); got != 1 {
			t.Errorf("browser runs: got %d, want still 1", got)
		}
		// The same process, not a restarted one, took up the new token.
		if now, err := ctr.PID(ctx); err != nil || now != pid {
			t.Errorf("the container's process: got %d (%v), want still %d", now, err, pid)
		}
	})

	workDir := t.TempDir()
	writeFile(t, filepath.Join(workDir, "greeting.txt"), "hello from the pod\n")
	runDemoPod(t, ctx, c, kwok, workDir, "")
	for _, transport := range []struct{ name, ws string }{{"websocket", "true"}, {"spdy", "false"}} {
		t.Run("exec over "+transport.name, func(t *testing.T) {
			cmd := u.kubectlCmd(ctx, []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=" + transport.ws}, "--context", "e2e", "-n", "demo", "exec", "web", "--", "cat", "greeting.txt")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil || string(out) != "hello from the pod\n" {
				t.Errorf("exec: got %q, %v\n%s", out, err, stderr.String())
			}
		})
		t.Run("port-forward over "+transport.name, func(t *testing.T) {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			portForward(t, u.kubectlCmd(pctx, []string{"KUBECTL_PORT_FORWARD_WEBSOCKETS=" + transport.ws}, "--context", "e2e", "-n", "demo", "port-forward", "pod/web", ":8080"), 1<<20)
		})
	}
	if got := u.browserRuns(); got != 1 {
		t.Errorf("browser runs: got %d, want 1 for the whole session", got)
	}
}

// boundToken creates a Secret and asks the TokenRequest API for a token of
// the portcullis service account bound to it: deleting the Secret revokes
// the token.
func boundToken(t *testing.T, ctx context.Context, c *testenv.Cluster, secret string) string {
	t.Helper()
	if _, _, err := c.Kubectl(ctx, nil, "-n", "default", "create", "secret", "generic", secret); err != nil {
		t.Fatal(err)
	}
	out, _, err := c.Kubectl(ctx, nil, "-n", "default", "create", "token", "portcullis",
		"--bound-object-kind", "Secret", "--bound-object-name", secret, "--duration", "1h")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// waitFor polls check until it succeeds, failing the test after timeout.
func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, what string, check func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting until %s: %v", what, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
