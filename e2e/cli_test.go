package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestCLI is a person's first day with portcullis-cli: `k8s setup` writes
// the kubeconfig, and from then on real kubectl runs the real
// portcullis-cli as its exec plugin, which signs in through a real
// OpenID provider in a "browser" (the test binary, see TestMain), caches
// the credential, shares one sign-in between kubectl commands started
// together, and signs in again when the cache is flushed or the session
// is signed out on the server.
func TestCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s := startSigninStack(t, ctx)
	u := newCLIUser(t, ctx, s.cluster.KubectlPath, s.routeURL, s.ca.CertPEM)
	cli, self, caFile := u.cli, u.self, u.caFile

	t.Run("setup writes a kubeconfig kubectl accepts", func(t *testing.T) {
		out, errOut, err := u.run("k8s", "setup", s.routeURL, "--name", "e2e", "--kubeconfig", u.kubeconfig, "--ca-cert", caFile, "--browser-cmd", self)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		want := "Added context e2e in " + u.kubeconfig + "\nTry it:\n\n    kubectl --kubeconfig " + u.kubeconfig + " --context e2e get ns\n"
		if out != want {
			t.Errorf("setup printed:\n%s\nwant:\n%s", out, want)
		}
		cfg, err := clientcmd.LoadFromFile(u.kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		exe := cfg.AuthInfos["e2e"].Exec
		if exe == nil || exe.Command != cli || exe.APIVersion != "client.authentication.k8s.io/v1" || exe.InteractiveMode != "IfAvailable" {
			t.Errorf("exec stanza: got %+v", exe)
		}
		if out, _, err := u.run("k8s", "setup", s.routeURL, "--name", "e2e", "--kubeconfig", u.kubeconfig, "--ca-cert", caFile, "--browser-cmd", self); err != nil || !strings.HasPrefix(out, "Already set up") {
			t.Errorf("setup again: %v, %q, want no change", err, out)
		}
		// kubectl's own view of it.
		if out, errOut, err := u.kubectl(ctx, "config", "view", "--minify", "--context", "e2e", "-o", "jsonpath={.users[0].user.exec.args}"); err != nil || !strings.Contains(out, "exec-credential") {
			t.Errorf("kubectl config view: %v, %q, %s", err, out, errOut)
		}
	})

	t.Run("the first kubectl command signs in through the browser", func(t *testing.T) {
		user, errOut := u.whoami(ctx)
		if user != signinEmail {
			t.Fatalf("auth whoami: got %q, want %s\nkubectl stderr:\n%s", user, signinEmail, errOut)
		}
		if got := u.browserRuns(); got != 1 {
			t.Errorf("browser runs: got %d, want 1", got)
		}
		// portcullis-cli's messages reach the person through kubectl.
		for _, want := range []string{"Signing in to " + s.routeURL + ": opening your browser at", s.authURL + "/.pomerium/sign_in?", "Signed in to " + s.routeURL + " as " + signinEmail} {
			if !strings.Contains(errOut, want) {
				t.Errorf("kubectl stderr lacks %q:\n%s", want, errOut)
			}
		}
		sum := sha256.Sum256([]byte(s.routeURL))
		cacheDir := filepath.Join(u.cacheHome, "portcullis-cli", "exec-credential")
		for path, want := range map[string]os.FileMode{cacheDir: 0o700, filepath.Join(cacheDir, hex.EncodeToString(sum[:])+".json"): 0o600} {
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: got %v, %v, want mode %v", path, fi, err, want)
			}
		}
	})

	t.Run("the next command uses the cached credential", func(t *testing.T) {
		for range 2 {
			if user, errOut := u.whoami(ctx); user != signinEmail {
				t.Fatalf("auth whoami: got %q\n%s", user, errOut)
			}
		}
		if out, errOut, err := u.kubectl(ctx, "--context", "e2e", "get", "ns", "default", "-o", "name"); err != nil || strings.TrimSpace(out) != "namespace/default" {
			t.Errorf("get ns: %v, %q, %s", err, out, errOut)
		}
		// As kubectl would call it, asking for v1beta1: the cached token,
		// with its own expiry.
		out, errOut, err := u.runEnv([]string{`KUBERNETES_EXEC_INFO={"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}`},
			"k8s", "exec-credential", s.routeURL, "--ca-cert", caFile, "--browser-cmd", self)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		var cred struct {
			APIVersion string
			Status     struct {
				Token               string
				ExpirationTimestamp time.Time
			}
		}
		if err := json.Unmarshal([]byte(out), &cred); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, out)
		}
		if cred.APIVersion != "client.authentication.k8s.io/v1beta1" || cred.Status.Token != "Pomerium-"+u.cachedToken(s.routeURL) {
			t.Errorf("got apiVersion %q and another token, want v1beta1 and the cached token", cred.APIVersion)
		}
		// A renewable token: ACCESS_TOKEN_LIFETIME (5m), renewed with
		// more than half of it left.
		if left := time.Until(cred.Status.ExpirationTimestamp); left < 2*time.Minute || left > 5*time.Minute+5*time.Second {
			t.Errorf("expirationTimestamp %v: want the short-lived token's, 2 to 5 minutes away", cred.Status.ExpirationTimestamp)
		}
		if got := u.browserRuns(); got != 1 {
			t.Errorf("browser runs: got %d, want still 1", got)
		}
	})

	t.Run("flush-credentials makes the next command sign in", func(t *testing.T) {
		if _, errOut, err := u.run("k8s", "flush-credentials", s.routeURL); err != nil || !strings.Contains(errOut, "Removed the cached credential for "+s.routeURL) {
			t.Fatalf("flush-credentials: %v, %q", err, errOut)
		}
		if user, errOut := u.whoami(ctx); user != signinEmail {
			t.Fatalf("auth whoami: got %q\n%s", user, errOut)
		}
		if got := u.browserRuns(); got != 2 {
			t.Errorf("browser runs: got %d, want 2", got)
		}
	})

	t.Run("ten kubectl commands at once open one browser", func(t *testing.T) {
		if _, errOut, err := u.run("k8s", "flush-credentials"); err != nil || !strings.Contains(errOut, "Removed 1 cached credential(s)") {
			t.Fatalf("flush-credentials: %v, %q", err, errOut)
		}
		var wg sync.WaitGroup
		users, errOuts := make([]string, 10), make([]string, 10)
		for i := range users {
			wg.Go(func() { users[i], errOuts[i] = u.whoami(ctx) })
		}
		wg.Wait()
		waited := 0
		for i, user := range users {
			if user != signinEmail {
				t.Errorf("command %d: got %q\n%s", i, user, errOuts[i])
			}
			if strings.Contains(errOuts[i], "Another portcullis-cli is signing in") {
				waited++
			}
		}
		if got := u.browserRuns(); got != 3 {
			t.Errorf("browser runs: got %d, want 3 (one for the ten)", got)
		}
		if waited == 0 {
			t.Errorf("no command said it waited for the one signing in")
		}
	})

	t.Run("after sign-out the next command signs in again", func(t *testing.T) {
		tok := u.cachedToken(s.routeURL)
		client := &http.Client{
			Transport:     &http.Transport{TLSClientConfig: s.ca.ClientTLS()},
			Timeout:       30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		defer client.CloseIdleConnections()
		if resp := do(t, client, "POST", s.routeURL+"/.pomerium/sign_out", http.Header{"Authorization": {"Bearer Pomerium-" + tok}}, ""); resp.code >= 400 {
			t.Fatalf("sign-out: got %d %q", resp.code, resp.body)
		}
		if resp := get(t, client, s.routeURL+"/.pomerium/", "application/json", "Bearer Pomerium-"+tok); resp.code != http.StatusUnauthorized {
			t.Fatalf("the signed-out token: got %d, want 401", resp.code)
		}
		// The cached token is handed to kubectl without asking the
		// server; kubectl gets 401 and runs portcullis-cli again, which
		// then asks, and signs in. That kubectl command may fail (kubectl
		// does not resend a request after a 401); the next one works.
		_, errOut := u.whoami(ctx)
		if !strings.Contains(errOut, "Your session at "+s.routeURL+" has ended") {
			t.Errorf("kubectl stderr does not say why it signs in again:\n%s", errOut)
		}
		if got := u.browserRuns(); got != 4 {
			t.Errorf("browser runs after the first command: got %d, want 4", got)
		}
		if user, errOut := u.whoami(ctx); user != signinEmail || u.browserRuns() != 4 {
			t.Fatalf("auth whoami after signing in again: got %q after %d sign-ins\n%s", user, u.browserRuns(), errOut)
		}
		if u.cachedToken(s.routeURL) == tok {
			t.Errorf("the signed-out token is still cached")
		}
	})

	t.Run("login prints a token for scripts", func(t *testing.T) {
		out, errOut, err := u.run("login", s.routeURL, "--ca-cert", caFile, "--browser-cmd", self)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		tok := strings.TrimSuffix(out, "\n")
		if strings.ContainsAny(tok, "\n ") || strings.Count(tok, ".") != 2 {
			t.Fatalf("stdout: got %q, want one JWT", out)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS()}, Timeout: 30 * time.Second}
		defer client.CloseIdleConnections()
		var who struct{ Email string }
		resp := get(t, client, s.routeURL+"/.pomerium/", "application/json", "Bearer Pomerium-"+tok)
		if json.Unmarshal([]byte(resp.body), &who); resp.code != http.StatusOK || who.Email != signinEmail {
			t.Errorf("the printed token: got %d %q, want the person", resp.code, resp.body)
		}
		if got := u.browserRuns(); got != 5 {
			t.Errorf("browser runs: got %d, want 5", got)
		}
	})

	t.Run("errors a person can act on", func(t *testing.T) {
		// No --ca-cert: the route's certificate is from an unknown CA.
		_, errOut, err := u.run("k8s", "exec-credential", s.routeURL, "--browser-cmd", self)
		if exitCode(err) != 1 || !strings.Contains(errOut, "signed by an unknown authority; pass the CA certificate with --ca-cert FILE") {
			t.Errorf("unknown CA: exit %d, stderr %q, want 1 and advice naming --ca-cert", exitCode(err), errOut)
		}
		// A browser command that fails: kubectl fails and shows why.
		if _, _, err := u.run("k8s", "setup", s.routeURL, "--name", "broken", "--kubeconfig", u.kubeconfig, "--ca-cert", caFile, "--browser-cmd", "false"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := u.run("k8s", "flush-credentials"); err != nil {
			t.Fatal(err)
		}
		out, errOut, err := u.kubectl(ctx, "--context", "broken", "auth", "whoami")
		if err == nil || out != "" || !strings.Contains(errOut, "opening the browser: false failed: exit status 1; fix --browser-cmd") {
			t.Errorf("failing browser: %v, stdout %q, stderr:\n%s\nwant kubectl to fail showing the plugin's reason", err, out, errOut)
		}
		if got := u.browserRuns(); got != 5 {
			t.Errorf("browser runs: got %d, want still 5", got)
		}
	})
}

