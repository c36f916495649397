package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// allowSignedIn is a route policy that lets in anyone signed in.
const allowSignedIn = "    - allow:\n        or:\n          - authenticated_user: true\n"

// TestReloadAndRevocation changes Portcullis's configuration and people's
// access under open streams, with the real binary, kube-apiserver, a kwok
// node, kubectl and client-go:
//
//   - 1,000 watches survive a reload that adds a route and changes the
//     policy of the route they use;
//   - a reload whose policy denies a person ends that person's exec and
//     watch with a message, and not another person's;
//   - a sign-out ends the person's exec, watch and port-forward;
//   - a certificate file rewritten on disk is served to the next new
//     connection, and the connections open go on;
//   - a configuration with a problem changes nothing but the reload
//     metric and the log; SIGHUP and a ConfigMap-style swap both reload.
func TestReloadAndRevocation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	s := startStackWith(t, ctx, stackOptions{kwok: true, reloadable: true, policy: allowSignedIn,
		builtinUsers: builtinUsersFile(t, signinEmail, signinPassword, "dev")})
	// Alice and Bob use tokens minted as the sign-in service mints them;
	// RBAC lets them do anything, so what ends their streams is Portcullis.
	if _, _, err := s.cluster.Kubectl(ctx, nil, "create", "clusterrolebinding", "e2e-people", "--clusterrole=cluster-admin",
		"--user=alice@example.com", "--user=bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := s.cluster.EnsureNamespace(ctx, "watched"); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "web.log")
	writeFile(t, logFile, criLine("the log's first line"))
	runDemoPod(t, ctx, s.cluster, s.kwok, t.TempDir(), logFile)
	alice := s.kubeconfig(t, s.token(t, "alice@example.com"))
	bob := s.kubeconfig(t, s.token(t, "bob@example.com"))
	reloads := func() float64 { return s.reloads(t) }
	reloaded := func(before float64) { t.Helper(); s.reloaded(t, ctx, before) }

	t.Run("1000 watches survive a reload that adds a route and changes a policy", func(t *testing.T) {
		cs := s.clientset(t, "alice@example.com")
		const n = 1000
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		watchers := make([]watch.Interface, n)
		var wg sync.WaitGroup
		var failed atomic.Value
		sem := make(chan struct{}, 50)
		for i := range watchers {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				w, err := cs.CoreV1().ConfigMaps("watched").Watch(wctx, metav1.ListOptions{})
				if err != nil {
					failed.Store(err)
					return
				}
				watchers[i] = w
			})
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			t.Fatalf("opening the watches: %v", err)
		}
		defer func() {
			for _, w := range watchers {
				w.Stop()
			}
		}()
		if got := metricValue(t, s.metricsURL+"/metrics", `portcullis_streams_open{kind="watch"}`); got < n {
			t.Fatalf("portcullis_streams_open{kind=watch}: got %v, want at least %d", got, n)
		}

		// A second route, and a rule on this one that leaves watches alone.
		before := reloads()
		other := strings.Replace(s.routeYAML(allowSignedIn), s.routeURL, "https://other.example.com", 1)
		s.writeConfig(t, s.routeYAML(allowSignedIn+"    - deny:\n        and:\n          - kubernetes_verb: delete\n          - kubernetes_namespace: prod\n")+other)
		reloaded(before)

		if _, _, err := s.cluster.Kubectl(ctx, nil, "-n", "watched", "create", "configmap", "after-reload"); err != nil {
			t.Fatal(err)
		}
		var missed atomic.Int32
		for _, w := range watchers {
			wg.Go(func() {
				select {
				case ev, ok := <-w.ResultChan():
					if ok && ev.Type == watch.Added {
						if cm, _ := ev.Object.(metav1.Object); cm != nil && cm.GetName() == "after-reload" {
							return
						}
					}
					t.Errorf("a watch after the reload: got %v %v (open %v), want ADDED after-reload", ev.Type, ev.Object, ok)
				case <-time.After(time.Minute):
				}
				missed.Add(1)
			})
		}
		wg.Wait()
		if m := missed.Load(); m != 0 {
			t.Fatalf("%d of %d watches delivered no event after the reload", m, n)
		}
	})

	t.Run("a reload that denies a person ends their exec and watch, and no one else's", func(t *testing.T) {
		s.writeConfig(t, s.routeYAML(allowSignedIn))
		aliceExec := s.startKubectl(t, ctx, alice, "started", "exec", "-n", "demo", "web", "--", "sh", "-c", "echo started; sleep 600")
		bobExec := s.startKubectl(t, ctx, bob, "started", "exec", "-n", "demo", "web", "--", "sh", "-c", "echo started; sleep 600")
		// SPDY, as older kubectl speaks it: no error channel Portcullis can
		// write to, but the stream ends all the same.
		spdy := s.cluster.KubectlCmd(ctx, "--kubeconfig", alice, "exec", "-n", "demo", "web", "--", "sh", "-c", "echo started; sleep 600")
		spdy.Env = append(spdy.Env, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false")
		aliceSPDY := startRun(t, spdy, "started")
		aliceLogs := s.startKubectl(t, ctx, alice, "the log's first line", "logs", "-f", "-n", "demo", "web")
		aliceWatch := s.startKubectl(t, ctx, alice, "", "get", "configmaps", "-n", "watched", "--watch-only")
		bobWatch := s.startKubectl(t, ctx, bob, "", "get", "configmaps", "-n", "watched", "--watch-only", "-o", "name")
		time.Sleep(2 * time.Second) // kubectl opens its watch after it starts
		if _, _, err := s.cluster.Kubectl(ctx, nil, "-n", "watched", "create", "configmap", "before-deny"); err != nil {
			t.Fatal(err)
		}
		aliceWatch.expectPrefix(t, "before-deny")
		bobWatch.expectLine(t, "configmap/before-deny")

		before := reloads()
		s.writeConfig(t, s.routeYAML(allowSignedIn+"    - deny:\n        or:\n          - email:\n              is: alice@example.com\n"))
		// SIGHUP at once, rather than waiting for the file check.
		sighup := time.Now()
		if err := s.portcullis.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for _, k := range []*kubectlRun{aliceExec, aliceSPDY, aliceLogs, aliceWatch} {
			took := k.waitExit(t, 10*time.Second)
			t.Logf("alice's %s ended %s after SIGHUP; stdout %q, stderr %q", k.args[0], took.Sub(sighup), k.output(), k.stderr())
			if took.Sub(sighup) > time.Second {
				t.Errorf("alice's %s ended %s after the reload, want within 1s", k.args[0], took.Sub(sighup))
			}
			if k == aliceSPDY {
				continue
			}
			// kubectl exec prints the Status of the exec's error channel;
			// kubectl get -w prints the watch's ERROR event as a row;
			// kubectl logs -f prints the log's last line.
			if said := k.stderr() + k.output(); !strings.Contains(said, "no longer allowed") {
				t.Errorf("alice's %s said %q, want it to say the stream is no longer allowed", k.args[0], said)
			}
		}
		reloaded(before)
		// Bob's go on: his watch sees the next change, his exec runs.
		if _, _, err := s.cluster.Kubectl(ctx, nil, "-n", "watched", "create", "configmap", "after-deny"); err != nil {
			t.Fatal(err)
		}
		bobWatch.expectLine(t, "configmap/after-deny")
		if bobExec.exited() {
			t.Errorf("bob's exec ended with alice's: stderr %q", bobExec.stderr())
		}
		// Alice's next command is refused with the rule that refused it.
		_, errOut, err := s.as(ctx, alice, "", "get", "pods", "-n", "demo")
		if err == nil || !strings.Contains(errOut, "Forbidden") || !strings.Contains(errOut, "denied") {
			t.Errorf("alice's next command: err %v, stderr %q; want Forbidden naming the rule", err, errOut)
		}
		bobExec.stop()
		bobWatch.stop()
	})

	t.Run("sign-out ends the person's exec, watch and port-forward", func(t *testing.T) {
		before := reloads()
		s.writeConfig(t, s.routeYAML(allowSignedIn))
		reloaded(before)
		activity := func(action string) float64 {
			return metricValue(t, s.metricsURL+"/metrics", `portcullis_sign_ins_total{action="`+action+`"}`)
		}
		signIns, signOuts := activity("sign-in"), activity("sign-out")
		u := newCLIUser(t, ctx, s.cluster.KubectlPath, s.routeURL, s.ca.CertPEM)
		u.setup()
		if user, errOut := u.whoami(ctx); user != signinEmail {
			t.Fatalf("signing in: got %q\n%s", user, errOut)
		}
		if got := activity("sign-in") - signIns; got != 1 {
			t.Errorf("portcullis_sign_ins_total{action=sign-in} rose by %v with one sign-in", got)
		}
		runs := []*kubectlRun{
			startRun(t, u.kubectlCmd(ctx, nil, "--context", "e2e", "exec", "-n", "demo", "web", "--", "sh", "-c", "echo started; sleep 600"), "started"),
			startRun(t, u.kubectlCmd(ctx, nil, "--context", "e2e", "get", "configmaps", "-n", "watched", "--watch-only"), ""),
			startRun(t, u.kubectlCmd(ctx, nil, "--context", "e2e", "port-forward", "-n", "demo", "web", ":8080"), "Forwarding from"),
		}
		time.Sleep(2 * time.Second) // the watch is open
		// The port-forward carries traffic.
		m := regexp.MustCompile(`127\.0\.0\.1:(\d+) -> 8080`).FindStringSubmatch(runs[2].firstLine)
		if m == nil {
			t.Fatalf("port-forward said %q", runs[2].firstLine)
		}
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+m[1], 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if got, err := bufio.NewReader(conn).ReadString('\n'); err != nil || got != "ping\n" {
			t.Fatalf("port-forward echo: got %q, %v", got, err)
		}

		signOut := time.Now()
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS()}, Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		defer client.CloseIdleConnections()
		if resp := do(t, client, "POST", s.routeURL+"/.pomerium/sign_out", http.Header{"Authorization": {"Bearer Pomerium-" + u.cachedToken(s.routeURL)}}, ""); resp.code >= 400 {
			t.Fatalf("sign-out: got %d %q", resp.code, resp.body)
		}
		for _, k := range runs {
			took := k.waitExit(t, 10*time.Second).Sub(signOut)
			t.Logf("%s ended %s after the sign-out; stderr %q", k.args[0], took, k.stderr())
			if took > time.Second {
				t.Errorf("%s ended %s after the sign-out, want within 1s", k.args[0], took)
			}
		}
		for _, k := range runs[:2] {
			if said := k.stderr() + k.output(); !strings.Contains(said, "session ended") {
				t.Errorf("%s said %q, want it to say the session ended", k.args[0], said)
			}
		}
		for _, kind := range []string{"exec", "watch", "portforward"} {
			if n := metricValue(t, s.metricsURL+"/metrics", `portcullis_streams_ended_total{kind="`+kind+`"}`); n < 1 {
				t.Errorf("portcullis_streams_ended_total{kind=%s}: got %v, want at least 1", kind, n)
			}
		}
		if got := activity("sign-out") - signOuts; got != 1 {
			t.Errorf("portcullis_sign_ins_total{action=sign-out} rose by %v with one sign-out", got)
		}
	})

	t.Run("a rewritten certificate file is served to new connections; open ones go on", func(t *testing.T) {
		oldClient, oldSerial := s.tlsClient(t)
		w, err := s.rawWatch(ctx, oldClient, s.token(t, "bob@example.com"))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if w.serial != oldSerial {
			t.Fatalf("the watch's connection has certificate %s, want %s", w.serial, oldSerial)
		}
		certPEM, keyPEM, err := s.ca.Issue("portcullis renewed", "127.0.0.1", "localhost")
		if err != nil {
			t.Fatal(err)
		}
		before := reloads()
		// As cert-manager's renewal lands in a plain file: rewritten in
		// place, the key, then the certificate.
		writeFile(t, s.keyFile, string(keyPEM))
		writeFile(t, s.certFile, string(certPEM))
		reloaded(before)
		_, newSerial := s.tlsClient(t)
		if newSerial == oldSerial {
			t.Fatalf("a new connection after the rewrite got the old certificate %s", oldSerial)
		}
		if want := serialOf(t, certPEM); newSerial != want {
			t.Errorf("a new connection got certificate %s, want the rewritten file's %s", newSerial, want)
		}
		// The watch opened before goes on, on its connection.
		if _, _, err := s.cluster.Kubectl(ctx, nil, "-n", "watched", "create", "configmap", "after-rotation"); err != nil {
			t.Fatal(err)
		}
		if err := w.expect("after-rotation"); err != nil {
			t.Errorf("the watch opened before the rotation: %v", err)
		}
	})

	t.Run("an invalid configuration changes nothing; SIGHUP and a ConfigMap swap reload", func(t *testing.T) {
		failures := func() float64 {
			return metricValue(t, s.metricsURL+"/metrics", `portcullis_config_reloads_total{result="failure"}`)
		}
		before := failures()
		s.writeConfig(t, "- from: https://[not a host\n  to: nowhere\n")
		waitFor(t, ctx, 20*time.Second, "the reload fails", func() error {
			if failures() <= before {
				return fmt.Errorf("no failed reload yet")
			}
			return nil
		})
		if got := metricValue(t, s.metricsURL+"/metrics", "portcullis_config_last_reload_successful"); got != 0 {
			t.Errorf("portcullis_config_last_reload_successful: got %v, want 0", got)
		}
		log := s.portcullis.LogTail(40)
		if !strings.Contains(log, "configuration reload refused") || !strings.Contains(log, "not a host") {
			t.Errorf("the log does not say why the reload was refused:\n%s", log)
		}
		if _, errOut, err := s.as(ctx, bob, "", "get", "configmaps", "-n", "watched", "-o", "name"); err != nil {
			t.Errorf("kubectl under the old configuration: %v\n%s", err, errOut)
		}

		// The ConfigMap swap of a good configuration reloads by itself.
		ok := reloads()
		s.writeConfig(t, s.routeYAML(allowSignedIn))
		reloaded(ok)
		if got := metricValue(t, s.metricsURL+"/metrics", "portcullis_config_last_reload_successful"); got != 1 {
			t.Errorf("portcullis_config_last_reload_successful: got %v, want 1", got)
		}
		// SIGHUP with nothing changed reloads too.
		ok = reloads()
		if err := s.portcullis.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		reloaded(ok)
		if log := s.portcullis.LogTail(20); !strings.Contains(log, "SIGHUP") {
			t.Errorf("the log does not show the SIGHUP:\n%s", log)
		}
	})
}

