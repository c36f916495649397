package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// TestMain lets the test binary play two other parts:
//   - a browser (CLI_TEST_BROWSER set): GET the URL it is given, trusting
//     the CA in CLI_TEST_CA, following redirects to the loopback listener;
//   - the portcullis-cli command itself (CLI_TEST_MAIN set), to see exit
//     statuses and exactly what reaches stdout and stderr.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("CLI_TEST_MAIN") != "":
		os.Args = append([]string{"portcullis-cli"}, strings.Fields(os.Getenv("CLI_TEST_MAIN"))...)
		os.Unsetenv("CLI_TEST_MAIN") // not for the browser it may start
		main()
		os.Exit(0)
	case os.Getenv("CLI_TEST_BROWSER") != "":
		os.Exit(fakeBrowser(os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

func fakeBrowser(u string) int {
	pool, _ := os.ReadFile(os.Getenv("CLI_TEST_CA"))
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = rootsTLS(pool)
	resp, err := (&http.Client{Transport: tr}).Get(u)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake browser:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "fake browser: got", resp.Status)
		return 1
	}
	return 0
}

// fakeRoute is a Portcullis route as the CLI sees it: the login endpoint,
// a sign-in page that sends the browser back with a token, and
// /.pomerium/, which accepts the tokens it issued until they are revoked.
type fakeRoute struct {
	srv      *httptest.Server
	caFile   string
	mu       sync.Mutex
	accepted map[string]bool
	signIns  atomic.Int32
	checks   atomic.Int32
}

func newFakeRoute(t *testing.T) *fakeRoute {
	t.Helper()
	r := &fakeRoute{accepted: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.pomerium/api/v1/login", func(w http.ResponseWriter, req *http.Request) {
		redirect := req.URL.Query().Get("pomerium_redirect_uri")
		if !strings.HasPrefix(redirect, "http://127.0.0.1:") {
			http.Error(w, "pomerium_redirect_uri must be a loopback http URL", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s/sign_in?to=%s", r.srv.URL, url.QueryEscape(redirect))
	})
	mux.HandleFunc("GET /sign_in", func(w http.ResponseWriter, req *http.Request) {
		n := r.signIns.Add(1)
		tok := jwt(time.Now().Add(time.Hour), int(n))
		r.mu.Lock()
		r.accepted[tok] = true
		r.mu.Unlock()
		http.Redirect(w, req, req.URL.Query().Get("to")+"?pomerium_jwt="+tok, http.StatusFound)
	})
	mux.HandleFunc("GET /.pomerium/", func(w http.ResponseWriter, req *http.Request) {
		r.checks.Add(1)
		tok := strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer Pomerium-")
		r.mu.Lock()
		ok := r.accepted[tok]
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"session ended","reason":"Unauthorized","code":401}`)
			return
		}
		fmt.Fprint(w, `{"email":"someuser@example.com","groups":[],"expires_at":"2026-11-28T04:00:00Z"}`)
	})
	r.srv = httptest.NewUnstartedServer(mux)
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	r.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(r.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *fakeRoute) revokeAll() {
	r.mu.Lock()
	clear(r.accepted)
	r.mu.Unlock()
}

func jwt(exp time.Time, n int) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"ES256"}`)) + "." +
		enc(fmt.Appendf(nil, `{"exp":%d,"email":"someuser@example.com","n":%d}`, exp.Unix(), n)) + "." + enc([]byte("sig"))
}

