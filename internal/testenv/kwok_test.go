package testenv

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestKwok runs a pod on a kwok node and execs in it through the real
// apiserver, over both kubectl transports.
func TestKwok(t *testing.T) {
	c := NewCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k, err := c.StartKwok(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunPod(ctx, k, "demo", "web"); err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyYAML(ctx, `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Exec
metadata: {name: web, namespace: demo}
spec:
  execs:
  - local: {workDir: /tmp}`); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitExec(ctx, "demo", "web"); err != nil {
		t.Fatal(err)
	}
	for _, websockets := range []string{"true", "false"} {
		t.Run("websockets="+websockets, func(t *testing.T) {
			t.Setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
			out, _, err := c.Kubectl(ctx, nil, "-n", "demo", "exec", "web", "--", "echo", "hello from kwok")
			if err != nil || strings.TrimSpace(out) != "hello from kwok" {
				t.Errorf("exec: got %q, %v; want hello from kwok", out, err)
			}
		})
	}
}