// clientset is client-go for email through Portcullis, with a token minted
// for the route.
func (s *stack) clientset(t *testing.T, email string) *kubernetes.Clientset {
	t.Helper()
	cfg := &rest.Config{Host: s.routeURL, BearerToken: "Pomerium-" + s.token(t, email),
		TLSClientConfig: rest.TLSClientConfig{CAData: s.ca.CertPEM}, QPS: 1000, Burst: 1000}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// tlsClient returns an HTTP client on a connection of its own to
// Portcullis, and the serial number of the certificate it was served.
func (s *stack) tlsClient(t *testing.T) (*http.Client, string) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: s.ca.ClientTLS(), ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	resp, err := client.Get(s.routeURL + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return client, resp.TLS.PeerCertificates[0].SerialNumber.String()
}

func serialOf(t *testing.T, certPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.String()
}

// rawWatchStream is a watch of the configmaps in "watched", read line by
// line, on the connection of the client that opened it.
type rawWatchStream struct {
	body   io.ReadCloser
	lines  *bufio.Reader
	serial string // the certificate its connection was served
}

func (s *stack) rawWatch(ctx context.Context, client *http.Client, token string) (*rawWatchStream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.routeURL+"/api/v1/namespaces/watched/configmaps?watch=1", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer Pomerium-"+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("watch: got %s", resp.Status)
	}
	return &rawWatchStream{body: resp.Body, lines: bufio.NewReader(resp.Body), serial: resp.TLS.PeerCertificates[0].SerialNumber.String()}, nil
}

