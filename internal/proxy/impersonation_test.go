package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/kube"
)

// TestImpersonationHeadersAreNeverDropped: a client that asks to be
// someone else, in a way Portcullis cannot honour, is told so; the request
// is neither forwarded with the headers nor, silently, without them.
func TestImpersonationHeadersAreNeverDropped(t *testing.T) {
	tests := []struct {
		name     string
		header   http.Header
		wantCode int
		wantSay  string
	}{
		{"a system: user", http.Header{"Impersonate-User": {"system:admin"}}, 403, `are reserved for Kubernetes's own identities`},
		{"a system: group", http.Header{"Impersonate-User": {"bob"}, "Impersonate-Group": {"system:masters"}}, 403, `group \"system:masters\"`},
		{"groups without a user, in lower case", http.Header{"impersonate-group": {"sre"}}, 400, "needs a user"},
		{"two users", http.Header{"Impersonate-User": {"bob", "carol"}}, 400, "more than one Impersonate-User"},
		{"an empty user", http.Header{"Impersonate-User": {""}}, 400, "empty Impersonate-User"},
		{"a control character", http.Header{"Impersonate-User": {"bob\x00"}}, 400, "Impersonate-User"},
		{"a uid", http.Header{"Impersonate-User": {"bob"}, "Impersonate-Uid": {"0"}}, 403, "not --as-uid"},
		{"an extra field", http.Header{"Impersonate-User": {"bob"}, "Impersonate-Extra-Scopes": {"all"}}, 403, "Impersonate-Extra-"},
		{"Portcullis's own extra field", http.Header{"Impersonate-User": {"bob"}, "Impersonate-Extra-Portcullis.io%2fimpersonator": {"someone@example.com"}}, 403, "Impersonate-Extra-"},
		{"a header Kubernetes may add one day", http.Header{"IMPERSONATE-FUTURE": {"x"}}, 403, "Impersonate-Extra-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, nil)
			p := newProxy(t, kubeRoute(t, up.URL))
			req := httptest.NewRequest("GET", testFrom+"/api/v1/namespaces/default/pods", nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, withIdentity(req, alice()))
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantSay) || !strings.Contains(rec.Body.String(), `"kind":"Status"`) {
				t.Errorf("got %d %s; want %d, a Status saying %q", rec.Code, rec.Body, tt.wantCode, tt.wantSay)
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("the upstream got %d requests, want none", n)
			}
		})
	}
}

// TestImpersonationReviewedAsThePerson: kubectl --as is decided by the
// cluster's RBAC for the person, asked by a SelfSubjectAccessReview sent as
// the person; what RBAC allows is forwarded as the requested identity with
// the person recorded, what it does not is refused naming what, and a
// cluster that cannot answer refuses too.
func TestImpersonationReviewedAsThePerson(t *testing.T) {
	var reviews []kube.ReviewAttributes
	var reviewHeaders []http.Header
	failReviews := false
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"kind":"PodList","apiVersion":"v1","items":[]}`))
			return
		}
		if failReviews {
			http.Error(w, "etcd is down", http.StatusInternalServerError)
			return
		}
		var ssar struct {
			Kind string `json:"kind"`
			Spec struct {
				ResourceAttributes kube.ReviewAttributes `json:"resourceAttributes"`
			} `json:"spec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&ssar); err != nil || ssar.Kind != "SelfSubjectAccessReview" {
			t.Errorf("a review that is not a SelfSubjectAccessReview: %v %+v", err, ssar)
		}
		a := ssar.Spec.ResourceAttributes
		reviews = append(reviews, a)
		reviewHeaders = append(reviewHeaders, r.Header.Clone())
		// alice may impersonate bob and the group readers, nothing else.
		allowed := a.Verb == "impersonate" && ((a.Resource == "users" && a.Name == "bob") || (a.Resource == "groups" && a.Name == "readers"))
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"kind": "SelfSubjectAccessReview", "status": map[string]any{"allowed": allowed}})
	})
	p := newProxy(t, kubeRoute(t, up.URL))
	get := func(user string, groups ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", testFrom+"/api/v1/namespaces/default/pods", nil)
		req.Header["Impersonate-User"] = []string{user}
		if len(groups) > 0 {
			req.Header["Impersonate-Group"] = groups
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, withIdentity(req, alice()))
		return rec
	}
	apiRequests := func() (out []received) {
		for _, r := range up.requests() {
			if !strings.Contains(r.Path, "selfsubjectaccessreviews") {
				out = append(out, r)
			}
		}
		return out
	}

	if rec := get("bob", "readers"); rec.Code != http.StatusOK {
		t.Fatalf("--as bob --as-group readers: got %d %s, want 200", rec.Code, rec.Body)
	}
	wantReviews := []kube.ReviewAttributes{{Verb: "impersonate", Resource: "users", Name: "bob"}, {Verb: "impersonate", Resource: "groups", Name: "readers"}}
	if diff := cmp.Diff(wantReviews, reviews); diff != "" {
		t.Errorf("the reviews asked (-want +got):\n%s", diff)
	}
	for _, h := range reviewHeaders {
		if h.Get("Impersonate-User") != "alice@example.com" || !cmp.Equal(h.Values("Impersonate-Group"), alice().Groups) ||
			h.Get("Authorization") != "Bearer "+testSAToken {
			t.Errorf("a review was not asked as alice with the service account's token: %v", h)
		}
	}
	api := apiRequests()
	if len(api) != 1 {
		t.Fatalf("the upstream got %d API requests, want 1", len(api))
	}
	h := api[0].Header
	if h.Get("Impersonate-User") != "bob" || !cmp.Equal(h.Values("Impersonate-Group"), []string{"readers"}) ||
		h.Get(kube.HeaderExtraImpersonator) != "alice@example.com" || h.Get("Authorization") != "Bearer "+testSAToken {
		t.Errorf("the forwarded request's identity: %v; want bob in readers, impersonated by alice", h)
	}

	// The answers are kept: the next request of the command asks nothing.
	if rec := get("bob", "readers"); rec.Code != http.StatusOK || len(reviews) != 2 {
		t.Errorf("the same impersonation again: got %d after %d reviews, want 200 and no new review", rec.Code, len(reviews))
	}

	if rec := get("carol"); rec.Code != http.StatusForbidden ||
		!strings.Contains(rec.Body.String(), `alice@example.com may not impersonate user \"carol\": the cluster's RBAC does not allow it`) {
		t.Errorf("--as carol: got %d %s, want 403 saying alice may not impersonate carol", rec.Code, rec.Body)
	}
	if rec := get("bob", "admins"); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `group \"admins\"`) {
		t.Errorf("--as bob --as-group admins: got %d %s, want 403 naming the group", rec.Code, rec.Body)
	}
	if n := len(apiRequests()); n != 2 {
		t.Errorf("the upstream got %d API requests, want only the 2 allowed", n)
	}

	failReviews = true
	if rec := get("dave"); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "could not ask the cluster") {
		t.Errorf("a cluster that cannot answer: got %d %s, want 503", rec.Code, rec.Body)
	}
	if n := len(apiRequests()); n != 2 {
		t.Errorf("the upstream got %d API requests, want only the 2 allowed", n)
	}
}