// cliUser runs portcullis-cli and kubectl as the person: with their own
// home, cache and kubeconfig, and the browser stand-in.
type cliUser struct {
	t           *testing.T
	cli         string // portcullis-cli, also on the PATH of env
	self        string // the test binary, the browser stand-in (--browser-cmd)
	caFile      string // the CA that signed Portcullis's certificate (--ca-cert)
	kubectlPath string
	routeURL    string // the route it signs in to
	kubeconfig  string
	runs        string
	cacheHome   string
	env         []string
}

// newCLIUser builds portcullis-cli and sets up a person who signs in to
// routeURL, whose certificate caPEM signed, as signinEmail with the
// browser stand-in. Nothing of the machine's home, cache or kubeconfig is
// read or written, and the environment of the test process is left alone
// (its Go build cache and testenv's binaries live under the real one).
func newCLIUser(t *testing.T, ctx context.Context, kubectlPath, routeURL string, caPEM []byte) *cliUser {
	t.Helper()
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cli, err := testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/cmd/portcullis-cli", binDir)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	u := &cliUser{
		t: t, cli: cli, self: self, caFile: filepath.Join(dir, "portcullis-ca.pem"),
		kubectlPath: kubectlPath, routeURL: routeURL,
		kubeconfig: filepath.Join(dir, "kubeconfig"),
		runs:       filepath.Join(dir, "browser-runs"),
		cacheHome:  filepath.Join(dir, "cache"),
	}
	writeFile(t, u.caFile, string(caPEM))
	u.env = append(os.Environ(),
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+filepath.Join(dir, "home"),
		"XDG_CACHE_HOME="+u.cacheHome,
		"KUBECONFIG=",
		"BROWSER=",
		browserEnv+"=1",
		browserCAEnv+"="+u.caFile,
		browserUserEnv+"="+signinEmail,
		browserPasswordEnv+"="+signinPassword,
		browserRunsEnv+"="+u.runs,
	)
	return u
}

