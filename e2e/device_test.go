package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestDeviceSignIn is a person on a machine without a browser (over SSH):
// kubectl runs portcullis-cli, which prints an address and a code; the
// person opens the address in a browser elsewhere (testenv's), signs in
// with their identity provider — Portcullis's built-in one, and a
// third-party OpenID provider — sees which client asked, approves, and
// kubectl goes on as them.
func TestDeviceSignIn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	t.Run("built-in provider, --device", func(t *testing.T) {
		st := startBuiltinStack(t, ctx, builtinUsersFile(t, signinEmail, signinPassword, "dev"))
		u := newCLIUser(t, ctx, st.cluster.KubectlPath, st.routeURL, st.ca.CertPEM)
		if _, errOut, err := u.run("k8s", "setup", st.routeURL, "--name", "e2e", "--kubeconfig", u.kubeconfig, "--ca-cert", u.caFile, "--device"); err != nil {
			t.Fatalf("setup: %v\n%s", err, errOut)
		}
		deviceWhoAmI(t, ctx, u, st.routeURL, st.ca.ClientTLS, nil)
	})

	t.Run("third-party OpenID provider, chosen by itself over SSH", func(t *testing.T) {
		// Codes that expire soon enough for the test to see one expire.
		s := startSigninStack(t, ctx, "DEVICE_CODE_LIFETIME="+deviceCodeLifetime.String())
		u := newCLIUser(t, ctx, s.cluster.KubectlPath, s.routeURL, s.ca.CertPEM)
		u.setupPlain(t, s.routeURL)
		deviceWhoAmI(t, ctx, u, s.routeURL, s.ca.ClientTLS, []string{"SSH_CONNECTION=192.0.2.1 50000 192.0.2.2 22", "DISPLAY=", "WAYLAND_DISPLAY="})
		devicePlainHTTP(t, ctx, s)
	})
}

// setupPlain runs `k8s setup` without naming a browser or --device: the
// plugin chooses by itself each time kubectl runs it.
func (u *cliUser) setupPlain(t *testing.T, routeURL string) {
	t.Helper()
	if _, errOut, err := u.run("k8s", "setup", routeURL, "--name", "e2e", "--kubeconfig", u.kubeconfig, "--ca-cert", u.caFile); err != nil {
		t.Fatalf("setup: %v\n%s", err, errOut)
	}
}

// devicePrompt is what portcullis-cli printed for the person.
type devicePrompt struct {
	verify, code, complete string
}

var (
	promptVerify   = regexp.MustCompile(`open this address in a browser on any device:\n\n    (\S+)\n\nand enter the code\n\n    ([A-Z]{4}-[A-Z]{4})\n`)
	promptComplete = regexp.MustCompile(`\nOr open (\S+)\n`)
)

// deviceWhoAmI runs `kubectl auth whoami` as u with env, reads the device
// prompt off kubectl's stderr, approves it in a browser, and checks that
// kubectl then shows the person.
func deviceWhoAmI(t *testing.T, ctx context.Context, u *cliUser, routeURL string, clientTLS func() *tls.Config, env []string) {
	t.Helper()
	cmd := u.kubectlCmd(ctx, env, "--context", "e2e", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	prompt, all := readPrompt(t, stderr)
	if !strings.HasPrefix(prompt.verify, routeURL+"/.pomerium/device") || prompt.complete != prompt.verify+"?user_code="+prompt.code {
		t.Errorf("prompt: %+v, want the route's device page", prompt)
	}
	if u.browserRuns() != 0 {
		t.Errorf("a browser was opened on the machine without one")
	}

	b := testenv.NewBrowser(clientTLS())
	page := openConfirmation(t, ctx, b, prompt.complete)
	// The page says who asked: this machine's address, portcullis-cli.
	for _, want := range []string{`<dd id="client">127.0.0.1</dd>`, `<dd id="user-agent">portcullis-cli/`, `<dd id="route">` + routeURL + `</dd>`,
		`<b id="email">` + signinEmail + `</b>`, `<code id="code">` + prompt.code + `</code>`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the confirmation page lacks %q:\n%s", want, page.body)
		}
	}
	if res := page.submit(t, b, "approve", nil); res.code != http.StatusOK || !strings.Contains(res.body, "Approved") {
		t.Fatalf("approve: got %d %s", res.code, res.body)
	}
	err = cmd.Wait()
	if got := strings.TrimSpace(stdout.String()); err != nil || got != signinEmail {
		t.Fatalf("kubectl auth whoami: %v, got %q, want %s\nkubectl stderr:\n%s", err, got, signinEmail, all())
	}
	// The credential is cached: the next command asks nothing.
	if user, errOut := u.whoami(ctx); user != signinEmail || strings.Contains(errOut, "enter the code") {
		t.Errorf("the next command: got %q\n%s", user, errOut)
	}
}

