package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImpersonation runs real kubectl --as through Portcullis: a person
// whom the cluster's RBAC lets impersonate bob acts as bob, and the
// cluster's audit log records who did; a person without that right gets a
// 403 Status that says so, and nothing reaches the cluster as bob.
func TestImpersonation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	auditLog := filepath.Join(t.TempDir(), "portcullis-audit.log")
	s := startStackWith(t, ctx, stackOptions{env: []string{"AUDIT_LOG_PATH=" + auditLog}})
	if err := s.cluster.EnsureNamespace(ctx, "imp"); err != nil {
		t.Fatal(err)
	}
	// alice may impersonate bob and the group readers; bob may read the
	// namespace imp's ConfigMaps; carol may do nothing.
	rbac := `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-bob}
rules:
- apiGroups: [""]
  resources: [users]
  resourceNames: [bob@example.com]
  verbs: [impersonate]
- apiGroups: [""]
  resources: [groups]
  resourceNames: [readers]
  verbs: [impersonate]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-impersonates-bob}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-bob}
subjects: [{kind: User, name: alice@example.com}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-configmaps, namespace: imp}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-reads, namespace: imp}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-configmaps}
subjects: [{kind: User, name: bob@example.com}]
`
	if _, errOut, err := s.cluster.Kubectl(ctx, strings.NewReader(rbac), "apply", "-f", "-"); err != nil {
		t.Fatalf("applying RBAC: %v\n%s", err, errOut)
	}
	if _, _, err := s.cluster.Kubectl(ctx, nil, "-n", "imp", "create", "configmap", "bobs"); err != nil {
		t.Fatal(err)
	}
	alice := s.kubeconfig(t, s.token(t, "alice@example.com", "dev"))
	carol := s.kubeconfig(t, s.token(t, "carol@example.com"))

	// alice as bob, in readers: the cluster sees bob, and who he really is.
	var who struct {
		Status struct {
			UserInfo struct {
				Username string              `json:"username"`
				Groups   []string            `json:"groups"`
				Extra    map[string][]string `json:"extra"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	waitFor(t, ctx, 30*time.Second, "alice may act as bob (RBAC has the binding)", func() error {
		out, errOut, err := s.as(ctx, alice, "", "auth", "whoami", "--as", "bob@example.com", "--as-group", "readers", "-o", "json")
		if err != nil {
			return fmt.Errorf("kubectl auth whoami --as bob: %v\n%s", err, errOut)
		}
		return json.Unmarshal([]byte(out), &who)
	})
	u := who.Status.UserInfo
	if u.Username != "bob@example.com" || strings.Join(u.Groups, ",") != "readers,system:authenticated" ||
		strings.Join(u.Extra["portcullis.io/impersonator"], ",") != "alice@example.com" {
		t.Errorf("kubectl auth whoami --as bob: %+v; want bob in readers, impersonated by alice", u)
	}
	out, errOut, err := s.as(ctx, alice, "", "-n", "imp", "get", "configmaps", "--as", "bob@example.com", "-o", "name")
	if err != nil || !strings.Contains(out, "configmap/bobs") {
		t.Errorf("kubectl get configmaps --as bob: %v %q\n%s", err, out, errOut)
	}
	// What bob may not do, alice acting as bob may not either.
	if _, errOut, err := s.as(ctx, alice, "", "-n", "imp", "delete", "configmap", "bobs", "--as", "bob@example.com"); err == nil ||
		!strings.Contains(errOut, `User "bob@example.com" cannot delete resource "configmaps"`) {
		t.Errorf("kubectl delete --as bob: err %v, stderr %q; want the cluster's Forbidden for bob", err, errOut)
	}

	// carol has no right to impersonate: Portcullis says so.
	_, errOut, err = s.as(ctx, carol, "", "-n", "imp", "get", "configmaps", "--as", "bob@example.com")
	if err == nil || !strings.Contains(errOut, `carol@example.com may not impersonate user "bob@example.com": the cluster's RBAC does not allow it`) {
		t.Errorf("kubectl --as bob by carol: err %v, stderr %q; want Portcullis's 403 saying why", err, errOut)
	}
	// alice, for a group RBAC does not let her have.
	_, errOut, err = s.as(ctx, alice, "", "-n", "imp", "get", "configmaps", "--as", "bob@example.com", "--as-group", "admins")
	if err == nil || !strings.Contains(errOut, `may not impersonate group "admins"`) {
		t.Errorf("kubectl --as-group admins by alice: err %v, stderr %q; want Portcullis's 403", err, errOut)
	}

	// The cluster's own record: bob's requests came from Portcullis's
	// service account, with alice named as the one who impersonated; and
	// no request reached it as bob on carol's behalf.
	waitFor(t, ctx, 10*time.Second, "kube-apiserver's audit log records alice acting as bob", func() error {
		seen := false
		for _, ev := range auditEvents(t, s) {
			if ev.ImpersonatedUser.Username != "bob@example.com" {
				continue
			}
			if by := strings.Join(ev.ImpersonatedUser.Extra["portcullis.io/impersonator"], ","); by != "alice@example.com" {
				t.Errorf("kube-apiserver acted as bob for %q: %s %s", by, ev.Verb, ev.RequestURI)
			}
			seen = true
		}
		if !seen {
			return fmt.Errorf("no event of bob impersonated")
		}
		return nil
	})
	// Portcullis's own record: alice made the request, as bob.
	waitFor(t, ctx, 10*time.Second, "Portcullis's audit log records alice acting as bob", func() error {
		for _, ev := range readAuditLog(t, auditLog) {
			if ev.Stage != "ResponseComplete" || ev.ImpersonatedUser.Username != "bob@example.com" || ev.ObjectRef == nil || ev.ObjectRef.Resource != "configmaps" {
				continue
			}
			if ev.User.Username != "alice@example.com" || strings.Join(ev.ImpersonatedUser.Extra["portcullis.io/impersonator"], ",") != "alice@example.com" {
				t.Errorf("Portcullis's event of the get as bob: user %q, impersonated %+v", ev.User.Username, ev.ImpersonatedUser)
			}
			return nil
		}
		return fmt.Errorf("no event of alice's get as bob")
	})
}
