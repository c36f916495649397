package testenv

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestCluster starts the real kube-apiserver and checks the pieces tests
// rely on: the client, kubectl, the TokenRequest API and the audit log.
func TestCluster(t *testing.T) {
	c := NewCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("client: getting namespace default: %v", err)
	}
	out, _, err := c.Kubectl(ctx, nil, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"gitVersion": "`+KubernetesVersion+`"`) {
		t.Errorf("kubectl version: got %s, want server and client %s", out, KubernetesVersion)
	}
	if _, _, err := c.Kubectl(ctx, strings.NewReader("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: probe, namespace: default}\n"), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateToken(ctx, "default", "probe", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	who, _, err := c.Kubectl(ctx, nil, "--token", tok, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	if err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:default:probe"; who != want {
		t.Errorf("whoami with the service-account token: got %q, want %q", who, want)
	}
	audit, err := os.ReadFile(c.AuditLogPath)
	if err != nil || !strings.Contains(string(audit), "system:serviceaccount:default:probe") {
		t.Errorf("audit log %s: got %v and %d bytes, want an entry for the probe service account", c.AuditLogPath, err, len(audit))
	}
}