// readPrompt reads kubectl's stderr until portcullis-cli's prompt is in
// it, and goes on collecting the rest (all returns everything so far).
func readPrompt(t *testing.T, r io.Reader) (devicePrompt, func() string) {
	t.Helper()
	var (
		mu  sync.Mutex
		buf strings.Builder
	)
	found := make(chan devicePrompt, 1)
	go func() {
		sc := bufio.NewScanner(r)
		sent := false
		for sc.Scan() {
			mu.Lock()
			buf.WriteString(sc.Text() + "\n")
			text := buf.String()
			mu.Unlock()
			if m, c := promptVerify.FindStringSubmatch(text), promptComplete.FindStringSubmatch(text); !sent && m != nil && c != nil {
				found <- devicePrompt{verify: m[1], code: m[2], complete: c[1]}
				sent = true
			}
		}
	}()
	all := func() string {
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
	select {
	case p := <-found:
		return p, all
	case <-time.After(2 * time.Minute):
		t.Fatalf("portcullis-cli printed no device prompt; kubectl stderr:\n%s", all())
	}
	return devicePrompt{}, all
}

// confirmationPage is the device page a signed-in browser sees, with its
// form.
type confirmationPage struct {
	url  *url.URL
	body string
	form url.Values
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// openConfirmation opens a verification address in the browser b,
// signing in as signinEmail on the way if the browser is not yet.
func openConfirmation(t *testing.T, ctx context.Context, b *testenv.Browser, address string) confirmationPage {
	t.Helper()
	final, body, err := b.SignIn(ctx, address, signinEmail, signinPassword, "")
	if err != nil || final.Path != "/.pomerium/device" {
		t.Fatalf("opening %s: ended at %v, %v\nvisited:\n  %s", address, final, err, strings.Join(b.Visited, "\n  "))
	}
	p := confirmationPage{url: final, body: body, form: url.Values{}}
	for _, m := range hiddenInput.FindAllStringSubmatch(body, -1) {
		p.form.Set(m[1], html.UnescapeString(m[2]))
	}
	return p
}

// submit sends the page's form with decision from the browser b, as a
// browser sends a form from the page's origin, unless header says
// otherwise.
func (p confirmationPage) submit(t *testing.T, b *testenv.Browser, decision string, header http.Header) response {
	t.Helper()
	form := url.Values{}
	for k, v := range p.form {
		form[k] = v
	}
	form.Set("decision", decision)
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Accept": {"text/html"},
		"Origin": {p.url.Scheme + "://" + p.url.Host}, "Sec-Fetch-Site": {"same-origin"}}
	for k, v := range header {
		h[k] = v
	}
	return do(t, b.Client, http.MethodPost, p.url.Scheme+"://"+p.url.Host+"/.pomerium/device", h, form.Encode())
}

// deviceCodeLifetime is the DEVICE_CODE_LIFETIME of devicePlainHTTP's
// stack.
const deviceCodeLifetime = 40 * time.Second

// devicePlainHTTP drives the device endpoints with plain HTTP, as an
// attacker would: codes that are not theirs, a code used twice, a code
// past its life, and a cross-site page that tries to approve.
func devicePlainHTTP(t *testing.T, ctx context.Context, s *signinStack) {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS()}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	start := func() deviceAuthorization {
		t.Helper()
		res := do(t, client, http.MethodPost, s.routeURL+"/.pomerium/api/v1/device/authorize",
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "User-Agent": {"attacker-tool/6.6"}}, "client_id=x")
		var d deviceAuthorization
		if err := json.Unmarshal([]byte(res.body), &d); err != nil || res.code != http.StatusOK {
			t.Fatalf("device authorization: %d %s", res.code, res.body)
		}
		return d
	}
	poll := func(code string) (int, string, string) {
		t.Helper()
		return pollDevice(t, client, s.routeURL, code)
	}

	// Left to expire while the rest runs.
	expiring, expiringStarted := start(), time.Now()
	mine, theirs := start(), start()
	b := testenv.NewBrowser(s.ca.ClientTLS())
	page := openConfirmation(t, ctx, b, mine.VerificationURIComplete)

	t.Run("a cross-site page cannot approve a code", func(t *testing.T) {
		for _, h := range []http.Header{
			{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}},
			{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {""}},
		} {
			if res := page.submit(t, b, "approve", h); res.code != http.StatusForbidden {
				t.Errorf("%v: got %d %s, want 403", h, res.code, res.body)
			}
		}
		// Nor a same-origin form without the page's token (another code's page).
		other := page
		other.form = url.Values{"user_code": {theirs.UserCode}, "csrf": {page.form.Get("csrf")}}
		if res := other.submit(t, b, "approve", nil); res.code != http.StatusForbidden {
			t.Errorf("another code with this page's token: got %d, want 403", res.code)
		}
		if code, _, e := poll(mine.DeviceCode); code == http.StatusOK || e != "authorization_pending" {
			t.Errorf("after the attempts: got %d %s, want authorization_pending", code, e)
		}
	})
	t.Run("the page shows the requesting client", func(t *testing.T) {
		for _, want := range []string{`<dd id="client">127.0.0.1</dd>`, `<dd id="user-agent">attacker-tool/6.6</dd>`} {
			if !strings.Contains(page.body, want) {
				t.Errorf("the confirmation page lacks %q", want)
			}
		}
	})
	if res := page.submit(t, b, "approve", nil); res.code != http.StatusOK {
		t.Fatalf("approve: got %d %s", res.code, res.body)
	}
	t.Run("only the device code redeems, once", func(t *testing.T) {
		time.Sleep(5 * time.Second) // the interval since the last poll
		if code, _, e := poll(mine.UserCode); code == http.StatusOK || e != "invalid_grant" {
			t.Errorf("the user code as a device code: got %d %s", code, e)
		}
		if code, _, e := poll(theirs.DeviceCode); code == http.StatusOK || e != "authorization_pending" {
			t.Errorf("another request's device code: got %d %s, want still pending", code, e)
		}
		code, tok, _ := poll(mine.DeviceCode)
		if code != http.StatusOK || tok == "" {
			t.Fatalf("the device code: got %d, want the token", code)
		}
		got := selfSubjectReview(t, client, s.routeURL, http.Header{"Authorization": {"Pomerium " + tok}})
		if got.user != signinEmail {
			t.Errorf("the token reached the cluster as %q, want %s", got.user, signinEmail)
		}
		time.Sleep(5 * time.Second)
		if code, tok, e := poll(mine.DeviceCode); code == http.StatusOK || tok != "" || e != "invalid_grant" {
			t.Errorf("the device code again: got %d %s, want invalid_grant", code, e)
		}
	})
	t.Run("an expired code is refused", func(t *testing.T) {
		time.Sleep(time.Until(expiringStarted.Add(deviceCodeLifetime + time.Second)))
		if code, tok, e := poll(expiring.DeviceCode); code == http.StatusOK || tok != "" || e != "expired_token" {
			t.Errorf("polling with an expired device code: got %d %s, want expired_token", code, e)
		}
	})
	t.Run("a decided, expired or unknown code shows no confirmation", func(t *testing.T) {
		for _, code := range []string{mine.UserCode, expiring.UserCode, "BCDF-GHJK"} {
			final, body, err := b.SignIn(ctx, s.routeURL+"/.pomerium/device?user_code="+code, signinEmail, signinPassword, "")
			if err == nil || final == nil || strings.Contains(body, `id="approve"`) {
				t.Errorf("%s: got %v, %v, want a 404 page without a form", code, final, err)
			}
		}
	})
}

