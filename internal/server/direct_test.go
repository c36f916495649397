package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/direct"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// TestReviewWebhook: the authorization webhook of direct mode, as
// kube-apiserver calls it, with a real sign-in's token, and the attacks on
// it: a caller without the apiserver's token (a browser with the cookie,
// another route's token), a session reference that is forged, sealed for
// something else (the session cookie) or of a session that ended, a
// review of someone else or of a group the person no longer has.
func TestReviewWebhook(t *testing.T) {
	st := newBrowserStack(t, func(r *config.Route) {
		r.Policy = &config.Policy{Rules: []config.PolicyRule{{Action: "deny", Root: config.PolicyExpr{Op: "and",
			Children: []config.PolicyExpr{{Criterion: "kubernetes_namespace", Value: "prod"}}}}}}
	})
	const person = "someone@example.com"

	// The token carries the person as Kubernetes sees them, and the
	// session sealed.
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(st.token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims session.Claims
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.KubernetesUser != person || claims.KubernetesGroups != nil || claims.KubernetesSession == "" ||
		strings.Contains(claims.KubernetesSession, claims.SessionID) {
		t.Fatalf("token claims: kubernetes_user %q, kubernetes_groups %v, kubernetes_session %q (sid %q); want the person, no groups claim, and the session sealed",
			claims.KubernetesUser, claims.KubernetesGroups, claims.KubernetesSession, claims.SessionID)
	}
	ref := claims.KubernetesSession
	apiserverToken := webhookToken(testSecret, &config.Route{From: mustURL(t, "https://k8s.test")})

	send := func(t *testing.T, method, auth string, body []byte) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, "https://k8s.test"+pathReview, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := st.browser.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	sar := func(user string, groups []string, refs []string, ra *authorizationv1.ResourceAttributes) []byte {
		r := authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: ra}}
		r.APIVersion, r.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
		if refs != nil {
			r.Spec.Extra = map[string]authorizationv1.ExtraValue{direct.ExtraSession: refs}
		}
		b, _ := json.Marshal(r)
		return b
	}
	pods := func(ns string) *authorizationv1.ResourceAttributes {
		return &authorizationv1.ResourceAttributes{Verb: "list", Version: "v1", Resource: "pods", Namespace: ns}
	}
	review := func(t *testing.T, body []byte) authorizationv1.SubjectAccessReviewStatus {
		t.Helper()
		code, b := send(t, http.MethodPost, apiserverToken, body)
		if code != http.StatusOK {
			t.Fatalf("review: %d, want 200\n%s", code, b)
		}
		var out authorizationv1.SubjectAccessReview
		if err := json.Unmarshal(b, &out); err != nil || out.APIVersion != "authorization.k8s.io/v1" || out.Kind != "SubjectAccessReview" {
			t.Fatalf("review answer: %v\n%s", err, b)
		}
		return out.Status
	}
	authenticated := []string{"system:authenticated"}

	t.Run("only kube-apiserver may ask", func(t *testing.T) {
		body := sar(person, authenticated, []string{ref}, pods("dev"))
		for _, tc := range []struct {
			name, method, auth string
			want               int
		}{
			{"no token (a browser with the session cookie)", http.MethodPost, "", http.StatusUnauthorized},
			{"the person's own Portcullis token", http.MethodPost, "Pomerium-" + st.token, http.StatusUnauthorized},
			{"another route's webhook token", http.MethodPost, webhookToken(testSecret, &config.Route{From: mustURL(t, "https://app.test")}), http.StatusUnauthorized},
			{"a token under another secret", http.MethodPost, webhookToken([]byte("another secret"), &config.Route{From: mustURL(t, "https://k8s.test")}), http.StatusUnauthorized},
			{"GET", http.MethodGet, apiserverToken, http.StatusMethodNotAllowed},
		} {
			if code, b := send(t, tc.method, tc.auth, body); code != tc.want {
				t.Errorf("%s: %d, want %d\n%s", tc.name, code, tc.want, b)
			}
		}
		if code, b := send(t, http.MethodPost, apiserverToken, []byte(`{"apiVersion":"authorization.k8s.io/v1beta1","kind":"SubjectAccessReview"}`)); code != http.StatusBadRequest {
			t.Errorf("a v1beta1 review: %d, want 400\n%s", code, b)
		}
		if code, b := send(t, http.MethodPost, apiserverToken, bytes.Repeat([]byte(" "), maxReviewBody+1)); code != http.StatusBadRequest {
			t.Errorf("an oversized body: %d, want 400\n%s", code, b)
		}
	})

	t.Run("decisions", func(t *testing.T) {
		cookie := ""
		for _, c := range st.browser.Client.Jar.Cookies(mustURL(t, "https://k8s.test/")) {
			if c.Name == config.Defaults().CookieName {
				cookie = c.Value
			}
		}
		if cookie == "" {
			t.Fatal("the browser has no session cookie for k8s.test")
		}
		for _, tc := range []struct {
			name     string
			body     []byte
			want     bool   // denied
			wantText string // in the reason
		}{
			{"the person, allowed by the policy: RBAC decides", sar(person, authenticated, []string{ref}, pods("dev")), false, ""},
			{"a non-resource request", func() []byte {
				r := authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: person, Groups: authenticated,
					Extra: map[string]authorizationv1.ExtraValue{direct.ExtraSession: {ref}}, NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/api", Verb: "get"}}}
				r.APIVersion, r.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
				b, _ := json.Marshal(r)
				return b
			}(), false, ""},
			{"denied by the policy, naming the rule", sar(person, authenticated, []string{ref}, pods("prod")), true, "denied by policy rule policy[0].deny.and"},
			{"not a Portcullis person: no opinion", sar("admin", []string{"system:masters"}, nil, pods("prod")), false, ""},
			{"someone else with the person's session", sar("mallory@example.com", authenticated, []string{ref}, pods("dev")), true, "not mallory@example.com's"},
			{"a group the session does not give", sar(person, []string{"system:authenticated", "admins"}, []string{ref}, pods("dev")), true, `no longer in the group "admins"`},
			{"two sessions", sar(person, authenticated, []string{ref, ref}, pods("dev")), true, "more than one"},
			{"a forged reference", sar(person, authenticated, []string{"Zm9yZ2Vk"}, pods("dev")), true, "not valid"},
			{"the session cookie as the reference", sar(person, authenticated, []string{cookie}, pods("dev")), true, "not valid"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := review(t, tc.body)
				if got.Allowed {
					t.Fatalf("allowed: the webhook never allows, RBAC does")
				}
				if got.Denied != tc.want || !strings.Contains(got.Reason, tc.wantText) {
					t.Errorf("got denied %t (%q), want %t (with %q)", got.Denied, got.Reason, tc.want, tc.wantText)
				}
				if !tc.want && got != noOpinion {
					t.Errorf("got %+v, want no opinion", got)
				}
			})
		}
	})

	t.Run("a session that ended is denied", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://k8s.test/.pomerium/sign_out", nil)
		req.Header.Set("Authorization", "Pomerium "+st.token)
		req.Header.Set("Accept", "application/json")
		resp, err := st.browser.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 400 {
			t.Fatalf("sign-out: %s", resp.Status)
		}
		if got := review(t, sar(person, authenticated, []string{ref}, pods("dev"))); !got.Denied || !strings.Contains(got.Reason, "session ended") {
			t.Errorf("after sign-out: %+v, want denied: session ended", got)
		}
	})
}