// expect reads events until one names name (the watch may first list the
// configmaps there already), for up to 30 seconds.
func (w *rawWatchStream) expect(name string) error {
	done := make(chan error, 1)
	go func() {
		for {
			line, err := w.lines.ReadString('\n')
			if err != nil {
				done <- fmt.Errorf("reading: %w", err)
				return
			}
			if strings.Contains(line, `"name":"`+name+`"`) {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("no event for %s within 30s", name)
	}
}

func (w *rawWatchStream) Close() { w.body.Close() }

// kubectlRun is a kubectl command running in the background.
type kubectlRun struct {
	args      []string
	cmd       *exec.Cmd
	firstLine string // the line startRun waited for
	lines     chan string
	done      chan struct{}
	endedAt   time.Time
	mu        sync.Mutex
	errBuf    strings.Builder
	out       []string // every line of output
}

// output returns every line kubectl wrote to stdout so far.
func (k *kubectlRun) output() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.out, "\n")
}

// startKubectl runs kubectl with kubeconfig and args through Portcullis;
// see startRun for want.
func (s *stack) startKubectl(t *testing.T, ctx context.Context, kubeconfig, want string, args ...string) *kubectlRun {
	t.Helper()
	return startRun(t, s.cluster.KubectlCmd(ctx, append([]string{"--kubeconfig", kubeconfig}, args...)...), want)
}

