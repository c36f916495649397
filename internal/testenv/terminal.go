package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
)

// A Terminal runs a command (kubectl exec -it, say) on a pseudo-terminal,
// as a person at a terminal would, and records what it shows.
type Terminal struct {
	// PTY is the terminal's master side: writes are typing, and
	// pty.Setsize on it resizes the terminal (the command gets SIGWINCH).
	PTY    *os.File
	cmd    *exec.Cmd
	waited chan error
	closed chan struct{} // all of the command's output has been read
	mu     sync.Mutex
	screen bytes.Buffer
}

// StartOnTerminal starts cmd on a new rows×cols terminal, which becomes
// its controlling terminal. Close ends it.
func StartOnTerminal(cmd *exec.Cmd, rows, cols uint16) (*Terminal, error) {
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		return nil, fmt.Errorf("starting %s on a terminal: %w", strings.Join(cmd.Args, " "), err)
	}
	t := &Terminal{PTY: f, cmd: cmd, waited: make(chan error, 1), closed: make(chan struct{})}
	go func() { t.waited <- cmd.Wait() }()
	go func() {
		defer close(t.closed)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			t.mu.Lock()
			t.screen.Write(buf[:n])
			t.mu.Unlock()
			if err != nil { // EIO once the command has exited and its output is read
				return
			}
		}
	}()
	return t, nil
}

// Resize changes the terminal's size.
func (t *Terminal) Resize(rows, cols uint16) error {
	return pty.Setsize(t.PTY, &pty.Winsize{Rows: rows, Cols: cols})
}

// Shows waits until the terminal shows want.
func (t *Terminal) Shows(ctx context.Context, want string) error {
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the terminal shows %q; want %q", t.Text(), want)
		case <-t.closed:
			if got := t.Text(); !strings.Contains(got, want) {
				return fmt.Errorf("the command has exited; the terminal shows %q; want %q", got, want)
			}
			return nil
		case <-time.After(50 * time.Millisecond):
			if strings.Contains(t.Text(), want) {
				return nil
			}
		}
	}
}

// Text is everything the terminal has shown.
func (t *Terminal) Text() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.screen.String()
}

// Wait waits for the command to exit and returns how it did.
func (t *Terminal) Wait(ctx context.Context) error {
	select {
	case err := <-t.waited:
		t.waited <- err
		return err
	case <-ctx.Done():
		return fmt.Errorf("the command did not exit: %w", ctx.Err())
	}
}

// Close kills the command if it still runs and closes the terminal.
func (t *Terminal) Close() {
	t.cmd.Process.Kill()
	t.PTY.Close()
}
