package e2e

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestIdentityMapping signs in with the built-in provider and runs real
// kubectl through Portcullis with an identity mapping: the user name from
// another claim with a prefix, and the groups filtered and prefixed.
// kubectl auth whoami shows the mapped identity, and kube-apiserver's
// audit log records it as the impersonated user; the policy, which lets
// in the group dev, still sees it though dev never reaches Kubernetes.
// A reload that makes the route take sub with no prefix gives
// kube-apiserver's default, the issuer URL and #.
func TestIdentityMapping(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	const email, password = "someuser@example.com", "a long demo password"
	users := builtinUsersFile(t, email, password, "dev", "team-a", "sre", "sales")
	policy := "    - allow:\n        or:\n          - groups:\n              has: dev\n"
	s := startStackWith(t, ctx, stackOptions{builtinUsers: users, reloadable: true, policy: policy, env: []string{
		"KUBERNETES_GROUPS_PREFIX=oidc:",
		"KUBERNETES_GROUPS_FILTER=team-*,sre",
	}})
	// The route's own keys: the built-in provider's preferred_username is
	// the email address.
	s.writeConfig(t, s.routeYAML(policy)+"  kubernetes_username_claim: preferred_username\n  kubernetes_username_prefix: \"oidc:\"\n")
	s.reloaded(t, ctx, 0)

	browser := testenv.NewBrowser(s.ca.ClientTLS())
	kubeconfig := s.kubeconfig(t, programmaticLogin(t, ctx, browser, s.routeURL, s.authURL, email, password))
	wantGroups := []string{"oidc:team-a", "oidc:sre", "system:authenticated"}

	user, groups := s.whoami(t, ctx, kubeconfig)
	if user != "oidc:"+email || !slices.Equal(groups, wantGroups) {
		t.Errorf("kubectl auth whoami: %q in %q; want %q in %q", user, groups, "oidc:"+email, wantGroups)
	}
	// What kube-apiserver itself recorded.
	var found bool
	for _, ev := range readAuditLog(t, s.cluster.AuditLogPath) {
		imp := ev.ImpersonatedUser
		if imp.Username == email || slices.ContainsFunc(imp.Groups, func(g string) bool {
			return g == "dev" || g == "sales" || g == "oidc:dev" || g == "oidc:sales" || g == "team-a"
		}) {
			t.Errorf("the cluster's audit log has %s %s as %q in %q: unmapped, or a group the filter drops", ev.Verb, ev.RequestURI, imp.Username, imp.Groups)
		}
		if imp.Username == "oidc:"+email && strings.Contains(ev.RequestURI, "selfsubjectreviews") {
			found = true
			if !slices.Contains(imp.Groups, "oidc:team-a") || !slices.Contains(imp.Groups, "oidc:sre") {
				t.Errorf("the cluster's audit log: impersonated groups %q, want oidc:team-a and oidc:sre", imp.Groups)
			}
		}
	}
	if !found {
		t.Errorf("the cluster's audit log has no selfsubjectreview impersonating %q", "oidc:"+email)
	}

	// sub, with no prefix of the route's nor a top-level one: the issuer
	// URL and #, as kube-apiserver does. The session is the same.
	before := s.reloads(t)
	s.writeConfig(t, s.routeYAML(policy)+"  kubernetes_username_claim: sub\n")
	s.reloaded(t, ctx, before)
	user, groups = s.whoami(t, ctx, kubeconfig)
	if want := regexp.MustCompile(`^` + regexp.QuoteMeta(s.authURL+"/.portcullis/idp#") + `[0-9a-f]{32}$`); !want.MatchString(user) || !slices.Equal(groups, wantGroups) {
		t.Errorf("kubectl auth whoami: %q in %q; want %s in %q", user, groups, want, wantGroups)
	}

	// A claim the person does not have: refused, saying which.
	before = s.reloads(t)
	s.writeConfig(t, s.routeYAML(policy)+"  kubernetes_username_claim: upn\n  kubernetes_username_prefix: \"-\"\n")
	s.reloaded(t, ctx, before)
	// (kubectl auth whoami words every refusal its own way; get --raw shows the Status.)
	if _, stderr, err := s.as(ctx, kubeconfig, "", "get", "--raw", "/api/v1/namespaces"); err == nil || !strings.Contains(stderr, `no "upn" claim`) {
		t.Errorf("kubectl get --raw with a claim the person lacks: %v\n%s\nwant a refusal naming the claim", err, stderr)
	}
}