// startRun starts cmd and, if want is not "", waits until a line of its
// output contains want.
func startRun(t *testing.T, cmd *exec.Cmd, want string) *kubectlRun {
	t.Helper()
	k := &kubectlRun{args: cmd.Args[1:], cmd: cmd, lines: make(chan string, 100), done: make(chan struct{})}
	// For messages: from the subcommand on, without the global flags.
	for i := 0; i < len(k.args); i++ {
		switch a := k.args[i]; {
		case a == "--kubeconfig" || a == "--context":
			i++
		case !strings.HasPrefix(a, "-"):
			k.args = k.args[i:]
			i = len(k.args)
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.errBuf.Write(p)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			k.mu.Lock()
			k.out = append(k.out, sc.Text())
			k.mu.Unlock()
			select {
			case k.lines <- sc.Text():
			default: // nobody is waiting for lines; output() has them
			}
		}
		cmd.Wait()
		k.mu.Lock()
		k.endedAt = time.Now()
		k.mu.Unlock()
		close(k.done)
	}()
	t.Cleanup(k.stop)
	if want != "" {
		select {
		case line := <-k.lines:
			if !strings.Contains(line, want) {
				t.Fatalf("kubectl %s: first line %q, want %q; stderr %q", k.args, line, want, k.stderr())
			}
			k.firstLine = line
		case <-k.done:
			t.Fatalf("kubectl %s ended before saying %q; stderr %q", k.args, want, k.stderr())
		case <-time.After(60 * time.Second):
			t.Fatalf("kubectl %s did not say %q within 60s; stderr %q", k.args, want, k.stderr())
		}
	}
	return k
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (k *kubectlRun) stderr() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.errBuf.String()
}

