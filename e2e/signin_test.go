package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
	cluster := testenv.NewCluster(t)
	for _, f := range []string{"../deploy/kubernetes/service-account.yaml", "../deploy/kubernetes/user-binding.yaml"} {
		if _, _, err := cluster.Kubectl(ctx, nil, "apply", "-f", f); err != nil {
			t.Fatal(err)
		}
	}
	saToken, err := cluster.CreateToken(ctx, "default", "portcullis", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	routeURL := fmt.Sprintf("https://127.0.0.1:%d", port)
	authURL := fmt.Sprintf("https://localhost:%d", port)
	idp := testenv.NewOIDCProvider(t, []string{authURL + "/oauth2/callback"}, []testenv.OIDCUser{
		{Email: "someuser@example.com", Password: "correct horse battery", FirstName: "Some", LastName: "User"},
	})

	ca, err := testenv.NewCA("portcullis-e2e")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("portcullis", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf("- from: %s\n  to: %s\n  tls_custom_ca: %s\n  policy:\n    - allow:\n        or:\n          - email:\n              is: someuser@example.com\n  kubernetes_service_account_token: %q\n",
		routeURL, cluster.URL, b64(cluster.CA.CertPEM), saToken)
	env := []string{
		"ADDRESS=127.0.0.1:" + strconv.Itoa(port),
		"AUTHENTICATE_SERVICE_URL=" + authURL,
		"CERTIFICATE=" + b64(cert),
		"CERTIFICATE_KEY=" + b64(key),
		"COOKIE_SECRET=" + b64(random(32)),
		"SHARED_SECRET=" + b64(random(32)),
		"IDP_PROVIDER=oidc",
		"IDP_PROVIDER_URL=" + idp.Issuer,
		"IDP_CLIENT_ID=" + idp.ClientID,
		"IDP_CLIENT_SECRET=" + idp.ClientSecret,
		"POLICY=" + b64([]byte(policy)),
		"LOG_LEVEL=debug",
	}
	dir := t.TempDir()
	bin, err := testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/cmd/portcullis", dir)
	if err != nil {
		t.Fatal(err)
	}
	testenv.StartServer(t, "portcullis", bin, dir, nil, env, routeURL+"/healthz", ca.ClientTLS())

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS()}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	browser := testenv.NewBrowser(ca.ClientTLS())
	t.Run("a browser is sent to sign in and comes back signed in", func(t *testing.T) {
		final, page, err := browser.SignIn(ctx, routeURL+"/.pomerium/", "someuser@example.com", "correct horse battery", "")
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

	t.Run("the session cookie reaches the apiserver as the person", func(t *testing.T) {
		user := whoamiWith(t, browser.Client, routeURL, "")
		if user != "someuser@example.com" {
			t.Errorf("apiserver saw %q, want someuser@example.com", user)
		}
	})

	var cliToken string
	t.Run("programmatic login delivers a token to a loopback listener", func(t *testing.T) {
		const cb = "http://127.0.0.1:1/portcullis-cli"
		resp := get(t, browser.Client, routeURL+"/.pomerium/api/v1/login?pomerium_redirect_uri="+url.QueryEscape(cb), "", "")
		if resp.code != http.StatusOK || !strings.HasPrefix(resp.body, authURL+"/.pomerium/sign_in?") {
			t.Fatalf("login API: got %d %q, want the sign-in URL", resp.code, resp.body)
		}
		// A fresh browser, as when the CLI opens the system browser.
		final, _, err := testenv.NewBrowser(ca.ClientTLS()).SignIn(ctx, resp.body, "someuser@example.com", "correct horse battery", cb)
		if err != nil {
			t.Fatal(err)
		}
		cliToken = final.Query().Get("pomerium_jwt")
		if cliToken == "" {
			t.Fatalf("redirected to %s, want pomerium_jwt", final)
		}
		if user := whoamiWith(t, client, routeURL, "Bearer Pomerium-"+cliToken); user != "someuser@example.com" {
			t.Errorf("with the token the apiserver saw %q, want someuser@example.com", user)
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
		resp := get(t, browser.Client, routeURL+"/.pomerium/sign_out", "application/json", "Bearer Pomerium-"+cliToken)
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
		if _, _, err := before.SignIn(ctx, routeURL+"/.pomerium/", "someuser@example.com", "correct horse battery", ""); err != nil {
			t.Fatal(err)
		}
		// A sign-in that reaches the provider and comes back after it went down.
		during := testenv.NewBrowser(ca.ClientTLS())
		callback, _, err := during.SignIn(ctx, routeURL+"/.pomerium/", "someuser@example.com", "correct horse battery", authURL+"/oauth2/callback")
		if err != nil {
			t.Fatal(err)
		}
		idp.Close()
		resp := get(t, during.Client, callback.String(), "text/html", "")
		if resp.code != http.StatusBadGateway || !strings.Contains(resp.body, "could not reach your identity provider") || strings.Contains(resp.body, "goroutine") {
			t.Errorf("callback with the provider down: got %d %q, want 502 with a page saying the provider could not be reached", resp.code, resp.body)
		}
		if user := whoamiWith(t, before.Client, routeURL, ""); user != "someuser@example.com" {
			t.Errorf("an existing session during the outage: apiserver saw %q, want someuser@example.com", user)
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
	user, _, _, code := selfSubjectReview(t, client, routeURL, h)
	if code != http.StatusCreated {
		t.Errorf("selfsubjectreview: status %d", code)
	}
	return user
}
