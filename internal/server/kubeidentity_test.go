package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// TestKubernetesIdentityMapping: each Kubernetes route sends kube-apiserver
// the person as its identity mapping says (the top-level settings, or the
// route's own); the policy decides on the provider's groups, filtered or
// not; a person the mapping gives no user name, or a system: one, is
// refused with a Status saying why, and nothing reaches the cluster.
func TestKubernetesIdentityMapping(t *testing.T) {
	type impersonated struct {
		user   string
		groups []string
	}
	var (
		mu   sync.Mutex
		seen []impersonated
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, impersonated{r.Header.Get("Impersonate-User"), r.Header.Values("Impersonate-Group")})
		mu.Unlock()
		w.Write([]byte("{}"))
	}))
	t.Cleanup(up.Close)
	route := func(host, policy, extra string) string {
		return "  - from: http://" + host + "\n    to: " + up.URL +
			"\n    kubernetes_service_account_token: eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpwb3J0Y3VsbGlzIn0.c2ln" +
			"\n    policy:\n      - allow:\n          or:\n            - " + policy + "\n" + extra
	}
	text := "kubernetes_groups_prefix: \"g:\"\n" + reloadConfig(
		route("default.test", "email: {is: alice@example.com}", "")+
			// dev does not reach Kubernetes here, but the policy sees it.
			route("mapped.test", "groups: {has: dev}", `    kubernetes_username_prefix: "oidc:"
    kubernetes_groups_prefix: "oidc:"
    kubernetes_groups_filter: ["k8s-*", sre]
`)+
			route("claim.test", "email: {is: alice@example.com}", "    kubernetes_username_claim: preferred_username\n    kubernetes_username_prefix: \"-\"\n")+
			route("name.test", "email: {is: alice@example.com}", "    kubernetes_username_claim: name\n    kubernetes_username_prefix: \"-\"\n"))
	path := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := config.Load(path, nil, Checks()...)
	if err != nil {
		t.Fatal(err)
	}
	s := newUnservedServer(t, opts)
	do := func(host, name string) *httptest.ResponseRecorder {
		t.Helper()
		tok, err := s.keys.Issue(session.Claims{Subject: "alice-id", Email: "alice@example.com", Name: name,
			Groups: []string{"dev", "k8s-admins", "sre", "sales"}, Audience: host, Expiry: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "http://"+host+"/api/v1/namespaces/default/pods", nil)
		req.Header.Set("Authorization", "Bearer Pomerium-"+tok)
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req)
		return rec
	}
	last := func() (impersonated, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return impersonated{}, 0
		}
		return seen[len(seen)-1], len(seen)
	}

	for _, tc := range []struct {
		host, name string
		want       impersonated
	}{
		{"default.test", "Alice", impersonated{"alice@example.com", []string{"g:dev", "g:k8s-admins", "g:sre", "g:sales"}}},
		{"mapped.test", "Alice", impersonated{"oidc:alice@example.com", []string{"oidc:k8s-admins", "oidc:sre"}}},
		{"name.test", "Alice Example", impersonated{"Alice Example", []string{"g:dev", "g:k8s-admins", "g:sre", "g:sales"}}},
	} {
		rec := do(tc.host, tc.name)
		got, _ := last()
		if rec.Code != http.StatusOK || got.user != tc.want.user || !slices.Equal(got.groups, tc.want.groups) {
			t.Errorf("%s: got %d, the cluster saw %q %q; want 200, %q %q\n%s", tc.host, rec.Code, got.user, got.groups, tc.want.user, tc.want.groups, rec.Body)
		}
	}

	_, before := last()
	for _, tc := range []struct {
		host, name, want string
	}{
		// A token without a session carries email, sub and name only.
		{"claim.test", "Alice", `Kubernetes, which would see no user name: the identity provider gave no \"preferred_username\" claim`},
		{"name.test", "system:admin", `names beginning with \"system:\" are reserved`},
		{"name.test", "", `Kubernetes, which would see no user name: the \"name\" claim is empty`},
	} {
		rec := do(tc.host, tc.name)
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `"kind":"Status"`) || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s as %q: got %d %s; want a 403 Status saying %s", tc.host, tc.name, rec.Code, rec.Body, tc.want)
		}
	}
	if _, after := last(); after != before {
		t.Errorf("%d refused requests reached the cluster", after-before)
	}
}

// TestKubernetesIdentityCheck: a user name claim other than email, with
// no prefix, takes kube-apiserver's default prefix, the identity
// provider's issuer URL: without a provider, --check-config and a start
// refuse it, naming the key; with one, it is that provider's URL.
func TestKubernetesIdentityCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(path, []byte("kubernetes_username_claim: sub\n"+reloadConfig(kubeRoute("a.test", "https://10.0.0.1:6443", "alice@example.com"))), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path, nil, Checks()...)
	if err == nil || !strings.Contains(err.Error(), `routes[0].kubernetes_username_claim: the user name claim is "sub", which kube-apiserver's rule prefixes with the identity provider's issuer URL`) {
		t.Errorf("got %v, want the claim refused", err)
	}

	for _, tc := range []struct {
		opts func(o *config.Options)
		want string
	}{
		{func(o *config.Options) { o.IDPProvider = "google" }, "https://accounts.google.com#"},
		{func(o *config.Options) { o.IDPProvider, o.IDPProviderURL = "oidc", "https://dex.example.com/dex" }, "https://dex.example.com/dex#"},
		{func(o *config.Options) {
			o.IDPProvider, o.AuthenticateServiceURL = "builtin", mustURL(t, "https://auth.example.com")
		}, "https://auth.example.com/.portcullis/idp#"},
	} {
		o := testOptions(tc.opts)
		m, err := kubernetesMapping(o, &config.Route{KubernetesServiceAccountToken: "t", KubernetesUsernameClaim: "sub"})
		if err != nil {
			t.Fatal(err)
		}
		id := &identity.Identity{User: "1234", Email: "alice@example.com"}
		if user, _, err := m.Map(id); err != nil || user != tc.want+id.User {
			t.Errorf("%s: got %q, %v; want %q", o.IDPProvider, user, err, tc.want+id.User)
		}
	}
}
