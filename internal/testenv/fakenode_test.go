package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFakeNode runs kubectl against a pod on a fake node through the real
// kube-apiserver, over both kubectl transports, and checks what a kwok node
// loses: exit codes, the end of stdin (and with it `kubectl cp` into a pod)
// and terminal resizes; and port-forward.
func TestFakeNode(t *testing.T) {
	c := NewCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := c.StartFakeNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fakenode log (%s) ends:\n%s", n.proc.LogPath, n.proc.LogTail(40))
		}
	})
	if err := c.RunFakePod(ctx, n, "demo", "box"); err != nil {
		t.Fatal(err)
	}
	kubectl := func(ctx context.Context, stdin io.Reader, args ...string) (string, string, error) {
		return c.Kubectl(ctx, stdin, append([]string{"-n", "demo"}, args...)...)
	}

	for _, websockets := range []string{"true", "false"} {
		t.Run("websockets="+websockets, func(t *testing.T) {
			t.Setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
			t.Setenv("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)

			t.Run("exec output and exit code", func(t *testing.T) {
				stdout, stderr, err := kubectl(ctx, nil, "exec", "box", "--", "sh", "-c", "echo out; echo err >&2")
				if err != nil || stdout != "out\n" || stderr != "err\n" {
					t.Errorf("exec sh -c 'echo out; echo err >&2': got stdout %q, stderr %q, %v; want out, err, no error", stdout, stderr, err)
				}
				_, _, err = kubectl(ctx, nil, "exec", "box", "--", "sh", "-c", "exit 7")
				var exitErr *exec.ExitError
				if !errors.As(err, &exitErr) || exitErr.ExitCode() != 7 {
					t.Errorf("exec sh -c 'exit 7': got %v, want kubectl to exit with code 7", err)
				}
			})

			t.Run("exec stdin EOF", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				in := "first line\nsecond line\n"
				out, _, err := kubectl(ctx, strings.NewReader(in), "exec", "-i", "box", "--", "cat")
				if err != nil || out != in {
					t.Errorf("exec -i cat: got %q, %v; want %q (a hang means cat never saw the end of stdin)", out, err, in)
				}
				big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
				out, _, err = kubectl(ctx, bytes.NewReader(big), "exec", "-i", "box", "--", "wc", "-c")
				if err != nil || strings.TrimSpace(out) != fmt.Sprint(len(big)) {
					t.Errorf("exec -i wc -c with 1 MiB: got %q, %v; want %d", out, err, len(big))
				}
			})

			t.Run("cp", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				local := t.TempDir()
				want := "copied into the pod over websockets=" + websockets + "\n"
				if err := os.WriteFile(filepath.Join(local, "in.txt"), []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				dst := "in-" + websockets + ".txt" // relative: the fake node's work dir
				if _, _, err := c.Kubectl(ctx, nil, "cp", filepath.Join(local, "in.txt"), "demo/box:"+dst); err != nil {
					t.Fatalf("kubectl cp into the pod: %v", err)
				}
				if got, err := os.ReadFile(filepath.Join(n.WorkDir, dst)); err != nil || string(got) != want {
					t.Errorf("after kubectl cp, %s in the work dir: got %q, %v; want %q", dst, got, err, want)
				}

				want = "copied out of the pod over websockets=" + websockets + "\n"
				src := "out-" + websockets + ".txt"
				if err := os.WriteFile(filepath.Join(n.WorkDir, src), []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				if _, _, err := c.Kubectl(ctx, nil, "cp", "demo/box:"+src, filepath.Join(local, "out.txt")); err != nil {
					t.Fatalf("kubectl cp out of the pod: %v", err)
				}
				if got, err := os.ReadFile(filepath.Join(local, "out.txt")); err != nil || string(got) != want {
					t.Errorf("after kubectl cp out of the pod: got %q, %v; want %q", got, err, want)
				}
			})

			t.Run("attach", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				// The fake container's process echoes stdin, like cat.
				in := "hello through attach\n"
				out, _, err := kubectl(ctx, strings.NewReader(in), "attach", "-i", "box")
				if err != nil || out != in {
					t.Errorf("attach -i: got %q, %v; want %q", out, err, in)
				}
			})

			t.Run("tty resize", func(t *testing.T) {
				testTTYResize(t, ctx, c)
			})

			t.Run("tty command", func(t *testing.T) {
				testTTYCommand(t, ctx, c)
			})

			t.Run("port-forward", func(t *testing.T) {
				testPortForward(t, ctx, c)
			})
		})
	}
}

