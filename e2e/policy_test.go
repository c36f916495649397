package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestKubernetesPolicy is the Kubernetes-aware policy of the issue's
// example: developers may use the cluster, but exec into pods in prod is
// for SREs only. Kubernetes RBAC would allow all of it; Portcullis refuses
// and kubectl shows which rule refused.
func TestKubernetesPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := startStackWithPolicy(t, ctx, false, `    - allow:
        or:
          - groups:
              has: dev
          - groups:
              has: sre
    - deny:
        and:
          - kubernetes_subresource: exec
          - kubernetes_namespace: prod
          - not:
              - groups:
                  has: sre
`)
	c := s.cluster
	for _, group := range []string{"dev", "sre"} {
		if _, _, err := c.Kubectl(ctx, nil, "create", "clusterrolebinding", group+"-admin", "--clusterrole=cluster-admin", "--group="+group); err != nil {
			t.Fatal(err)
		}
	}
	fake, err := c.StartFakeNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"prod", "dev"} {
		if err := c.RunFakePod(ctx, fake, ns, "app"); err != nil {
			t.Fatal(err)
		}
	}
	dev := s.kubeconfig(t, s.token(t, "dev@example.com", "dev"))
	sre := s.kubeconfig(t, s.token(t, "sre@example.com", "sre"))
	other := s.kubeconfig(t, s.token(t, "other@example.com", "sales"))

	for _, tc := range []struct {
		name       string
		kubeconfig string
		args       []string
		wantErr    string // "" means success
	}{
		{"dev reads prod", dev, []string{"-n", "prod", "get", "pods", "-o", "name"}, ""},
		{"dev execs in dev", dev, []string{"-n", "dev", "exec", "app", "--", "echo", "ok"}, ""},
		{"dev cannot exec in prod", dev, []string{"-n", "prod", "exec", "app", "--", "echo", "ok"}, "denied by policy rule policy[1].deny"},
		{"sre execs in prod", sre, []string{"-n", "prod", "exec", "app", "--", "echo", "ok"}, ""},
		{"someone in neither group", other, []string{"-n", "dev", "get", "pods"}, "denied"},
	} {
		for _, ws := range []string{"true", "false"} {
			t.Run(tc.name+" websockets="+ws, func(t *testing.T) {
				t.Setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", ws)
				_, stderr, err := s.as(ctx, tc.kubeconfig, "", tc.args...)
				switch {
				case tc.wantErr == "" && err != nil:
					t.Errorf("kubectl %s: %v", strings.Join(tc.args, " "), err)
				case tc.wantErr != "" && (err == nil || !strings.Contains(stderr, tc.wantErr)):
					t.Errorf("kubectl %s: got err %v, stderr %q; want a refusal saying %q", strings.Join(tc.args, " "), err, stderr, tc.wantErr)
				}
			})
		}
	}
}