// pollDevice polls the route at routeURL once with a device code, and
// returns the status, the token and the OAuth error.
func pollDevice(t *testing.T, client *http.Client, routeURL, deviceCode string) (code int, token, oauthError string) {
	t.Helper()
	res := do(t, client, http.MethodPost, routeURL+"/.pomerium/api/v1/device/token",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}}.Encode())
	var a struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	json.Unmarshal([]byte(res.body), &a)
	return res.code, a.AccessToken, a.Error
}

// deviceAuthorization is a device authorization's answer (RFC 8628 §3.2).
type deviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURIComplete string `json:"verification_uri_complete"`
}

// TestDeviceSignInChromium approves a device sign-in in a real browser,
// and shows that a page of another site cannot: headless Chromium signs
// in on the route's device page, then opens an attacker's page that posts
// the confirmation form to the route by itself, with the page's own token
// even; only the person's click on Approve approves.
func TestDeviceSignInChromium(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st := startBuiltinStack(t, ctx, builtinUsersFile(t, signinEmail, signinPassword, "dev"))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: st.ca.ClientTLS()}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	res := do(t, client, http.MethodPost, st.routeURL+"/.pomerium/api/v1/device/authorize",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "User-Agent": {"portcullis-cli/e2e (linux/amd64)"}}, "")
	var d deviceAuthorization
	if err := json.Unmarshal([]byte(res.body), &d); err != nil || res.code != http.StatusOK {
		t.Fatalf("device authorization: %d %s", res.code, res.body)
	}
	poll := func() string {
		t.Helper()
		_, tok, e := pollDevice(t, client, st.routeURL, d.DeviceCode)
		if tok != "" {
			return "token"
		}
		return e
	}

	tab := testenv.NewChromium(t, st.certPEM)
	bctx, bcancel := context.WithTimeout(tab, 3*time.Minute)
	defer bcancel()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(d.VerificationURIComplete),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("email"), signinEmail),
		chromedp.SendKeys(chromedp.ID("password"), signinPassword),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("approve")),
	); err != nil {
		t.Fatalf("signing in on the device page: %v", err)
	}
	clientAddr, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("client")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(clientAddr) != "127.0.0.1" {
		t.Errorf("the page shows the client at %q, want 127.0.0.1", clientAddr)
	}
	csrf, err := chromedp.Run(bctx, chromedp.Value(chromedp.CSS(`input[name="csrf"]`)))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveArtifact(t, "device-confirmation.png", shot)
	checkNotBlankPNG(t, shot)

	// Another site's page that submits the form by itself, with the real
	// token (as if it had leaked): the browser says where it comes from.
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/.pomerium/device">
<input type="hidden" name="user_code" value="%s"><input type="hidden" name="csrf" value="%s">
<input type="hidden" name="decision" value="approve"></form><script>document.getElementById("f").submit()</script>`,
			html.EscapeString(st.routeURL), html.EscapeString(d.UserCode), html.EscapeString(csrf))
	}))
	defer attacker.Close()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(attacker.URL),
		chromedp.Sleep(2*time.Second),
	); err != nil {
		t.Fatalf("the attacker's page: %v", err)
	}
	body, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body, "Approved") {
		t.Fatalf("a cross-site page approved the sign-in: %s", body)
	}
	if got := poll(); got != "authorization_pending" {
		t.Fatalf("after the attacker's page: got %s, want authorization_pending", got)
	}

	// The person's own click.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(d.VerificationURIComplete),
		chromedp.WaitVisible(chromedp.ID("approve")),
		chromedp.Click(chromedp.ID("approve")),
		chromedp.Sleep(time.Second),
	); err != nil {
		t.Fatalf("approving: %v", err)
	}
	if body, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS("h1"))); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(body) != "Approved" {
		t.Errorf("after Approve: got heading %q", body)
	}
	time.Sleep(5 * time.Second) // the interval since the last poll
	if got := poll(); got != "token" {
		t.Errorf("after approving: got %s, want the token", got)
	}
}