// setup runs `portcullis-cli k8s setup` for the route, with the context
// name "e2e".
func (u *cliUser) setup() {
	u.t.Helper()
	if _, errOut, err := u.run("k8s", "setup", u.routeURL, "--name", "e2e", "--kubeconfig", u.kubeconfig, "--ca-cert", u.caFile, "--browser-cmd", u.self); err != nil {
		u.t.Fatalf("portcullis-cli k8s setup: %v\n%s", err, errOut)
	}
}

func (u *cliUser) run(args ...string) (stdout, stderr string, err error) {
	return u.runEnv(nil, args...)
}

// runEnv runs portcullis-cli with extra environment variables.
func (u *cliUser) runEnv(env []string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, u.cli, args...)
	cmd.Env = append(u.env[:len(u.env):len(u.env)], env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func (u *cliUser) kubectl(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := u.kubectlCmd(ctx, nil, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// kubectlCmd is kubectl as the person, with extra environment variables,
// for the caller to run.
func (u *cliUser) kubectlCmd(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, u.kubectlPath, append([]string{"--kubeconfig", u.kubeconfig}, args...)...)
	cmd.Env = append(u.env[:len(u.env):len(u.env)], env...)
	return cmd
}

// whoami runs `kubectl auth whoami` in the e2e context and returns the
// user the apiserver saw ("" on failure) and kubectl's stderr.
// firstSignIn runs kubectl for the first time: it must sign in through
// the browser once, as signinEmail.
func (u *cliUser) firstSignIn(ctx context.Context) {
	u.t.Helper()
	if user, errOut := u.whoami(ctx); user != signinEmail || u.browserRuns() != 1 {
		u.t.Fatalf("first whoami: got %q after %d sign-ins\n%s", user, u.browserRuns(), errOut)
	}
}

func (u *cliUser) whoami(ctx context.Context) (user, stderr string) {
	out, errOut, err := u.kubectl(ctx, "--context", "e2e", "auth", "whoami", "-o", "json")
	if err != nil {
		return "", errOut + "\n" + err.Error()
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &review); err != nil {
		return "", errOut + "\nnot JSON: " + out
	}
	return review.Status.UserInfo.Username, errOut
}

// browserRuns counts the runs of the browser stand-in.
func (u *cliUser) browserRuns() int {
	b, err := os.ReadFile(u.runs)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		u.t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// cachedToken reads the token portcullis-cli cached for routeURL.
func (u *cliUser) cachedToken(routeURL string) string {
	u.t.Helper()
	tok, _ := u.cached(routeURL)
	return tok
}

// cached reads the token and the renewal credential portcullis-cli
// cached for routeURL.
func (u *cliUser) cached(routeURL string) (token, renewal string) {
	u.t.Helper()
	sum := sha256.Sum256([]byte(routeURL))
	b, err := os.ReadFile(filepath.Join(u.cacheHome, "portcullis-cli", "exec-credential", hex.EncodeToString(sum[:])+".json"))
	if err != nil {
		u.t.Fatal(err)
	}
	var e struct{ Token, Renewal string }
	if err := json.Unmarshal(b, &e); err != nil || e.Token == "" {
		u.t.Fatalf("cache file: %v, %q", err, b)
	}
	return e.Token, e.Renewal
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