// TestReviewedRequest: a review's attributes become the request the policy
// sees, with the method and path kube-apiserver would have parsed them
// from.
func TestReviewedRequest(t *testing.T) {
	for _, tc := range []struct {
		name             string
		spec             authorizationv1.SubjectAccessReviewSpec
		wantMethod, want string
	}{
		{"core list", authorizationv1.SubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "list", Version: "v1", Resource: "pods", Namespace: "dev"}},
			"GET", "/api/v1/namespaces/dev/pods"},
		{"exec", authorizationv1.SubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Version: "v1", Resource: "pods", Subresource: "exec", Namespace: "prod", Name: "app"}},
			"POST", "/api/v1/namespaces/prod/pods/app/exec"},
		{"group, cluster-scoped", authorizationv1.SubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "delete", Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles", Name: "x"}},
			"DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterroles/x"},
		{"a namespace", authorizationv1.SubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Version: "v1", Resource: "namespaces", Namespace: "dev", Name: "dev"}},
			"GET", "/api/v1/namespaces/dev"},
		{"impersonate: no HTTP method", authorizationv1.SubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "impersonate", Version: "v1", Resource: "users", Name: "bob"}},
			"", "/api/v1/users/bob"},
		{"non-resource", authorizationv1.SubjectAccessReviewSpec{NonResourceAttributes: &authorizationv1.NonResourceAttributes{Verb: "get", Path: "/healthz"}},
			"GET", "/healthz"},
		{"neither", authorizationv1.SubjectAccessReviewSpec{}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method, path, k := reviewedRequest(&tc.spec)
			if method != tc.wantMethod || path != tc.want {
				t.Errorf("got %s %s, want %s %s", method, path, tc.wantMethod, tc.want)
			}
			if ra := tc.spec.ResourceAttributes; ra != nil && (k.Verb != ra.Verb || k.Resource != ra.Resource || k.Subresource != ra.Subresource || k.Namespace != ra.Namespace || k.Name != ra.Name || k.APIGroup != ra.Group) {
				t.Errorf("attributes %+v, want those of %+v", k, ra)
			}
		})
	}
}

