package login

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
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
func TestMain(m *testing.M) {
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
		http.Redirect(w, r, r.URL.Query().Get("to")+"?pomerium_jwt="+url.QueryEscape(token), http.StatusFound)
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
	if tok != "the.jwt.token" {
		t.Errorf("got token %q, want the.jwt.token", tok)
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
	var tok string
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
	if err != nil || tok != "tok.en.x" {
		t.Fatalf("got %q, %v", tok, err)
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
			got := ChooseBrowser(tt.browserCmd, tt.env, tt.noBrowser)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
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
