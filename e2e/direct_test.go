package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/direct"
)

// directPolicy lets signinEmail in and denies exec in prod, whatever RBAC
// allows.
var directPolicy = signinPolicy + `    - deny:
        and:
          - kubernetes_subresource: exec
          - kubernetes_namespace: prod
`

// directRBAC lets signinEmail work with pods (exec included) and config
// maps in the namespaces dev and prod, and nothing else: RBAC, not
// Portcullis, refuses the rest. (A Role of its own: the aggregated
// ClusterRoles such as edit get their rules from kube-controller-manager,
// which the test cluster does not run.)
var directRBAC = func() string {
	var docs []string
	for _, ns := range []string{"dev", "prod"} {
		docs = append(docs, "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+ns+"}\n",
			// No kube-controller-manager creates it.
			"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: "+ns+"}\n",
			// A pod to exec into, on no node: kubectl looks it up
			// first, and the apiserver authorizes the exec before it
			// looks for the node.
			"apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: "+ns+"}\nspec: {containers: [{name: app, image: app}]}\n",
			`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: work, namespace: `+ns+`}
rules:
- {apiGroups: [""], resources: [pods, pods/exec, pods/log, configmaps], verbs: ["*"]}
`, `apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: someuser-work, namespace: `+ns+`}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: work}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: `+signinEmail+`}]
`)
	}
	return strings.Join(docs, "---\n")
}()

