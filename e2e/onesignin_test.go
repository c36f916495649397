package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestOneSignInForEveryRoute: two routes of one Portcullis (here to one
// cluster, the second behind an L4 relay on another port), each a
// kubeconfig context; the first kubectl command signs in through the
// browser, and the first on the second route uses that session: no
// second browser. `k8s setup --all` then finds and adds both routes.
// Real kubectl, portcullis-cli and provider.
func TestOneSignInForEveryRoute(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := startSigninStackWith(t, ctx, signinPolicy, true)
	u := newCLIUser(t, ctx, s.cluster.KubectlPath, s.routeURL, s.ca.CertPEM)
	u.setup()
	if _, errOut, err := u.run("k8s", "setup", s.secondRouteURL, "--name", "second", "--kubeconfig", u.kubeconfig, "--ca-cert", u.caFile, "--browser-cmd", u.self); err != nil {
		t.Fatalf("portcullis-cli k8s setup for the second route: %v\n%s", err, errOut)
	}
	u.firstSignIn(ctx)
	out, errOut, err := u.kubectl(ctx, "--context", "second", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	if err != nil || out != signinEmail {
		t.Fatalf("second route: got %q, %v\n%s", out, err, errOut)
	}
	if n := u.browserRuns(); n != 1 {
		t.Errorf("the second route opened the browser: %d sign-ins, want 1", n)
	}
	if !strings.Contains(errOut, "with your session at "+s.routeURL) {
		t.Errorf("kubectl stderr does not say which session signed the second route in:\n%s", errOut)
	}
	// Each route has its own token and renewal chain now, and both go on.
	tok1, rn1 := u.cached(s.routeURL)
	tok2, rn2 := u.cached(s.secondRouteURL)
	if tok1 == tok2 || rn1 == rn2 || rn1 == "" || rn2 == "" {
		t.Errorf("the two routes share a token or a renewal credential, want each its own")
	}
	for _, ctxName := range []string{"e2e", "second"} {
		if out, errOut, err := u.kubectl(ctx, "--context", ctxName, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != signinEmail {
			t.Errorf("%s again: got %q, %v\n%s", ctxName, out, err, errOut)
		}
	}
	if n := u.browserRuns(); n != 1 {
		t.Errorf("after both routes again: %d sign-ins, want 1", n)
	}

	// setup --all asks the first route for every route the person may
	// use, and adds each: both routes, and no browser.
	out, errOut, err = u.run("k8s", "setup", s.routeURL, "--all", "--kubeconfig", u.kubeconfig, "--ca-cert", u.caFile, "--browser-cmd", u.self)
	if err != nil {
		t.Fatalf("portcullis-cli k8s setup --all: %v\n%s", err, errOut)
	}
	for _, routeURL := range []string{s.routeURL, s.secondRouteURL} {
		name := "portcullis-" + strings.ReplaceAll(strings.TrimPrefix(routeURL, "https://"), ":", "-")
		if !strings.Contains(out, "Added context "+name+" ("+routeURL+")") {
			t.Errorf("setup --all did not add %s as %s:\n%s", routeURL, name, out)
			continue
		}
		if got, errOut, err := u.kubectl(ctx, "--context", name, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || got != signinEmail {
			t.Errorf("context %s from setup --all: got %q, %v\n%s", name, got, err, errOut)
		}
	}
	if n := u.browserRuns(); n != 1 {
		t.Errorf("after setup --all: %d sign-ins, want 1", n)
	}

	// Signing out on the first route ends the second route's access too:
	// its token, its renewal chain, and the first chain's next exchange.
	t.Run("a sign-out on one route ends every route's credentials", func(t *testing.T) {
		api := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS()}, Timeout: 30 * time.Second}
		defer api.CloseIdleConnections()
		send := func(method, target, auth string, form url.Values) int {
			t.Helper()
			req, _ := http.NewRequestWithContext(ctx, method, target, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", "application/json")
			if auth != "" {
				req.Header.Set("Authorization", "Pomerium "+auth)
			}
			resp, err := api.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		tok1, rn1 := u.cached(s.routeURL)
		tok2, rn2 := u.cached(s.secondRouteURL)
		if code := send("GET", s.secondRouteURL+"/.pomerium/", tok2, nil); code != http.StatusOK {
			t.Fatalf("the second route's token before the sign-out: %d, want 200", code)
		}
		if code := send("POST", s.routeURL+"/.pomerium/sign_out", tok1, nil); code >= 400 {
			t.Fatalf("sign-out: %d", code)
		}
		if code := send("GET", s.secondRouteURL+"/.pomerium/", tok2, nil); code != http.StatusUnauthorized {
			t.Errorf("the second route's token after the sign-out on the first: %d, want 401", code)
		}
		renewal := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rn2}}
		if code := send("POST", s.secondRouteURL+"/.pomerium/api/v1/token", "", renewal); code != http.StatusBadRequest {
			t.Errorf("renewing the second route after the sign-out: %d, want 400 (invalid_grant)", code)
		}
		exchange := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rn1}, "resource": {s.secondRouteURL}}
		if code := send("POST", s.authURL+"/.pomerium/api/v1/token", "", exchange); code != http.StatusBadRequest {
			t.Errorf("exchanging the first route's credential after the sign-out: %d, want 400 (invalid_grant)", code)
		}
	})
}
