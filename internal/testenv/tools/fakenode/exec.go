package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// reportSizeCommand is a command the server runs itself instead of starting
// a process: it prints the terminal size, "ROWSxCOLS" on a line of its own,
// for the initial size and for every resize, until stdin ends (or, on a
// terminal, until Ctrl-C or Ctrl-D arrives). Tests use it to see resizes
// cross kubectl, the proxy and kube-apiserver.
const reportSizeCommand = "fakenode-report-size"

// drainTime bounds how long output is still copied after a command has
// exited, when a background process it left keeps its stdout open.
const drainTime = 2 * time.Second

// initialSizeWait bounds how long a terminal command waits for the
// client's terminal size before it starts.
const initialSizeWait = time.Second

// Terminal control characters a person would type.
const (
	ctrlC = 0x03
	ctrlD = 0x04 // end of input on a terminal in canonical mode
)

// ExecInContainer runs cmd as a local process in the work directory; the pod
// and container only label the log. A non-zero exit comes back as a
// utilexec.ExitError, which ServeExec sends to the client as the exit code.
func (n *node) ExecInContainer(ctx context.Context, pod, uid, container string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	log := n.log.With("pod", pod, "container", container, "command", cmd, "tty", tty, "stdin", in != nil)
	log.Info("exec started")
	start := time.Now()
	var err error
	switch {
	case cmd[0] == reportSizeCommand:
		err = reportSize(in, out, tty, resize)
	case tty:
		err = n.runTTY(ctx, cmd, in, out, resize)
	default:
		err = n.runPipes(ctx, cmd, in, out, errOut)
	}
	var exit utilexec.ExitError
	switch {
	case err == nil:
		log.Info("exec ended", "exit_code", 0, "duration", time.Since(start))
	case errors.As(err, &exit):
		log.Info("exec ended", "exit_code", exit.ExitStatus(), "duration", time.Since(start))
	default:
		log.Warn("exec failed", "err", err)
	}
	return err
}

// command prepares a process in the work directory. Pdeathsig kills it if
// fakenode dies, so that no command outlives the test environment; a
// terminal session's process leaves fakenode's process group (Setsid) and
// would not get the group's SIGTERM.
func (n *node) command(ctx context.Context, argv []string) *exec.Cmd {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Dir = n.workDir
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.WaitDelay = drainTime
	return c
}

// runPipes runs a command with stdin, stdout and stderr as pipes.
func (n *node) runPipes(ctx context.Context, argv []string, in io.Reader, out, errOut io.Writer) error {
	c := n.command(ctx, argv)
	c.Stdout, c.Stderr = out, errOut // nil discards
	var stdin io.WriteCloser
	if in != nil {
		// Not c.Stdin = in: Wait would then wait for the copy, which
		// lasts until the client closes stdin even when the command
		// never reads it.
		var err error
		if stdin, err = c.StdinPipe(); err != nil {
			return err
		}
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("starting %q: %w", argv[0], err)
	}
	if stdin != nil {
		go func() {
			io.Copy(stdin, in)
			// The end of the client's stdin is the end of the command's:
			// what `cat`, `tar -x` (kubectl cp) and `sh -s` wait for.
			stdin.Close()
		}()
	}
	return exitStatus(c.Wait())
}

// runTTY runs a command on a new pseudo-terminal, as a container runtime
// does for `kubectl exec -t`, and applies resizes to it.
func (n *node) runTTY(ctx context.Context, argv []string, in io.Reader, out io.Writer, resize <-chan remotecommand.TerminalSize) error {
	term, err := openPTY()
	if err != nil {
		return fmt.Errorf("opening a pseudo-terminal: %w", err)
	}
	defer term.master.Close()
	if resize != nil {
		// kubectl sends its terminal's size first thing; waiting a moment
		// for it lets the command start with the right size instead of
		// 0x0 and a SIGWINCH soon after, so that what it sees does not
		// depend on a race.
		select {
		case size, ok := <-resize:
			if ok {
				if err := term.setSize(size.Height, size.Width); err != nil {
					n.log.Warn("resizing the terminal", "err", err)
				}
			}
		case <-time.After(initialSizeWait):
		}
		go func() {
			// Ends when the streaming code closes the channel, at the
			// end of the request at the latest.
			for size := range resize {
				if err := term.setSize(size.Height, size.Width); err != nil {
					n.log.Warn("resizing the terminal", "err", err)
				}
			}
		}()
	}
	c := n.command(ctx, argv)
	c.Stdin, c.Stdout, c.Stderr = term.slave, term.slave, term.slave
	// The terminal becomes the controlling terminal of a new session, so
	// that Ctrl-C reaches the command as SIGINT and resizes as SIGWINCH.
	c.SysProcAttr.Setsid, c.SysProcAttr.Setctty, c.SysProcAttr.Ctty = true, true, 0
	err = c.Start()
	// The child holds its own copies; once they are all closed, reading
	// the master fails (EIO) and the output copy below ends.
	term.slave.Close()
	if err != nil {
		return fmt.Errorf("starting %q: %w", argv[0], err)
	}
	if in != nil {
		go func() {
			io.Copy(term.master, in)
			// A terminal cannot be half-closed. At the end of the
			// client's stdin, type the end-of-input character, as a
			// person would, so a program reading the terminal sees EOF.
			term.master.Write([]byte{ctrlD})
		}()
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		if out == nil {
			out = io.Discard
		}
		io.Copy(out, term.master)
	}()
	err = c.Wait()
	select {
	case <-copied:
	case <-time.After(drainTime):
		// A background process still holds the terminal.
		term.master.Close()
		<-copied
	}
	return exitStatus(err)
}

// exitStatus turns a command's exit into the error ServeExec reports as an
// exit code. ServeExec finds it by a type assertion, not errors.As, so the
// result must not be wrapped further.
func exitStatus(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	code := ee.ExitCode()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal()) // as a shell reports a killed command
	}
	return utilexec.CodeExitError{Err: err, Code: code}
}

// reportSize is the built-in fakenode-report-size command.
func reportSize(in io.Reader, out io.Writer, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if out == nil {
		out = io.Discard
	}
	eol := "\n"
	if tty {
		eol = "\r\n" // what a terminal's output processing (ONLCR) would make of \n
	}
	var stdinDone chan struct{}
	if in != nil {
		stdinDone = make(chan struct{})
		go func() {
			defer close(stdinDone)
			buf := make([]byte, 512)
			for {
				k, err := in.Read(buf)
				for _, b := range buf[:k] {
					// On a terminal in raw mode (kubectl -t sets it)
					// Ctrl-C and Ctrl-D arrive as bytes.
					if tty && (b == ctrlC || b == ctrlD) {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	for {
		if resize == nil && stdinDone == nil {
			return nil
		}
		select {
		case size, ok := <-resize:
			if !ok {
				resize = nil
				continue
			}
			if _, err := fmt.Fprintf(out, "%dx%d%s", size.Height, size.Width, eol); err != nil {
				return err
			}
		case <-stdinDone:
			return nil
		}
	}
}

// a pty is a pseudo-terminal pair.
type pty struct {
	master, slave *os.File
}
