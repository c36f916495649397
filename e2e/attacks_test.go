package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The attacks of this file run against one stack (see TestKubernetesSecurity):
// kube-apiserver serving HTTP/1.1 only (--disable-http2-serving, as behind
// an HTTP/1.1 load balancer), a fake node, and Portcullis with the
// built-in provider, where attackerEmail has no rights at all and
// victimEmail is cluster-admin (deploy/kubernetes/user-binding.yaml).
const (
	attackerEmail  = "dev@example.com"
	victimEmail    = "someuser@example.com"
	victimPassword = "the victim's long password"
)

// attackUsers writes the built-in provider's users file.
func attackUsers(t *testing.T) string {
	t.Helper()
	return builtinUsersFile(t, victimEmail, victimPassword, "admins")
}

// testConnectSmuggling: an HTTP/2 CONNECT whose body is a request of its
// own, left open so that the next request on the pooled HTTP/1.1
// connection to the apiserver completes it with Portcullis's credentials.
// It must be refused, and the apiserver must never see anyone
// impersonated but the person who sent each request.
func testConnectSmuggling(t *testing.T, ctx context.Context, s *stack) {
	if err := s.cluster.EnsureNamespace(ctx, "victim"); err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS(), Protocols: &protocols}, Timeout: 30 * time.Second}
	defer h2.CloseIdleConnections()
	tok := s.token(t, attackerEmail)
	host := strings.TrimPrefix(s.routeURL, "https://")
	const smuggled = "DELETE /api/v1/namespaces/victim HTTP/1.1\r\nHost: kubernetes\r\n" +
		"Impersonate-User: system:admin\r\nImpersonate-Group: system:masters\r\nX-Ignore: "
	for range 3 {
		req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "https", Host: host}, Host: host,
			Header: http.Header{"Authorization": {"Bearer Pomerium-" + tok}},
			Body:   io.NopCloser(strings.NewReader(smuggled)), ContentLength: -1}
		resp, err := h2.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatalf("CONNECT: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Proto != "HTTP/2.0" || resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("CONNECT: got %s %d %s, want HTTP/2.0 405", resp.Proto, resp.StatusCode, body)
		}
		// The requests that would complete a smuggled one, on the same
		// pooled upstream connections.
		for range 5 {
			do(t, h2, "GET", s.routeURL+"/api/v1/namespaces/default/configmaps", http.Header{"Authorization": {"Bearer Pomerium-" + tok}}, "")
		}
	}
	if _, _, err := s.cluster.Kubectl(ctx, nil, "get", "namespace", "victim"); err != nil {
		t.Errorf("the namespace the smuggled request deletes: %v", err)
	}
	for _, e := range auditEvents(t, s) {
		if e.ImpersonatedUser.Username == "system:admin" || contains(e.ImpersonatedUser.Groups, "system:masters") {
			t.Errorf("audit: %s %s impersonated %q in %v", e.Verb, e.RequestURI, e.ImpersonatedUser.Username, e.ImpersonatedUser.Groups)
		}
		if strings.HasPrefix(e.User.Username, "system:serviceaccount:default:portcullis") && e.ImpersonatedUser.Username == "" {
			t.Errorf("audit: %s %s reached the apiserver as Portcullis's service account itself", e.Verb, e.RequestURI)
		}
	}
}

// testSystemNames: names Kubernetes reserves for itself are not
// impersonated, whatever the provider calls a person.
func testSystemNames(t *testing.T, s *stack, client *http.Client) {
	for name, tok := range map[string]string{
		"group system:masters": s.token(t, attackerEmail, "dev", "system:masters"),
		"user system:admin":    s.token(t, "system:admin"),
		"a node's name":        s.token(t, "system:node:worker-1", "system:nodes"),
	} {
		t.Run(name, func(t *testing.T) {
			code := selfSubjectReview(t, client, s.routeURL, http.Header{"Authorization": {"Bearer Pomerium-" + tok}}).code
			if code != http.StatusForbidden {
				t.Errorf("got %d, want 403", code)
			}
		})
	}
	for _, e := range auditEvents(t, s) {
		if strings.HasPrefix(e.ImpersonatedUser.Username, "system:") || contains(e.ImpersonatedUser.Groups, "system:masters") {
			t.Errorf("audit: %s %s impersonated %q in %v", e.Verb, e.RequestURI, e.ImpersonatedUser.Username, e.ImpersonatedUser.Groups)
		}
	}
}

// signInWithChromium signs victimEmail in with the real browser on the
// route's who-am-I page, through the built-in provider's form.
func signInWithChromium(t *testing.T, bctx context.Context, routeURL, email, password string) {
	t.Helper()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(routeURL+"/.pomerium/"),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("groups")),
	); err != nil {
		t.Fatalf("signing in with Chromium at %s/.pomerium/: %v", routeURL, err)
	}
}

