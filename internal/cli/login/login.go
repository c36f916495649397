package login

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/portcullis-proxy/portcullis/internal/cli/route"
	"html/template"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"
)

// DefaultTimeout is how long Login waits for the browser by default.
const DefaultTimeout = 5 * time.Minute

// Options configure one sign-in.
type Options struct {
	// SignInURL asks the server for the address to open, given the
	// loopback URI the token must come back to (route.Client.LoginURL).
	SignInURL func(ctx context.Context, redirectURI string) (*url.URL, error)
	// Server is the route's URL, for the messages.
	Server string
	// Browser opens the sign-in page; nil prints the URL only.
	Browser *Browser
	// Timeout bounds the wait for the browser (DefaultTimeout if zero).
	Timeout time.Duration
	// Stderr receives every message for the person.
	Stderr io.Writer
}

// ErrTimeout is returned when no sign-in came back in time.
var ErrTimeout = errors.New("sign-in timed out")

// Login runs one browser sign-in and returns what the server sent: the
// raw JWT, and the renewal credential if the server gives one. That
// credential came through the browser, in a URL its history keeps: the
// caller spends it at once (route.Client.Renew).
func Login(ctx context.Context, opts Options) (route.Grant, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	stderr := opts.Stderr
	switch stderr.(type) {
	case nil:
		stderr = io.Discard
	case *os.File:
		// Handed to the browser command as it is: a pipe in between
		// would break when portcullis-cli exits before the browser does.
	default:
		// Shared by this goroutine and the browser command's output.
		stderr = &syncWriter{w: stderr}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return route.Grant{}, fmt.Errorf("signing in: listening on the loopback interface for the browser: %w", err)
	}
	defer ln.Close()
	path := "/portcullis-cli/" + randomHex(16)
	redirect := (&url.URL{Scheme: "http", Host: ln.Addr().String(), Path: path}).String()

	signIn, err := opts.SignInURL(ctx, redirect)
	if err != nil {
		return route.Grant{}, err
	}

	tokens := make(chan route.Grant, 1)
	srv := &http.Server{
		Handler:           callback(path, tokens),
		ReadHeaderTimeout: 10 * time.Second,
		// The browser's other requests (favicon, keep-alive) must not
		// hold the CLI up once the token is in.
		IdleTimeout: time.Second,
		ErrorLog:    log.New(io.Discard, "", 0),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	defer func() {
		// Let the "you can close this tab" page reach the browser.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-served
	}()

	var browserFailed <-chan error
	if opts.Browser == nil {
		fmt.Fprintf(stderr, "To sign in to %s, open this address in a browser:\n\n    %s\n\n", opts.Server, signIn)
	} else {
		fmt.Fprintf(stderr, "Signing in to %s: opening your browser at\n\n    %s\n\nIf it does not open, open that address yourself.\n", opts.Server, signIn)
		browserFailed, err = opts.Browser.Open(signIn.String(), stderr)
		if err != nil {
			return route.Grant{}, err
		}
	}
	fmt.Fprintf(stderr, "Waiting up to %s for the sign-in to finish...\n", timeout)

	wait := time.NewTimer(timeout)
	defer wait.Stop()
	for {
		select {
		case tok := <-tokens:
			return tok, nil
		case err := <-browserFailed:
			return route.Grant{}, err
		case <-wait.C:
			return route.Grant{}, fmt.Errorf("%w after %s: the browser never came back to portcullis-cli with a credential; "+
				"run the command again and finish signing in in the browser (or open the printed address yourself)", ErrTimeout, timeout)
		case <-ctx.Done():
			return route.Grant{}, fmt.Errorf("signing in: %w", context.Cause(ctx))
		}
	}
}

// callback answers the browser on the loopback listener.
func callback(path string, tokens chan<- route.Grant) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		tok := r.URL.Query().Get("pomerium_jwt")
		if r.Method != http.MethodGet || tok == "" {
			w.WriteHeader(http.StatusBadRequest)
			page.Execute(w, pageData{"Sign-in failed", "The sign-in did not return a credential. Go back to your terminal and try again."})
			return
		}
		select {
		case tokens <- route.Grant{Token: tok, Renewal: r.URL.Query().Get("portcullis_renewal")}:
			page.Execute(w, pageData{"Signed in", "You are signed in to Portcullis. You can close this tab and go back to your terminal."})
		default:
			// A second delivery (a reload of the page): the first won.
			page.Execute(w, pageData{"Already signed in", "portcullis-cli already has your credential. You can close this tab."})
		}
	})
}

type pageData struct{ Title, Message string }

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} · Portcullis</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

// syncWriter serialises writes to a writer that is not safe for
// concurrent use.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