// TestDirectConfig: what direct-config refuses, each with what to do.
func TestDirectConfig(t *testing.T) {
	route := func(from string, kubernetes bool) config.Route {
		r := config.Route{From: mustURL(t, from), To: []*url.URL{mustURL(t, "https://10.0.0.1:6443")}, AllowAnyAuthenticatedUser: true}
		if kubernetes {
			r.KubernetesServiceAccountToken = "sa-token"
		}
		return r
	}
	good := func(o *config.Options) {
		o.AuthenticateServiceURL = mustURL(t, "https://auth.example.com")
		o.Routes = []config.Route{route("https://k8s.example.com", true), route("https://app.example.com", false)}
	}
	files, r, err := DirectConfig(testOptions(good), "", []byte("CA"), "/etc/kubernetes/portcullis-webhook.kubeconfig")
	if err != nil || r.From.Host != "k8s.example.com" || len(files) != 3 {
		t.Fatalf("DirectConfig: %v, route %v, %d files", err, r, len(files))
	}
	if kc := string(files[direct.WebhookKubeconfigFile]); !strings.Contains(kc, "https://k8s.example.com"+pathReview) ||
		!strings.Contains(kc, webhookToken(testSecret, r)) {
		t.Errorf("webhook kubeconfig lacks the route's webhook URL or token:\n%s", kc)
	}
	for _, tc := range []struct {
		name, route string
		edit        func(o *config.Options)
		want        string
	}{
		{"no sign-in service", "", func(o *config.Options) { o.AuthenticateServiceURL = nil }, "needs AUTHENTICATE_SERVICE_URL"},
		{"plain http issuer", "", func(o *config.Options) { o.AuthenticateServiceURL = mustURL(t, "http://auth.example.com") }, "https AUTHENTICATE_SERVICE_URL"},
		{"generated shared secret", "", func(o *config.Options) { o.SharedSecret = nil }, "needs SHARED_SECRET set"},
		{"not a Kubernetes route", "https://app.example.com", nil, "not a Kubernetes route"},
		{"unknown route", "https://other.example.com", nil, "no route is from"},
		{"two Kubernetes routes, none named", "", func(o *config.Options) { o.Routes = append(o.Routes, route("https://k8s2.example.com", true)) }, "name one with --route"},
		{"a policy that reads the connection", "", func(o *config.Options) {
			o.Routes[0].Policy = &config.Policy{Rules: []config.PolicyRule{{Action: "deny", Root: config.PolicyExpr{Op: "and",
				Children: []config.PolicyExpr{{Criterion: "source_ip", Value: "192.0.2.1"}}}}}}
		}, "uses source_ip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(good)
			if tc.edit != nil {
				tc.edit(opts)
			}
			_, _, err := DirectConfig(opts, tc.route, nil, "/etc/kubernetes/portcullis-webhook.kubeconfig")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// FuzzReviewedRequest: whatever review body kube-apiserver (or anyone
// holding its token) sends, decoding it and deriving the request the
// policy sees never panics, and a path is always absolute or empty.
func FuzzReviewedRequest(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"a","resourceAttributes":{"verb":"get","version":"v1","resource":"pods","namespace":"dev","name":"x","subresource":"exec"}}}`))
	f.Add([]byte(`{"spec":{"nonResourceAttributes":{"verb":"get","path":"/api"}}}`))
	f.Add([]byte(`{"spec":{"extra":{"portcullis.io/session":["a","b"]},"resourceAttributes":{"group":"apps"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var sar authorizationv1.SubjectAccessReview
		if json.Unmarshal(body, &sar) != nil {
			return
		}
		_, path, _ := reviewedRequest(&sar.Spec)
		if sar.Spec.NonResourceAttributes == nil && path != "" && !strings.HasPrefix(path, "/") {
			t.Errorf("path %q is not absolute", path)
		}
	})
}
