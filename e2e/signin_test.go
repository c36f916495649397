package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestSignIn signs a person in through a real OpenID provider (zitadel's
// example OP, over HTTP on loopback) the way a browser does, then uses the
// session against the Kubernetes route, signs in programmatically as
// portcullis-cli does, and signs out.
func TestSignIn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The route lets in whoever the provider gives the family name User,
	// a claim the provider issues (in userinfo) that Portcullis has no use
	// of its own for: only the provider's claims kept in the session let
	// the policy see it.
	st := startSigninStackWithPolicy(t, ctx, "    - allow:\n        and:\n          - claim/family_name: User\n")
	ca, idp, routeURL, authURL := st.ca, st.idp, st.routeURL, st.authURL

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS()}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	browser := testenv.NewBrowser(ca.ClientTLS())
	t.Run("a browser is sent to sign in and comes back signed in", func(t *testing.T) {
		final, page, err := browser.SignIn(ctx, routeURL+"/.pomerium/", signinEmail, signinPassword, "")
		if err != nil {
			t.Fatalf("%v\nvisited: %s", err, strings.Join(browser.Visited, "\n  "))
		}
		if final.String() != routeURL+"/.pomerium/" || !strings.Contains(page, "someuser@example.com") {
			t.Errorf("ended at %s with %q, want the who-am-I page of someuser@example.com", final, page)
		}
		if !visited(browser, idp.Issuer) || !visited(browser, authURL+"/oauth2/callback") {
			t.Errorf("the sign-in did not go through the provider and the callback: %v", browser.Visited)
		}
	})

	t.Run("a person whose provider has not verified their email is refused", func(t *testing.T) {
		// The email becomes the Kubernetes user name: an address nobody
		// proved they own would let anyone be anyone.
		b := testenv.NewBrowser(ca.ClientTLS())
		final, page, err := b.SignIn(ctx, routeURL+"/.pomerium/", signinUnverifiedEmail, signinPassword, "")
		if err == nil || !strings.Contains(page, "Email address not verified") || final.Host != strings.TrimPrefix(authURL, "https://") {
			t.Errorf("got %v at %v with %q, want the sign-in service's page saying the address is not verified", err, final, page)
		}
		if resp := get(t, b.Client, routeURL+"/.pomerium/", "application/json", ""); resp.code != http.StatusUnauthorized {
			t.Errorf("who am I after the refusal: got %d %q, want 401", resp.code, resp.body)
		}
	})

	t.Run("who am I answers scripts in JSON", func(t *testing.T) {
		var who struct {
			Email  string   `json:"email"`
			Groups []string `json:"groups"`
		}
		resp := get(t, browser.Client, routeURL+"/.pomerium/", "application/json", "")
		if err := json.Unmarshal([]byte(resp.body), &who); err != nil || who.Email != "someuser@example.com" {
			t.Errorf("got %d %q, want JSON naming someuser@example.com", resp.code, resp.body)
		}
	})

	t.Run("the session cookie does not open the Kubernetes API", func(t *testing.T) {
		// A page on the API's origin would otherwise act as the person.
		resp := get(t, browser.Client, routeURL+"/api/v1/namespaces", "application/json", "")
		if resp.code != http.StatusUnauthorized || !strings.Contains(resp.body, "cookie does not open the Kubernetes API") {
			t.Errorf("the API with the cookie: got %d %q, want 401 saying to use kubectl", resp.code, resp.body)
		}
	})

	var cliToken string
	t.Run("programmatic login delivers a token to a loopback listener", func(t *testing.T) {
		// A fresh browser, as when the CLI opens the system browser.
		cliToken = programmaticLogin(t, ctx, testenv.NewBrowser(ca.ClientTLS()), routeURL, authURL, signinEmail, signinPassword)
		if user := whoamiWith(t, client, routeURL, "Bearer Pomerium-"+cliToken); user != "someuser@example.com" {
			t.Errorf("with the token the apiserver saw %q, want someuser@example.com", user)
		}
	})

	t.Run("a policy on a claim of the provider's, through kubectl", func(t *testing.T) {
		for _, tc := range []struct {
			email   string
			allowed bool
		}{{signinEmail, true}, {signinOutsiderEmail, false}} {
			tok := programmaticLogin(t, ctx, testenv.NewBrowser(ca.ClientTLS()), routeURL, authURL, tc.email, signinPassword)
			kubeconfig := writeKubeconfig(t, routeURL, ca.CertPEM, tok)
			if tc.allowed {
				out, _, err := st.cluster.Kubectl(ctx, nil, "--kubeconfig", kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
				if err != nil || out != tc.email {
					t.Errorf("%s (family name User): kubectl auth whoami gave %q, %v; want %s", tc.email, out, err, tc.email)
				}
				continue
			}
			// --raw: a plain get would first fail discovery, which kubectl
			// reports without the server's message.
			_, errOut, err := st.cluster.Kubectl(ctx, nil, "--kubeconfig", kubeconfig, "get", "--raw", "/api/v1/namespaces")
			if err == nil || !strings.Contains(errOut, "Forbidden") || !strings.Contains(errOut, "claim-unauthorized") {
				t.Errorf("%s (family name Sider): kubectl get --raw /api/v1/namespaces gave %q, %v; want Forbidden by the claim", tc.email, errOut, err)
			}
		}
	})

	t.Run("redirects go only to loopback or to routes", func(t *testing.T) {
		for _, evil := range []string{"https://evil.example/cb", "//evil.example/cb", "http://127.0.0.1.evil.example/cb", "http://user@127.0.0.1:8000/cb", "http://10.0.0.1:8000/cb", ""} {
			resp := get(t, browser.Client, routeURL+"/.pomerium/api/v1/login?pomerium_redirect_uri="+url.QueryEscape(evil), "", "")
			if resp.code != http.StatusBadRequest || strings.Contains(resp.body, "sign_in") {
				t.Errorf("login API with %q: got %d %q, want 400", evil, resp.code, resp.body)
			}
		}
		resp := get(t, browser.Client, authURL+"/.pomerium/sign_in?pomerium_redirect_uri="+url.QueryEscape("https://evil.example/"), "text/html", "")
		if resp.code != http.StatusBadRequest {
			t.Errorf("sign-in to an unknown host: got %d, want 400", resp.code)
		}
	})

	t.Run("sign-out revokes the session and its tokens at once", func(t *testing.T) {
		resp := get(t, browser.Client, routeURL+"/.pomerium/sign_out", "text/html", "")
		if resp.code != http.StatusOK || !strings.Contains(resp.body, `method="post"`) {
			t.Fatalf("GET sign-out: got %d %q, want the page with the sign-out button", resp.code, resp.body)
		}
		resp = do(t, browser.Client, "POST", routeURL+"/.pomerium/sign_out", http.Header{"Authorization": {"Bearer Pomerium-" + cliToken}}, "")
		if resp.code >= 400 {
			t.Fatalf("sign-out: got %d %q", resp.code, resp.body)
		}
		resp = get(t, client, routeURL+"/.pomerium/", "application/json", "Bearer Pomerium-"+cliToken)
		if resp.code != http.StatusUnauthorized {
			t.Errorf("the signed-out session's token: got %d %q, want 401", resp.code, resp.body)
		}
	})

	t.Run("the provider down at callback time: a clear page, and sessions keep working", func(t *testing.T) {
		// Signed in before the outage.
		before := testenv.NewBrowser(ca.ClientTLS())
		if _, _, err := before.SignIn(ctx, routeURL+"/.pomerium/", signinEmail, signinPassword, ""); err != nil {
			t.Fatal(err)
		}
		// A sign-in that reaches the provider and comes back after it went down.
		during := testenv.NewBrowser(ca.ClientTLS())
		callback, _, err := during.SignIn(ctx, routeURL+"/.pomerium/", signinEmail, signinPassword, authURL+"/oauth2/callback")
		if err != nil {
			t.Fatal(err)
		}
		idp.Close()
		resp := get(t, during.Client, callback.String(), "text/html", "")
		if resp.code != http.StatusBadGateway || !strings.Contains(resp.body, "could not reach your identity provider") || strings.Contains(resp.body, "goroutine") {
			t.Errorf("callback with the provider down: got %d %q, want 502 with a page saying the provider could not be reached", resp.code, resp.body)
		}
		resp = get(t, before.Client, routeURL+"/.pomerium/", "application/json", "")
		if resp.code != http.StatusOK || !strings.Contains(resp.body, "someuser@example.com") {
			t.Errorf("an existing session during the outage: who am I got %d %q, want someuser@example.com", resp.code, resp.body)
		}
	})
}