func (k *kubectlRun) exited() bool {
	select {
	case <-k.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to timeout for kubectl to end, and says when it did.
func (k *kubectlRun) waitExit(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	select {
	case <-k.done:
	case <-time.After(timeout):
		t.Fatalf("kubectl %s still running after %s; stderr %q", k.args, timeout, k.stderr())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.endedAt
}

// expectPrefix waits up to 30s for an output line starting with want.
func (k *kubectlRun) expectPrefix(t *testing.T, want string) {
	t.Helper()
	k.waitLine(t, want, func(line string) bool { return strings.HasPrefix(line, want) })
}

// expectLine waits up to 30s for an output line equal to want.
func (k *kubectlRun) expectLine(t *testing.T, want string) {
	t.Helper()
	k.waitLine(t, want, func(line string) bool { return line == want })
}

// waitLine waits up to 30s for an output line that match accepts; want
// says what for the failure message.
func (k *kubectlRun) waitLine(t *testing.T, want string, match func(string) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line := <-k.lines:
			if match(line) {
				return
			}
		case <-k.done:
			t.Fatalf("kubectl %s ended before printing %q; stderr %q", k.args, want, k.stderr())
		case <-deadline:
			t.Fatalf("kubectl %s did not print %q within 30s; stderr %q", k.args, want, k.stderr())
		}
	}
}

func (k *kubectlRun) stop() {
	if k.cmd.Process != nil {
		k.cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-k.done:
	case <-time.After(5 * time.Second):
		k.cmd.Process.Kill()
		<-k.done
	}
}
