package login

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"runtime"
	"strings"
)

// A Browser is the command that opens the sign-in page.
type Browser struct {
	// Argv is the command and its arguments; the URL replaces an
	// argument "%s", or is appended if there is none.
	Argv []string
	// Explicit marks a command the person chose (--browser-cmd): if it
	// fails, the sign-in fails with its error. A default opener that fails
	// (no xdg-open on a server) only earns a warning: the URL is printed,
	// and the person can open it elsewhere.
	Explicit bool
}

// ChooseBrowser picks the browser command: --browser-cmd (a program, run
// with the URL as its argument, as pomerium-cli does), else the first
// entry of $BROWSER (a list of commands, each of which may say where the
// URL goes with %s), else the system's opener (systemOpener). noBrowser
// wins over all and returns nil: print the URL only.
func ChooseBrowser(browserCmd, envBrowser string, noBrowser bool) *Browser {
	return chooseBrowser(runtime.GOOS, browserCmd, envBrowser, noBrowser)
}

func chooseBrowser(goos, browserCmd, envBrowser string, noBrowser bool) *Browser {
	switch {
	case noBrowser:
		return nil
	case browserCmd != "":
		return &Browser{Argv: []string{browserCmd}, Explicit: true}
	}
	// $BROWSER is a list like $PATH: colon-separated, but on Windows,
	// where a colon follows every drive letter, semicolon-separated.
	sep := ":"
	if goos == "windows" {
		sep = ";"
	}
	for entry := range strings.SplitSeq(envBrowser, sep) {
		if f := strings.Fields(entry); len(f) > 0 {
			return &Browser{Argv: f}
		}
	}
	return &Browser{Argv: systemOpener(goos)}
}

// systemOpener is the command each system documents for opening a URL in
// the person's default browser: xdg-open on Linux and the BSDs, open on
// macOS, and on Windows url.dll's URL handler run by rundll32, which hands
// the URL to the registered browser. None of them is a shell: the URL is
// one argument that nothing parses for commands. (cmd /c start URL, the
// usual Windows answer, is a hole: cmd.exe splits "…?a=1&calc.exe" at
// the & and runs calc.exe.)
func systemOpener(goos string) []string {
	switch goos {
	case "darwin":
		return []string{"open"}
	case "windows":
		return []string{"rundll32", "url.dll,FileProtocolHandler"}
	default:
		return []string{"xdg-open"}
	}
}

func (b *Browser) String() string { return strings.Join(b.Argv, " ") }

// command is the argv that opens rawURL: the URL placed at %s, or
// appended as the last argument.
func (b *Browser) command(rawURL string) []string {
	argv := make([]string, 0, len(b.Argv)+1)
	placed := false
	for _, a := range b.Argv {
		if strings.Contains(a, "%s") {
			a, placed = strings.ReplaceAll(a, "%s", rawURL), true
		}
		argv = append(argv, a)
	}
	if !placed {
		argv = append(argv, rawURL)
	}
	return argv
}

// Open starts the browser command on rawURL, which must be an http or
// https address: the systems' openers also run programs and open files,
// and a browser needs nothing else. Its output goes to stderr, never to
// stdout. The returned channel yields an error if an explicit command
// fails (a start failure of one is returned at once); it is never closed.
func (b *Browser) Open(rawURL string, stderr io.Writer) (<-chan error, error) {
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("opening the browser: %q is not a web address", rawURL)
	}
	argv := b.command(rawURL)
	// No shell: the URL is one argument, whatever it contains.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	failed := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		err = fmt.Errorf("opening the browser with %q: %w", b.Argv[0], err)
		if b.Explicit {
			return nil, fmt.Errorf("%w; fix --browser-cmd, or use --no-browser and open the printed address yourself", err)
		}
		fmt.Fprintf(stderr, "portcullis-cli: %v; open the address above yourself\n", err)
		return failed, nil
	}
	go func() {
		err := cmd.Wait()
		if err == nil {
			return // openers such as xdg-open return at once; keep waiting
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%s", exit.ProcessState)
		}
		err = fmt.Errorf("opening the browser: %s failed: %v", b, err)
		if !b.Explicit {
			fmt.Fprintf(stderr, "portcullis-cli: %v; open the address above yourself\n", err)
			return
		}
		failed <- fmt.Errorf("%w; fix --browser-cmd, or use --no-browser and open the printed address yourself", err)
	}()
	return failed, nil
}