func visited(b *testenv.Browser, prefix string) bool {
	for _, v := range b.Visited {
		if strings.Contains(v, " "+prefix) {
			return true
		}
	}
	return false
}

// programmaticLogin signs in as portcullis-cli does, in browser: it asks
// the route's login API for the sign-in URL, signs in, and returns the
// token delivered to the loopback redirect.
func programmaticLogin(t *testing.T, ctx context.Context, browser *testenv.Browser, routeURL, authURL, user, password string) string {
	t.Helper()
	const cb = "http://127.0.0.1:1/portcullis-cli"
	resp := get(t, browser.Client, routeURL+"/.pomerium/api/v1/login?pomerium_redirect_uri="+url.QueryEscape(cb), "", "")
	if resp.code != http.StatusOK || !strings.HasPrefix(resp.body, authURL+"/.pomerium/sign_in?") {
		t.Fatalf("login API: got %d %q, want the sign-in URL", resp.code, resp.body)
	}
	final, _, err := browser.SignIn(ctx, resp.body, user, password, cb)
	if err != nil {
		t.Fatal(err)
	}
	tok := final.Query().Get("pomerium_jwt")
	if tok == "" {
		t.Fatalf("redirected to %s, want pomerium_jwt", redactQuery(final))
	}
	return tok
}

// get requests url with an Accept header and an Authorization header.
func get(t *testing.T, client *http.Client, url, accept, authorization string) response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(b)}
}

// whoamiWith asks the apiserver, through the route, who the request is.
func whoamiWith(t *testing.T, client *http.Client, routeURL, authorization string) string {
	t.Helper()
	h := http.Header{}
	if authorization != "" {
		h.Set("Authorization", authorization)
	}
	got := selfSubjectReview(t, client, routeURL, h)
	user, code := got.user, got.code
	if code != http.StatusCreated {
		t.Errorf("selfsubjectreview: status %d", code)
	}
	return user
}