// fetchResult is what a page's script got from fetch.
type fetchResult struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// testPageOnAPIOrigin: kube-apiserver serves pods' and nodes' pages on the
// API's own origin (the proxy subresources), so a page there runs with
// the person's browser session. Such a page is played here by a script
// run in a page Portcullis serves on that origin (kube-apiserver refuses
// to proxy to the loopback addresses a test's pods have, "address not
// allowed"): nothing it fetches may reach the API as the person.
func testPageOnAPIOrigin(t *testing.T, ctx context.Context, s *stack, bctx context.Context, client *http.Client) {
	const secretValue = "the-crown-jewels"
	if err := s.cluster.ApplyYAML(ctx, `apiVersion: v1
kind: Secret
metadata: {name: top-secret, namespace: kube-system}
stringData: {token: `+secretValue+`}`); err != nil {
		t.Fatal(err)
	}
	paths := []string{
		"/api/v1/namespaces/kube-system/secrets/top-secret",
		"/api/v1/namespaces/kube-system/secrets",
		"/api/v1/namespaces/default/pods/web:8080/proxy/",
	}
	for _, p := range paths {
		js := fmt.Sprintf(`fetch(%s, {credentials: "include"}).then(async r => ({status: r.status, body: await r.text()}))`, jsString(p))
		got, err := chromedp.Run(bctx, chromedp.Evaluate[fetchResult](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("fetch %s in the page: %v", p, err)
		}
		if got.Status != http.StatusUnauthorized || strings.Contains(got.Body, secretValue) || strings.Contains(got.Body, b64([]byte(secretValue))) {
			t.Errorf("a same-origin page's fetch of %s: got %d %q, want 401", p, got.Status, got.Body)
		}
	}
	// Opened as a page, the API says what to do instead.
	if err := chromedp.Do(bctx, chromedp.Navigate(s.routeURL+paths[0])); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(bctx, chromedp.Text("body"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Use kubectl for this cluster") || strings.Contains(text, secretValue) {
		t.Errorf("the secret opened in the browser: got %q, want Portcullis's page saying to use kubectl", text)
	}
	for _, e := range auditEvents(t, s) {
		if strings.Contains(e.RequestURI, "/secrets") && e.ImpersonatedUser.Username == victimEmail {
			t.Errorf("audit: the browser's session reached the apiserver: %s %s", e.Verb, e.RequestURI)
		}
	}
	// Whatever a proxy subresource answers is sandboxed: here the
	// apiserver's own refusal, asked with a token.
	req, _ := http.NewRequestWithContext(ctx, "GET", s.routeURL+paths[2], nil)
	req.Header.Set("Authorization", "Bearer Pomerium-"+s.token(t, victimEmail, "admins"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Values("Content-Security-Policy"); !contains(csp, "sandbox") {
		t.Errorf("a proxy subresource's answer (%d): Content-Security-Policy %q, want sandbox", resp.StatusCode, csp)
	}
}

// attackerSite serves page at https://127.0.0.1:PORT/ with Portcullis's own
// certificate (which Chromium trusts): a sibling of the route's origin,
// the same site (cookies do not tell ports apart), another origin.
func attackerSite(t *testing.T, s *stack, page string) string {
	t.Helper()
	cert, err := tls.X509KeyPair(s.certPEM, s.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().(*net.TCPAddr).String() + "/"
}

// waitTitle waits for the page's title to be set by its script.
func waitTitle(t *testing.T, bctx context.Context) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		title, err := chromedp.Run(bctx, chromedp.Title())
		if err != nil {
			t.Fatal(err)
		}
		if title != "" && title != "waiting" {
			return title
		}
		if time.Now().After(deadline) {
			t.Fatal("the attacker's page never finished")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testCrossSiteExec: a page of another origin opens a WebSocket to exec in
// a pod; the browser sends the person's cookie with it. It must not open.
func testCrossSiteExec(t *testing.T, ctx context.Context, s *stack, bctx context.Context) {
	if err := s.cluster.RunFakePod(ctx, s.fake, "default", "web"); err != nil {
		t.Fatal(err)
	}
	wsURL := "wss://" + strings.TrimPrefix(s.routeURL, "https://") +
		"/api/v1/namespaces/default/pods/web/exec?command=touch&command=pwned&stdout=true&stderr=true"
	site := attackerSite(t, s, `<!doctype html><title>waiting</title><script>
const ws = new WebSocket(`+jsString(wsURL)+`, ["v5.channel.k8s.io", "v4.channel.k8s.io"]);
ws.onopen = () => { document.title = "opened"; };
ws.onclose = (e) => { if (document.title !== "opened") document.title = "closed " + e.code; };
</script>`)
	if err := chromedp.Do(bctx, chromedp.Navigate(site)); err != nil {
		t.Fatal(err)
	}
	if title := waitTitle(t, bctx); title == "opened" {
		t.Errorf("the cross-site WebSocket to exec opened")
	}
	if _, err := os.Stat(filepath.Join(s.fake.WorkDir, "pwned")); err == nil {
		t.Errorf("the command ran in the pod")
	}
	for _, e := range auditEvents(t, s) {
		if strings.Contains(e.RequestURI, "/exec") {
			t.Errorf("audit: exec reached the apiserver: %s %s as %q", e.Verb, e.RequestURI, e.ImpersonatedUser.Username)
		}
	}
}

// testCrossSiteSignOut: a page of another origin cannot end the person's
// session, with a link or with a form.
func testCrossSiteSignOut(t *testing.T, s *stack, bctx context.Context) {
	signOut := s.routeURL + "/.pomerium/sign_out"
	// The img's handler is its attribute, and the form comes first: a
	// handler set by a later script can miss an error that arrives while
	// the parser is still creating the iframe.
	site := attackerSite(t, s, `<!doctype html><title>waiting</title>
<iframe name="sink"></iframe>
<form id="f" method="post" action="`+signOut+`" target="sink"></form>
<img src="`+signOut+`" onerror="document.getElementById('f').submit(); setTimeout(() => { document.title = 'done'; }, 2000);">`)
	if err := chromedp.Do(bctx, chromedp.Navigate(site)); err != nil {
		t.Fatal(err)
	}
	waitTitle(t, bctx)
	if err := chromedp.Do(bctx, chromedp.Navigate(s.routeURL+"/.pomerium/")); err != nil {
		t.Fatal(err)
	}
	who, err := chromedp.Run(bctx, chromedp.Text("body"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(who, victimEmail) {
		t.Errorf("after the attacker's page the who-am-I page shows %q, want the person still signed in", who)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
