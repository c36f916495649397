package e2e

import (
	"bufio"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestDemo runs the README's demo far enough to see kubectl go through
// Portcullis (its non-interactive sign-in), then stops it as Ctrl-C does.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/internal/testenv/cmd/testenv", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "demo", "--port", itoa(port))
	cmd.Dir = ".." // the demo runs from the root of the source tree
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	ran := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "kubectl went through it as someuser@example.com") {
			ran = true
			break
		}
	}
	if !ran {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the demo did not get kubectl through Portcullis; it printed:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "Username    someuser@example.com") {
		t.Errorf("the demo's kubectl auth whoami did not show the demo user:\n%s", log.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	go func() {
		for sc.Scan() {
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Errorf("the demo after Ctrl-C: %v, want a clean exit", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
