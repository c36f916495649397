package route

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRoutes(t *testing.T) {
	var answer string
	srv, caFile := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != "/.pomerium/api/v1/routes":
			http.NotFound(w, r)
		case r.Header.Get("Authorization") != "Bearer Pomerium-good":
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"session expired: sign in again","reason":"Unauthorized","code":401}`))
		default:
			w.Write([]byte(answer))
		}
	}))
	c := client(t, srv.URL, TLSOptions{CACert: caFile})
	ctx := context.Background()

	answer = `{"routes":[{"url":"https://A.example.com:443/"},{"url":"https://b.example.com:8443"},{"url":"https://a.example.com"}]}`
	got, err := c.Routes(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"https://a.example.com", "https://b.example.com:8443"}, got); diff != "" {
		t.Errorf("routes, canonical and once each (-want +got):\n%s", diff)
	}

	if _, err := c.Routes(ctx, "signed-out"); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "session expired") {
		t.Errorf("a refused token: got %v, want ErrRejected with the server's message", err)
	}
	many := `{"routes":[` + strings.Repeat(`{"url":"https://a.example.com"},`, maxRoutes) + `{"url":"https://a.example.com"}]}`
	for _, tc := range []struct{ name, answer, want string }{
		{"not JSON", `<html>`, "not a list of routes"},
		{"not a web address", `{"routes":[{"url":"file:///etc/passwd"}]}`, "not a web address: file:///etc/passwd"},
		{"a terminal escape", `{"routes":[{"url":"javascript:\u001b[2J"}]}`, "not a web address: javascript:[2J"},
		{"too many", many, fmt.Sprintf("more than the %d", maxRoutes)},
	} {
		answer = tc.answer
		if _, err := c.Routes(ctx, "good"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	old := client(t, srv.URL+"/older", TLSOptions{CACert: caFile})
	if _, err := old.Routes(ctx, "good"); err == nil || !strings.Contains(err.Error(), "does not list routes") {
		t.Errorf("a server without the list: got %v, want it said", err)
	}
}

// FuzzParseRouteList: whatever a server answers, the list is refused or
// every route in it is a canonical web address, named once.
func FuzzParseRouteList(f *testing.F) {
	f.Add(`{"routes":[{"url":"https://a.example.com"},{"url":"https://A.example.com:443/"}]}`)
	f.Add(`{"routes":[{"url":"file:///etc/passwd"}]}`)
	f.Add(`{"routes":[{"url":"https://user:pw@a.example.com"}]}`)
	f.Add(`{"routes":null}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		urls, err := parseRouteList([]byte(body))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, s := range urls {
			u, err := ParseURL(s)
			if err != nil || u.String() != s || seen[s] {
				t.Fatalf("%q: route %q is not canonical, or named twice (%v)", body, s, err)
			}
			seen[s] = true
		}
	})
}
