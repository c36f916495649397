package login

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/portcullis-proxy/portcullis/internal/cli/route"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// TestMain lets the test binary stand in for a browser: run with
// LOGIN_TEST_BROWSER set, it prints a line on stdout (which must end up on
// the CLI's stderr) and GETs its argument, following redirects, as a
// browser would.
//
// With LOGIN_TEST_ARGS set to a file, it writes its arguments there as a
// JSON list instead: what a browser command was handed, exactly.
func TestMain(m *testing.M) {
	if path := os.Getenv("LOGIN_TEST_ARGS"); path != "" {
		b, _ := json.Marshal(os.Args[1:])
		if err := os.WriteFile(path, b, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("LOGIN_TEST_BROWSER") != "" {
		fmt.Println("browser stand-in opening", os.Args[len(os.Args)-1])
		resp, err := http.Get(os.Args[len(os.Args)-1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("browser stand-in got %d %s\n", resp.StatusCode, bytes.TrimSpace(body))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// server hands out a sign-in URL that, like Portcullis after a sign-in,
// redirects to the loopback URI with the token.
func server(t *testing.T, token string) (func(context.Context, string) (*url.URL, error), *string) {
	t.Helper()
	var redirect string
	mux := http.NewServeMux()
	mux.HandleFunc("/sign_in", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to")+"?pomerium_jwt="+url.QueryEscape(token)+"&portcullis_renewal=portcullis-renewal.r", http.StatusFound)
	})
	srv := &http.Server{Handler: mux}
	ln := listen(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return func(ctx context.Context, r string) (*url.URL, error) {
		redirect = r
		return url.Parse("http://" + ln.Addr().String() + "/sign_in?to=" + url.QueryEscape(r))
	}, &redirect
}

func TestLoginWithBrowser(t *testing.T) {
	t.Setenv("LOGIN_TEST_BROWSER", "1")
	signIn, redirect := server(t, "the.jwt.token")
	var stderr logbuf.Buffer
	tok, err := Login(context.Background(), Options{
		SignInURL: signIn,
		Server:    "https://k8s.example.com",
		Browser:   &Browser{Argv: []string{os.Args[0]}, Explicit: true},
		Timeout:   30 * time.Second,
		Stderr:    &stderr,
	})
	if err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr.String())
	}
	if tok.Token != "the.jwt.token" {
		t.Errorf("got token %q, want the.jwt.token", tok.Token)
	}
	u, err := url.Parse(*redirect)
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || !strings.HasPrefix(u.Path, "/portcullis-cli/") || len(u.Path) < len("/portcullis-cli/")+32 {
		t.Errorf("redirect URI %q: want http://127.0.0.1:PORT/portcullis-cli/<random>", *redirect)
	}
	// The browser gets the page, and its output goes to stderr.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "browser stand-in got 200") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{
		"Signing in to https://k8s.example.com: opening your browser at\n\n    http://127.0.0.1:",
		"If it does not open, open that address yourself.",
		"Waiting up to 30s for the sign-in to finish...",
		"browser stand-in opening http://127.0.0.1:",
		"browser stand-in got 200",
		"You can close this tab",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestLoginWithoutBrowser(t *testing.T) {
	var stderr logbuf.Buffer
	signIn, redirect := server(t, "tok.en.x")
	done := make(chan struct{})
	var tok route.Grant
	var err error
	go func() {
		defer close(done)
		tok, err = Login(context.Background(), Options{SignInURL: signIn, Server: "https://k8s.example.com", Timeout: 30 * time.Second, Stderr: &stderr})
	}()
	// The person copies the address from the terminal.
	var addr string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, rest, ok := strings.Cut(stderr.String(), "open this address in a browser:\n\n    "); ok {
			addr, _, _ = strings.Cut(rest, "\n")
			break
		}
	}
	if addr == "" {
		t.Fatalf("no address printed:\n%s", stderr.String())
	}
	// Stray requests first: another path, then the right path without a token.
	if code := httpGet(t, strings.Replace(*redirect, "/portcullis-cli/", "/other/", 1)); code != http.StatusNotFound {
		t.Errorf("another path: got %d, want 404", code)
	}
	if code := httpGet(t, *redirect); code != http.StatusBadRequest {
		t.Errorf("no token: got %d, want 400", code)
	}
	if code := httpGet(t, addr); code != http.StatusOK {
		t.Errorf("sign-in: got %d, want 200", code)
	}
	<-done
	if err != nil || tok != (route.Grant{Token: "tok.en.x", Renewal: "portcullis-renewal.r"}) {
		t.Fatalf("got %+v, %v; want the token and the renewal credential", tok, err)
	}
}

func httpGet(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLoginFails(t *testing.T) {
	neverSignIn := func(ctx context.Context, r string) (*url.URL, error) {
		return url.Parse("https://localhost:8443/.pomerium/sign_in?x=1")
	}
	for _, tt := range []struct {
		name      string
		browser   *Browser
		timeout   time.Duration
		ctx       func() context.Context
		wantErr   string
		wantIs    error
		wantSaid  string
		quickerTh time.Duration
	}{
		{
			name:    "timeout",
			timeout: 300 * time.Millisecond,
			wantErr: "sign-in timed out after 300ms: the browser never came back to portcullis-cli with a credential; run the command again",
			wantIs:  ErrTimeout,
		},
		{
			name:      "explicit browser command fails",
			browser:   &Browser{Argv: []string{"false"}, Explicit: true},
			timeout:   time.Minute,
			wantErr:   "opening the browser: false failed: exit status 1; fix --browser-cmd, or use --no-browser",
			quickerTh: 10 * time.Second,
		},
		{
			name:      "explicit browser command missing",
			browser:   &Browser{Argv: []string{"/nonexistent/browser"}, Explicit: true},
			timeout:   time.Minute,
			wantErr:   `opening the browser with "/nonexistent/browser": fork/exec /nonexistent/browser: no such file or directory; fix --browser-cmd`,
			quickerTh: 10 * time.Second,
		},
		{
			name:     "default opener fails: warn, keep waiting",
			browser:  &Browser{Argv: []string{"false"}},
			timeout:  time.Second,
			wantIs:   ErrTimeout,
			wantSaid: "portcullis-cli: opening the browser: false failed: exit status 1; open the address above yourself",
		},
		{
			name:     "default opener missing: warn, keep waiting",
			browser:  &Browser{Argv: []string{"/nonexistent/xdg-open"}},
			timeout:  300 * time.Millisecond,
			wantIs:   ErrTimeout,
			wantSaid: "open the address above yourself",
		},
		{
			name:    "interrupted",
			timeout: time.Minute,
			ctx: func() context.Context {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
				return ctx
			},
			wantIs:    context.Canceled,
			quickerTh: 10 * time.Second,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			var stderr logbuf.Buffer
			start := time.Now()
			_, err := Login(ctx, Options{SignInURL: neverSignIn, Server: "https://k8s.example.com", Browser: tt.browser, Timeout: tt.timeout, Stderr: &stderr})
			if err == nil {
				t.Fatal("got no error")
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %q, want it to contain %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("got %v, want errors.Is %v", err, tt.wantIs)
			}
			if tt.wantSaid != "" && !strings.Contains(stderr.String(), tt.wantSaid) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantSaid, stderr.String())
			}
			if !strings.Contains(stderr.String(), "https://localhost:8443/.pomerium/sign_in?x=1") {
				t.Errorf("the address was not printed:\n%s", stderr.String())
			}
			if tt.quickerTh != 0 && time.Since(start) > tt.quickerTh {
				t.Errorf("took %s, want a prompt failure", time.Since(start))
			}
		})
	}
}

func TestLoginServerRefuses(t *testing.T) {
	_, err := Login(context.Background(), Options{
		SignInURL: func(context.Context, string) (*url.URL, error) {
			return nil, errors.New("asking for a sign-in URL: 501")
		},
		Timeout: time.Minute,
	})
	if err == nil || !strings.Contains(err.Error(), "501") {
		t.Errorf("got %v, want the server's error", err)
	}
}

// ChooseBrowser is chooseBrowser for this system.
func TestChooseBrowserHere(t *testing.T) {
	if got, want := ChooseBrowser("", "", false), chooseBrowser(runtime.GOOS, "", "", false); !cmp.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestChooseBrowser(t *testing.T) {
	for _, tt := range []struct {
		name       string
		browserCmd string
		env        string
		noBrowser  bool
		want       *Browser
	}{
		{"default", "", "", false, &Browser{Argv: []string{"xdg-open"}}},
		{"$BROWSER", "", "firefox", false, &Browser{Argv: []string{"firefox"}}},
		{"$BROWSER list: the first", "", "w3m %s:lynx", false, &Browser{Argv: []string{"w3m", "%s"}}},
		{"$BROWSER with arguments", "", "chromium --new-window", false, &Browser{Argv: []string{"chromium", "--new-window"}}},
		{"$BROWSER blank entries skipped", "", " ::lynx", false, &Browser{Argv: []string{"lynx"}}},
		{"--browser-cmd wins, one program even with spaces", "/opt/my browser/open", "firefox", false, &Browser{Argv: []string{"/opt/my browser/open"}, Explicit: true}},
		{"--no-browser wins over all", "/usr/bin/open", "firefox", true, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := chooseBrowser("linux", tt.browserCmd, tt.env, tt.noBrowser)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// Each system's own opener is the default; $BROWSER is a list in that
// system's way.
func TestChooseBrowserPerSystem(t *testing.T) {
	for _, tt := range []struct {
		goos, env string
		want      []string
	}{
		{"linux", "", []string{"xdg-open"}},
		{"freebsd", "", []string{"xdg-open"}},
		{"darwin", "", []string{"open"}},
		{"windows", "", []string{"rundll32", "url.dll,FileProtocolHandler"}},
		{"linux", "w3m %s:lynx", []string{"w3m", "%s"}},
		{"darwin", "/Applications/Firefox.app/Contents/MacOS/firefox:open", []string{"/Applications/Firefox.app/Contents/MacOS/firefox"}},
		{"windows", `C:\Tools\firefox.exe --new-window;msedge`, []string{`C:\Tools\firefox.exe`, "--new-window"}},
	} {
		got := chooseBrowser(tt.goos, "", tt.env, false)
		if got == nil || got.Explicit || !slices.Equal(got.Argv, tt.want) {
			t.Errorf("%s, $BROWSER=%q: got %+v, want %q", tt.goos, tt.env, got, tt.want)
		}
		if got := chooseBrowser(tt.goos, "my-browser", tt.env, false); !got.Explicit || !slices.Equal(got.Argv, []string{"my-browser"}) {
			t.Errorf("%s: --browser-cmd gave %+v", tt.goos, got)
		}
		if got := chooseBrowser(tt.goos, "my-browser", tt.env, true); got != nil {
			t.Errorf("%s: --no-browser gave %+v", tt.goos, got)
		}
	}
}

// URLs that a shell would cut into commands: cmd.exe at & and ^, POSIX
// shells at ; | & and in $(...) and backquotes.
var hostileURLs = []string{
	"https://k8s.example.com/sign_in?a=1&calc.exe",
	"https://k8s.example.com/sign_in?a=1&&calc.exe&b=2",
	"https://k8s.example.com/sign_in?a=1^&calc.exe|whoami",
	"https://k8s.example.com/sign_in?a=1;touch${IFS}/tmp/pwned",
	"https://k8s.example.com/sign_in?a=$(touch /tmp/pwned)&b=`id`",
	`https://k8s.example.com/sign_in?a="&calc.exe&"`,
	"https://k8s.example.com/sign_in?a=%TEMP%&b=!x!",
}

// On every system the default opener gets the URL as its last argument,
// whole, and is no shell: nothing can read the URL as commands.
func TestSystemOpenerGetsTheURLWhole(t *testing.T) {
	shells := []string{"sh", "bash", "zsh", "dash", "cmd", "cmd.exe", "powershell", "powershell.exe", "pwsh", "pwsh.exe", "start", "env"}
	for _, goos := range []string{"linux", "darwin", "windows", "freebsd", "openbsd", "netbsd"} {
		b := chooseBrowser(goos, "", "", false)
		for _, arg := range b.Argv {
			if slices.Contains(shells, strings.ToLower(filepath.Base(arg))) || strings.EqualFold(arg, "/c") {
				t.Errorf("%s: the opener %q runs a shell", goos, b.Argv)
			}
		}
		for _, u := range hostileURLs {
			argv := b.command(u)
			if want := append(slices.Clone(b.Argv), u); !slices.Equal(argv, want) {
				t.Errorf("%s: command(%q) = %q, want %q", goos, u, argv, want)
			}
		}
	}
}

// Whatever the URL holds, the browser command is handed exactly one
// argument, the URL, and no shell ran: the test binary stands in for the
// browser and writes down its arguments.
func TestBrowserGetsHostileURLAsOneArgument(t *testing.T) {
	for _, u := range hostileURLs {
		path := filepath.Join(t.TempDir(), "args.json")
		t.Setenv("LOGIN_TEST_ARGS", path)
		var out logbuf.Buffer
		failed, err := (&Browser{Argv: []string{os.Args[0]}, Explicit: true}).Open(u, &out)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		deadline := time.After(10 * time.Second)
		for got == nil {
			if b, err := os.ReadFile(path); err == nil && json.Valid(b) {
				if err := json.Unmarshal(b, &got); err != nil {
					t.Fatal(err)
				}
				break
			}
			select {
			case err := <-failed:
				t.Fatalf("%s\n%s", err, out.String())
			case <-deadline:
				t.Fatalf("the browser stand-in never ran for %q\n%s", u, out.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
		if !slices.Equal(got, []string{u}) {
			t.Errorf("the browser got %q, want the one argument %q", got, u)
		}
	}
}

// Only a web address is handed to an opener: on Windows and macOS the
// openers also start programs and open files.
func TestOpenRefusesWhatIsNotAWebAddress(t *testing.T) {
	for _, u := range []string{
		`C:\Windows\System32\calc.exe`,
		"file:///etc/passwd",
		"javascript:alert(1)",
		"-a Calculator",
		"https:///no-host",
		"",
	} {
		var out logbuf.Buffer
		if _, err := (&Browser{Argv: []string{"true"}}).Open(u, &out); err == nil || !strings.Contains(err.Error(), "is not a web address") {
			t.Errorf("Open(%q): got %v, want a refusal", u, err)
		}
	}
}

// The URL is one argument, placed at %s or appended, never through a shell.
func TestBrowserArguments(t *testing.T) {
	const u = "https://localhost:8443/sign_in?a=1&b=$(touch /tmp/x)"
	for _, tt := range []struct {
		argv []string
		want string
	}{
		{[]string{"echo"}, u},
		{[]string{"echo", "--url=%s", "last"}, "--url=" + u + " last"},
	} {
		var out logbuf.Buffer
		failed, err := (&Browser{Argv: tt.argv, Explicit: true}).Open(u, &out)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.After(10 * time.Second)
		for strings.TrimSpace(out.String()) == "" {
			select {
			case err := <-failed:
				t.Fatal(err)
			case <-deadline:
				t.Fatal("no output")
			case <-time.After(10 * time.Millisecond):
			}
		}
		if got := strings.TrimSpace(out.String()); got != tt.want {
			t.Errorf("%v: got %q, want %q", tt.argv, got, tt.want)
		}
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