// isolate gives the test its own cache and home, and makes the test
// binary the browser.
func isolate(t *testing.T, r *fakeRoute) (cacheDir string) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_EXEC_INFO", "")
	t.Setenv("BROWSER", "")
	if r != nil {
		t.Setenv("CLI_TEST_CA", r.caFile)
		t.Setenv("CLI_TEST_BROWSER", "1") // read by the browser child only
	}
	return filepath.Join(home, ".cache", "portcullis-cli", "exec-credential")
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb logbuf.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = run(ctx, args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestVersion(t *testing.T) {
	stdout, _, err := runCLI(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if want := "portcullis-cli dev\n"; stdout != want {
		t.Errorf("got %q, want %q", stdout, want)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		stdout, _, err := runCLI(t, "completion", shell)
		if err != nil || !strings.Contains(stdout, "portcullis-cli") {
			t.Errorf("completion %s: got %d bytes, %v", shell, len(stdout), err)
		}
	}
}

// The exec-credential cycle against a route stand-in: sign in once, reuse
// the cache, sign in again when the server refuses the token or the cache
// is flushed.
func TestExecCredential(t *testing.T) {
	r := newFakeRoute(t)
	cacheDir := isolate(t, r)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"k8s", "exec-credential", r.srv.URL, "--ca-cert", r.caFile, "--browser-cmd", self}

	t.Setenv("KUBERNETES_EXEC_INFO", `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}`)
	stdout, stderr, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr)
	}
	cred := decodeCredential(t, stdout, "client.authentication.k8s.io/v1beta1")
	if r.signIns.Load() != 1 {
		t.Errorf("got %d sign-ins, want 1", r.signIns.Load())
	}
	for _, want := range []string{"opening your browser at\n\n    " + r.srv.URL + "/sign_in?to=http%3A%2F%2F127.0.0.1%3A", "Signed in to " + r.srv.URL + " as someuser@example.com."} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	// Cache: file 0600 in a 0700 directory, named by the URL's SHA-256.
	files, _ := filepath.Glob(filepath.Join(cacheDir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("cache files: %v, want one", files)
	}
	if fi, _ := os.Stat(files[0]); fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode %v, want 0600", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(cacheDir); fi.Mode().Perm() != 0o700 {
		t.Errorf("cache directory mode %v, want 0700", fi.Mode().Perm())
	}

	t.Setenv("KUBERNETES_EXEC_INFO", `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":true}}`)
	stdout, stderr, err = runCLI(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	again := decodeCredential(t, stdout, "client.authentication.k8s.io/v1")
	if again.Status.Token != cred.Status.Token || r.signIns.Load() != 1 {
		t.Errorf("second run signed in again (%d sign-ins), want the cached token", r.signIns.Load())
	}
	if stderr != "" {
		t.Errorf("a cached run should be silent, got stderr %q", stderr)
	}

	r.revokeAll()
	stdout, stderr, err = runCLI(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	if decodeCredential(t, stdout, "client.authentication.k8s.io/v1").Status.Token == cred.Status.Token || r.signIns.Load() != 2 {
		t.Errorf("after the server refused the token: %d sign-ins, want 2 and a new token", r.signIns.Load())
	}
	if !strings.Contains(stderr, "is no longer accepted by the server") {
		t.Errorf("stderr does not say why it signs in again:\n%s", stderr)
	}

	_, stderr, err = runCLI(t, "k8s", "flush-credentials", r.srv.URL+"/")
	if err != nil || !strings.Contains(stderr, "Removed the cached credential for "+r.srv.URL) {
		t.Errorf("flush-credentials URL: %v, %q", err, stderr)
	}
	if _, _, err := runCLI(t, args...); err != nil || r.signIns.Load() != 3 {
		t.Errorf("after flush-credentials: %v, %d sign-ins, want 3", err, r.signIns.Load())
	}
	if _, stderr, _ := runCLI(t, "k8s", "flush-credentials"); !strings.Contains(stderr, "Removed 1 cached credential(s)") {
		t.Errorf("flush-credentials: got %q", stderr)
	}

	// login prints only the token, and caches it.
	stdout, _, err = runCLI(t, "login", r.srv.URL, "--ca-cert", r.caFile, "--browser-cmd", self)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 1 || strings.Count(lines[0], ".") != 2 || r.signIns.Load() != 4 {
		t.Errorf("login: stdout %q (%d sign-ins), want one JWT line", stdout, r.signIns.Load())
	}
	stdout, _, _ = runCLI(t, args...)
	if got := decodeCredential(t, stdout, "client.authentication.k8s.io/v1").Status.Token; got != "Pomerium-"+lines[0] || r.signIns.Load() != 4 {
		t.Errorf("exec-credential after login did not use login's token")
	}
}

type execCredential struct {
	Kind, APIVersion string
	Status           struct {
		Token               string    `json:"token"`
		ExpirationTimestamp time.Time `json:"expirationTimestamp"`
	} `json:"status"`
}

func decodeCredential(t *testing.T, stdout, apiVersion string) execCredential {
	t.Helper()
	var ec execCredential
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&ec); err != nil {
		t.Fatalf("stdout is not an ExecCredential: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Errorf("stdout holds more than the ExecCredential: %q", stdout)
	}
	if ec.Kind != "ExecCredential" || ec.APIVersion != apiVersion || !strings.HasPrefix(ec.Status.Token, "Pomerium-") {
		t.Errorf("got %+v, want an ExecCredential %s with a Pomerium- token", ec, apiVersion)
	}
	if d := time.Until(ec.Status.ExpirationTimestamp); d < 58*time.Minute || d > time.Hour {
		t.Errorf("expirationTimestamp %v, want the token's exp, an hour from now", ec.Status.ExpirationTimestamp)
	}
	return ec
}

// Runs at once on an empty cache open one browser.
func TestExecCredentialConcurrent(t *testing.T) {
	r := newFakeRoute(t)
	isolate(t, r)
	self, _ := os.Executable()
	var wg sync.WaitGroup
	tokens := make([]string, 5)
	for i := range tokens {
		wg.Go(func() {
			stdout, stderr, err := runCLI(t, "k8s", "exec-credential", r.srv.URL, "--ca-cert", r.caFile, "--browser-cmd", self)
			if err != nil {
				t.Errorf("%v\n%s", err, stderr)
				return
			}
			tokens[i] = decodeCredential(t, stdout, "client.authentication.k8s.io/v1").Status.Token
		})
	}
	wg.Wait()
	if got := r.signIns.Load(); got != 1 {
		t.Errorf("got %d sign-ins, want 1", got)
	}
	for _, tok := range tokens {
		if tok != tokens[0] {
			t.Errorf("runs got different tokens")
		}
	}
}

// Failures a person can act on: the message, exit status 1, nothing on
// stdout.
func TestErrorsForPeople(t *testing.T) {
	r := newFakeRoute(t)
	isolate(t, r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + ln.Addr().String()
	ln.Close()
	for _, tt := range []struct {
		name     string
		args     string
		execInfo string
		want     []string
	}{
		{
			name: "server unreachable",
			args: "k8s exec-credential " + closed + " --no-browser",
			want: []string{"portcullis-cli: asking " + closed + " for a sign-in URL: cannot reach the server (connection refused); check the URL and that Portcullis is running"},
		},
		{
			name: "unknown certificate authority",
			args: "k8s exec-credential " + r.srv.URL + " --no-browser",
			want: []string{"signed by an unknown authority; pass the CA certificate with --ca-cert FILE"},
		},
		{
			name: "sign-in timed out",
			args: "k8s exec-credential " + r.srv.URL + " --ca-cert " + r.caFile + " --no-browser --login-timeout 500ms",
			want: []string{"open this address in a browser:\n\n    " + r.srv.URL + "/sign_in?", "portcullis-cli: sign-in timed out after 500ms: the browser never came back"},
		},
		{
			name: "browser command failed",
			args: "k8s exec-credential " + r.srv.URL + " --ca-cert " + r.caFile + " --browser-cmd false",
			want: []string{"portcullis-cli: opening the browser: false failed: exit status 1; fix --browser-cmd, or use --no-browser"},
		},
		{
			name:     "unsupported ExecCredential version",
			args:     "k8s exec-credential " + r.srv.URL,
			execInfo: `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1"}`,
			want:     []string{`portcullis-cli: reading KUBERNETES_EXEC_INFO: kubectl asks for ExecCredential "client.authentication.k8s.io/v1alpha1"`},
		},
		{
			name: "no URL",
			args: "k8s exec-credential",
			want: []string{"portcullis-cli: portcullis-cli k8s exec-credential needs the route's URL, such as https://k8s.example.com"},
		},
		{
			name: "bad URL",
			args: "login k8s.example.com",
			want: []string{`portcullis-cli: bad server URL "k8s.example.com"`},
		},
		{
			name: "bad --ca-cert",
			args: "k8s exec-credential " + r.srv.URL + " --ca-cert /nonexistent.pem",
			want: []string{`reading --ca-cert: "/nonexistent.pem" is neither a file nor base64-encoded PEM`},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			signIns := r.signIns.Load()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "CLI_TEST_MAIN="+tt.args, "KUBERNETES_EXEC_INFO="+tt.execInfo)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("exit status %d (%v), want 1", code, err)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing (it is kubectl's)", stdout.String())
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if r.signIns.Load() != signIns {
				t.Errorf("a sign-in completed; want none")
			}
		})
	}
}

func TestSetup(t *testing.T) {
	isolate(t, nil)
	r := newFakeRoute(t)
	home := os.Getenv("HOME")
	t.Setenv("KUBECONFIG", filepath.Join(home, "first")+string(os.PathListSeparator)+filepath.Join(home, "second"))
	args := []string{"k8s", "setup", r.srv.URL, "--name", "dev", "--ca-cert", r.caFile, "--browser-cmd", "/usr/bin/firefox"}
	stdout, stderr, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	path := filepath.Join(home, "first")
	if want := "Added context dev in " + path + "\nTry it:\n\n    kubectl --context dev get ns\n"; stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := clientcmd.Validate(*cfg); err != nil {
		t.Errorf("kubectl would reject the kubeconfig: %v", err)
	}
	ca, _ := os.ReadFile(r.caFile)
	if c := cfg.Clusters["dev"]; c == nil || c.Server != r.srv.URL || !bytes.Equal(c.CertificateAuthorityData, ca) {
		t.Errorf("cluster: got %+v", c)
	}
	exe := cfg.AuthInfos["dev"].Exec
	self, _ := filepath.Abs(os.Args[0])
	wantArgs := []string{"k8s", "exec-credential", r.srv.URL, "--ca-cert", r.caFile, "--browser-cmd", "/usr/bin/firefox"}
	if exe == nil || exe.Command != self || fmt.Sprint(exe.Args) != fmt.Sprint(wantArgs) ||
		exe.APIVersion != "client.authentication.k8s.io/v1" || exe.InteractiveMode != "IfAvailable" || exe.ProvideClusterInfo {
		t.Errorf("exec: got %+v, want command %s args %q", exe, self, wantArgs)
	}
	stdout, _, err = runCLI(t, args...)
	if err != nil || !strings.HasPrefix(stdout, "Already set up: context dev in "+path) {
		t.Errorf("second run: %v, %q, want it to change nothing", err, stdout)
	}

	// An explicit --kubeconfig and the default name.
	other := filepath.Join(home, "elsewhere", "kubeconfig")
	stdout, _, err = runCLI(t, "k8s", "setup", r.srv.URL, "--kubeconfig", other)
	name := "portcullis-" + strings.ReplaceAll(strings.TrimPrefix(r.srv.URL, "https://"), ":", "-")
	if err != nil || !strings.Contains(stdout, "kubectl --kubeconfig "+other+" --context "+name+" get ns") {
		t.Errorf("--kubeconfig: %v, %q", err, stdout)
	}
}

// TestSetupDirect: in direct mode the cluster is kube-apiserver itself,
// with its own CA, and the user asks the route for a bare token with the
// route's connection flags.
func TestSetupDirect(t *testing.T) {
	isolate(t, nil)
	r := newFakeRoute(t)
	home := os.Getenv("HOME")
	path := filepath.Join(home, "kubeconfig")
	apiCA := filepath.Join(home, "cluster-ca.pem")
	if err := os.WriteFile(apiCA, []byte("cluster CA"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runCLI(t, "k8s", "setup", r.srv.URL, "--name", "dev", "--kubeconfig", path, "--ca-cert", r.caFile,
		"--direct-server", "https://10.0.0.1:6443", "--direct-ca-cert", apiCA)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Clusters["dev"]; c == nil || c.Server != "https://10.0.0.1:6443" || string(c.CertificateAuthorityData) != "cluster CA" {
		t.Errorf("cluster: got %+v, want the apiserver with its CA", c)
	}
	wantArgs := []string{"k8s", "exec-credential", r.srv.URL, "--direct", "--ca-cert", r.caFile}
	if exe := cfg.AuthInfos["dev"].Exec; exe == nil || fmt.Sprint(exe.Args) != fmt.Sprint(wantArgs) {
		t.Errorf("exec: got %+v, want args %q", exe, wantArgs)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--direct-server", "http://10.0.0.1:6443"}, "not an https URL"},
		{[]string{"--direct-server", "https://10.0.0.1:6443/api"}, "not an https URL"},
		{[]string{"--direct-ca-cert", apiCA}, "--direct-server, which is not given"},
		{[]string{"--direct-server", "https://10.0.0.1:6443", "--all"}, "set up each route in direct mode on its own"},
	} {
		_, _, err := runCLI(t, append([]string{"k8s", "setup", r.srv.URL, "--kubeconfig", path}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("setup %q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// TestExecCredentialDirect: --direct prints the bare JWT, as kube-apiserver
// takes it, of the same cached token.
func TestExecCredentialDirect(t *testing.T) {
	r := newFakeRoute(t)
	isolate(t, r)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_EXEC_INFO", `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":true}}`)
	args := []string{"k8s", "exec-credential", r.srv.URL, "--ca-cert", r.caFile, "--browser-cmd", self}
	stdout, stderr, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	proxied := decodeCredential(t, stdout, "client.authentication.k8s.io/v1")
	stdout, stderr, err = runCLI(t, append(args, "--direct")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var bare execCredential
	if err := json.Unmarshal([]byte(stdout), &bare); err != nil || bare.APIVersion != "client.authentication.k8s.io/v1" {
		t.Fatalf("--direct: %v\n%s", err, stdout)
	}
	if proxied.Status.Token != "Pomerium-"+bare.Status.Token || r.signIns.Load() != 1 {
		t.Errorf("--direct token %q, want the cached %q without its prefix (%d sign-ins)", bare.Status.Token, proxied.Status.Token, r.signIns.Load())
	}
}

func rootsTLS(pemBytes []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	return &tls.Config{RootCAs: pool}
}