// TestDirectMode: kube-apiserver started with the authentication and
// authorization configuration `portcullis direct-config` printed validates
// Portcullis tokens itself and asks Portcullis's webhook; real kubectl,
// set up by `portcullis-cli k8s setup --direct-server`, signs in through
// the browser flow and talks to the apiserver directly. RBAC applies to
// the person, the route's policy is enforced by the webhook, a sign-out is
// refused within the documented cache time, and with Portcullis stopped
// the failure policy (Deny) holds for Portcullis's people only.
func TestDirectMode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	s := startSigninStackWith(t, ctx, directPolicy, true)
	c := s.cluster
	if _, errOut, err := c.Kubectl(ctx, strings.NewReader(directRBAC), "apply", "-f", "-"); err != nil {
		t.Fatalf("applying RBAC: %v\n%s", err, errOut)
	}
	if _, errOut, err := c.Kubectl(ctx, nil, "delete", "clusterrolebinding", "portcullis-someuser-cluster-admin"); err != nil {
		t.Fatalf("removing the person's cluster-admin binding: %v\n%s", err, errOut)
	}

	// The operator prints the files and restarts kube-apiserver with them.
	cfgDir := filepath.Join(s.dir, "direct")
	caFile := filepath.Join(s.dir, "portcullis-ca.pem")
	writeFile(t, caFile, string(s.ca.CertPEM))
	cmd := exec.CommandContext(ctx, s.bin, "direct-config", "--route", s.routeURL, "--ca-cert", caFile, "--out", cfgDir)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("portcullis direct-config: %v\n%s", err, out)
	}
	for _, want := range []string{"--authentication-config=" + filepath.Join(cfgDir, direct.AuthenticationFile), "--authorization-config=" + filepath.Join(cfgDir, direct.AuthorizationFile)} {
		if !strings.Contains(string(out), want) {
			t.Errorf("portcullis direct-config does not say %q:\n%s", want, out)
		}
	}
	if fi, err := os.Stat(filepath.Join(cfgDir, direct.WebhookKubeconfigFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("webhook kubeconfig: %v, mode %v; want 0600 (it holds the webhook's token)", err, fi.Mode())
	}
	if err := c.RestartAPIServer(ctx,
		"--authentication-config", filepath.Join(cfgDir, direct.AuthenticationFile),
		"--authorization-config", filepath.Join(cfgDir, direct.AuthorizationFile)); err != nil {
		t.Fatalf("restarting kube-apiserver with the direct-mode configuration: %v\n%s", err, c.APIServerLogTail(40))
	}

	// The person sets kubectl up for the apiserver itself and signs in
	// through the browser.
	clusterCA := filepath.Join(s.dir, "cluster-ca.pem")
	writeFile(t, clusterCA, string(c.CA.CertPEM))
	u := newCLIUser(t, ctx, c.KubectlPath, s.routeURL, s.ca.CertPEM)
	if out, errOut, err := u.run("k8s", "setup", s.routeURL, "--name", "e2e", "--kubeconfig", u.kubeconfig, "--ca-cert", u.caFile,
		"--browser-cmd", u.self, "--direct-server", c.URL, "--direct-ca-cert", clusterCA); err != nil {
		t.Fatalf("portcullis-cli k8s setup --direct-server: %v\n%s%s", err, out, errOut)
	}
	var kc struct {
		Clusters []struct {
			Cluster struct{ Server string } `json:"cluster"`
		} `json:"clusters"`
	}
	if raw, _, err := u.kubectl(ctx, "config", "view", "-o", "json"); err != nil || json.Unmarshal([]byte(raw), &kc) != nil || len(kc.Clusters) != 1 || kc.Clusters[0].Cluster.Server != c.URL {
		t.Fatalf("the kubeconfig's cluster is not the apiserver %s: %v\n%s", c.URL, err, raw)
	}
	u.firstSignIn(ctx)
	var who struct {
		Status struct {
			UserInfo struct {
				Extra map[string][]string `json:"extra"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	raw, errOut, err := u.kubectl(ctx, "--context", "e2e", "auth", "whoami", "-o", "json")
	if err != nil || json.Unmarshal([]byte(raw), &who) != nil {
		t.Fatalf("whoami: %v\n%s", err, errOut)
	}
	if refs := who.Status.UserInfo.Extra[direct.ExtraSession]; len(refs) != 1 || len(refs[0]) < 40 {
		t.Errorf("the apiserver's user has extra %v, want one sealed %s", who.Status.UserInfo.Extra, direct.ExtraSession)
	}

	t.Run("the apiserver saw the person, not Portcullis's service account", func(t *testing.T) {
		if _, errOut, err := u.kubectl(ctx, "--context", "e2e", "get", "pods", "-n", "dev"); err != nil {
			t.Fatalf("get pods in dev: %v\n%s", err, errOut)
		}
		found := false
		for _, ev := range readAuditLog(t, c.AuditLogPath) {
			if ev.ObjectRef != nil && ev.ObjectRef.Resource == "pods" && ev.ObjectRef.Namespace == "dev" && ev.Verb == "list" {
				found = true
				if ev.User.Username != signinEmail || ev.ImpersonatedUser.Username != "" {
					t.Errorf("list pods in dev: the apiserver's user %q (impersonated %q), want %s itself", ev.User.Username, ev.ImpersonatedUser.Username, signinEmail)
				}
			}
		}
		if !found {
			t.Errorf("the apiserver's audit log has no list of pods in dev")
		}
	})

	t.Run("RBAC applies to the person", func(t *testing.T) {
		_, errOut, err := u.kubectl(ctx, "--context", "e2e", "get", "secrets", "-n", "kube-system")
		if err == nil || !strings.Contains(errOut, "Forbidden") || strings.Contains(errOut, "portcullis") {
			t.Errorf("get secrets in kube-system: %v, want RBAC's Forbidden (no Portcullis rule)\n%s", err, errOut)
		}
	})

	t.Run("the webhook enforces the route's policy", func(t *testing.T) {
		// RBAC (directRBAC) allows exec in both namespaces; the policy denies
		// it in prod. Authorization comes before the pod is looked up.
		_, errOut, err := u.kubectl(ctx, "--context", "e2e", "exec", "-n", "prod", "app", "--", "true")
		if err == nil || !strings.Contains(errOut, "forbidden") || !strings.Contains(errOut, "portcullis: denied by policy rule policy[1].deny") {
			t.Errorf("exec in prod: %v, want the webhook's Forbidden naming the rule policy[1].deny\n%s", err, errOut)
		}
		// Allowed in dev: the apiserver goes on to the pod's node, and
		// it has none.
		_, errOut, err = u.kubectl(ctx, "--context", "e2e", "exec", "-n", "dev", "app", "--", "true")
		if err == nil || strings.Contains(errOut, "Forbidden") || !strings.Contains(errOut, "host") {
			t.Errorf("exec in dev: %v, want it authorized (and failing for want of a node)\n%s", err, errOut)
		}
	})

	api := &http.Client{Transport: &http.Transport{TLSClientConfig: c.CA.ClientTLS()}, Timeout: 10 * time.Second}
	defer api.CloseIdleConnections()
	// pods asks the apiserver directly for the pods in dev with the bare
	// token, as kubectl does.
	pods := func(token string) response {
		t.Helper()
		return get(t, api, c.URL+"/api/v1/namespaces/dev/pods", "", "Bearer "+token)
	}

	t.Run("a token for another route does not open this cluster", func(t *testing.T) {
		// The person's token for the second route (one sign-in serves
		// both) has that route's audience.
		out, errOut, err := u.run("k8s", "exec-credential", s.secondRouteURL, "--direct", "--ca-cert", u.caFile, "--browser-cmd", u.self)
		if err != nil {
			t.Fatalf("exec-credential for the second route: %v\n%s", err, errOut)
		}
		var ec struct {
			Status struct{ Token string } `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &ec); err != nil || ec.Status.Token == "" || strings.HasPrefix(ec.Status.Token, "Pomerium-") {
			t.Fatalf("exec-credential --direct: %v, want a bare token\n%s", err, out)
		}
		if got := pods(ec.Status.Token); got.code != http.StatusUnauthorized {
			t.Errorf("the second route's token at the first route's cluster: %d, want 401\n%s", got.code, got.body)
		}
	})

	t.Run("after sign-out the token is refused within the cache time", func(t *testing.T) {
		tok := u.cachedToken(s.routeURL)
		if got := pods(tok); got.code != http.StatusOK {
			t.Fatalf("before the sign-out: %d, want 200\n%s", got.code, got.body)
		}
		portcullis := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS()}, Timeout: 10 * time.Second}
		defer portcullis.CloseIdleConnections()
		if got := do(t, portcullis, http.MethodPost, s.routeURL+"/.pomerium/sign_out", http.Header{"Authorization": {"Pomerium " + tok}, "Accept": {"application/json"}}, ""); got.code >= 400 {
			t.Fatalf("sign-out: %d\n%s", got.code, got.body)
		}
		deadline := time.Now().Add(direct.CacheTTL + 5*time.Second)
		for {
			got := pods(tok)
			if got.code == http.StatusForbidden && strings.Contains(got.body, "session ended") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after the sign-out the token still gets %d, want 403 (session ended)\n%s", direct.CacheTTL+5*time.Second, got.code, got.body)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("with Portcullis stopped the failure policy denies its people only", func(t *testing.T) {
		// The signed-out token is refused with 403, which does not make
		// kubectl run the plugin again: the refusal says to flush it.
		if _, errOut, err := u.run("k8s", "flush-credentials", s.routeURL); err != nil {
			t.Fatalf("flush-credentials: %v\n%s", err, errOut)
		}
		// A new sign-in, then Portcullis goes away.
		if _, errOut, err := u.kubectl(ctx, "--context", "e2e", "get", "configmaps", "-n", "dev"); err != nil {
			t.Fatalf("get configmaps after signing in again: %v\n%s", err, errOut)
		}
		tok := u.cachedToken(s.routeURL)
		s.proc.Stop(10 * time.Second)
		// A request the apiserver has no cached decision for.
		// kube-apiserver answers a webhook it cannot reach, under
		// failurePolicy Deny, with 500 and the webhook's error.
		got := get(t, api, c.URL+"/api/v1/namespaces/prod/configmaps", "", "Bearer "+tok)
		if got.code != http.StatusInternalServerError || !strings.Contains(got.body, "subjectaccessreview") {
			t.Errorf("with Portcullis stopped: %d, want 500 naming the webhook (failurePolicy Deny)\n%s", got.code, got.body)
		}
		if _, errOut, err := c.Kubectl(ctx, nil, "get", "configmaps", "-n", "prod"); err != nil {
			t.Errorf("the administrator, who never goes through Portcullis's webhook: %v\n%s", err, errOut)
		}
	})
}
