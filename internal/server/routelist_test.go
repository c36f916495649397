package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRouteList(t *testing.T) {
	up := watchUpstream(t)
	// c.test lets alice into one namespace, and so not the discovery
	// kubectl starts with; d.test is not a Kubernetes route.
	rs := startReloadStack(t, kubeRoute("a.test", up, "alice@example.com", "bob@example.com")+
		kubeRoute("b.test", up, "alice@example.com")+
		strings.Replace(kubeRoute("c.test", up, "alice@example.com"), "or:", "and:\n            - kubernetes_namespace: dev", 1)+
		"  - from: http://d.test\n    to: "+up+"\n    allowed_users: [alice@example.com]\n")
	ctx := context.Background()
	list := func(t *testing.T, email string) []string {
		t.Helper()
		resp := rs.get(t, ctx, "a.test", pathRoutes, email)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s as %s: %s, want 200", pathRoutes, email, resp.Status)
		}
		if got := resp.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type %q, want application/json", got)
		}
		var l routeList
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			t.Fatal(err)
		}
		urls := []string{}
		for _, r := range l.Routes {
			urls = append(urls, r.URL)
		}
		return urls
	}
	for _, tc := range []struct {
		email string
		want  []string
	}{
		{"alice@example.com", []string{"http://a.test", "http://b.test"}},
		{"bob@example.com", []string{"http://a.test"}},
		// Someone no route allows learns of none.
		{"carol@example.com", []string{}},
	} {
		if diff := cmp.Diff(tc.want, list(t, tc.email)); diff != "" {
			t.Errorf("routes for %s (-want +got):\n%s", tc.email, diff)
		}
	}

	refused := func(name string, req *http.Request, want int) {
		t.Helper()
		resp, err := rs.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %s, want %d", name, resp.Status, want)
		}
	}
	anonymous, _ := http.NewRequest(http.MethodGet, rs.url+pathRoutes, nil)
	anonymous.Host = "a.test"
	refused("no token", anonymous, http.StatusUnauthorized)
	// A token for b.test does not open a.test's list.
	resp := rs.get(t, ctx, "b.test", pathRoutes, "alice@example.com")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("alice's token for b.test on b.test: %s, want 200", resp.Status)
	}
	other := rs.get(t, ctx, "b.test", "/", "alice@example.com").Request
	foreign, _ := http.NewRequest(http.MethodGet, rs.url+pathRoutes, nil)
	foreign.Host = "a.test"
	foreign.Header.Set("Authorization", other.Header.Get("Authorization"))
	refused("a token for another route", foreign, http.StatusUnauthorized)
	post, _ := http.NewRequest(http.MethodPost, rs.url+pathRoutes, nil)
	post.Host = "a.test"
	post.Header.Set("Authorization", other.Header.Get("Authorization"))
	refused("POST", post, http.StatusMethodNotAllowed)
}