// testTTYResize runs `kubectl exec -it` on a terminal, resizes the
// terminal, and expects the built-in fakenode-report-size to print both
// sizes: kubectl sends the initial size, then one per SIGWINCH.
func testTTYResize(t *testing.T, ctx context.Context, c *Cluster) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s := startOnTerminal(t, ctx, c, "-n", "demo", "exec", "-it", "box", "--", "fakenode-report-size")
	if err := s.Shows(ctx, "24x80\r\n"); err != nil {
		t.Fatalf("initial size: %v", err)
	}
	if err := s.Resize(40, 132); err != nil {
		t.Fatal(err)
	}
	if err := s.Shows(ctx, "40x132\r\n"); err != nil {
		t.Fatalf("after resizing the terminal: %v", err)
	}
	// kubectl has put the terminal in raw mode, so Ctrl-D travels to the
	// command as a byte, and the command ends on it.
	if _, err := s.PTY.Write([]byte{0x04}); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(ctx); err != nil {
		t.Errorf("kubectl exec -it fakenode-report-size, then Ctrl-D: %v, want success", err)
	}
}

// testTTYCommand runs a real command on the pod's terminal: it sees the
// size of kubectl's terminal, and its exit code reaches kubectl.
func testTTYCommand(t *testing.T, ctx context.Context, c *Cluster) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s := startOnTerminal(t, ctx, c, "-n", "demo", "exec", "-it", "box", "--", "sh", "-c", "stty size; exit 3")
	if err := s.Shows(ctx, "24 80\r\n"); err != nil {
		t.Errorf("stty size on the pod's terminal: %v", err)
	}
	err := s.Wait(ctx)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Errorf("kubectl exec -it sh -c 'stty size; exit 3': got %v, want exit code 3", err)
	}
}

func startOnTerminal(t *testing.T, ctx context.Context, c *Cluster, args ...string) *Terminal {
	t.Helper()
	term, err := StartOnTerminal(c.KubectlCmd(ctx, args...), 24, 80)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(term.Close)
	return term
}

// testPortForward forwards a pod port to a local HTTP server (a fake
// node's pod port N is 127.0.0.1:N) and fetches a page through it.
func testPortForward(t *testing.T, ctx context.Context, c *Cluster) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello through port-forward")
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	cmd := c.KubectlCmd(ctx, "-n", "demo", "port-forward", "--address", "127.0.0.1", "pod/box", ":"+port)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// stop ends kubectl and returns what it said on stderr.
	var once sync.Once
	stop := func() string {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		return stderr.String()
	}
	defer stop()
	// "Forwarding from 127.0.0.1:LOCAL -> PORT"; the lines after it
	// ("Handling connection …") are read too, so kubectl never blocks.
	forwarding := regexp.MustCompile(`^Forwarding from (127\.0\.0\.1:\d+) -> ` + port + `$`)
	local := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := forwarding.FindStringSubmatch(sc.Text()); m != nil {
				local <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-local:
	case <-ctx.Done():
		t.Fatalf("kubectl port-forward did not say where it listens; stderr: %s", stop())
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET through port-forward: %v; kubectl stderr: %s", err, stop())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "hello through port-forward" {
		t.Errorf("GET through port-forward: got %q, %v; want hello through port-forward", body, err)
	}
}

// TestFakeNodeBesideKwok runs a kwok node and a fake node in one cluster:
// each serves its own pods, and kwok leaves the fake node's kubelet
// endpoint as registered.
func TestFakeNodeBesideKwok(t *testing.T) {
	c := NewCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k, err := c.StartKwok(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.StartFakeNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RunFakePod(ctx, n, "demo", "box"); err != nil {
		t.Fatal(err)
	}
	// kwok has seen the fake node and its pod once it runs a pod created
	// after them.
	if _, err := c.RunPod(ctx, k, "demo", "web"); err != nil {
		t.Fatal(err)
	}
	node, err := c.Client.CoreV1().Nodes().Get(ctx, n.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprintf("127.0.0.1:%d", node.Status.DaemonEndpoints.KubeletEndpoint.Port), n.Addr; got != want {
		t.Errorf("fake node's kubelet endpoint: got %s, want %s", got, want)
	}
	_, _, err = c.Kubectl(ctx, nil, "-n", "demo", "exec", "box", "--", "sh", "-c", "exit 7")
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 7 {
		t.Errorf("exec sh -c 'exit 7' on the fake node's pod: got %v, want kubectl to exit with code 7", err)
	}
}
