package kube

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TokenSource gives the bearer token of the service account Portcullis
// uses towards kube-apiserver. Token is called once per proxied request and
// must be cheap and safe for concurrent use.
type TokenSource interface {
	Token() (string, error)
}

// StaticToken returns a TokenSource that always gives tok, with
// surrounding whitespace trimmed: the route key
// kubernetes_service_account_token. If tok is empty or is not a valid
// bearer token, every call to Token returns an error instead, so a request
// can never go upstream with no service account token or a broken one.
func StaticToken(tok string) TokenSource {
	tok = strings.TrimSpace(tok)
	if err := validateToken(tok); err != nil {
		return staticToken{err: fmt.Errorf("service account token (kubernetes_service_account_token): %w", err)}
	}
	return staticToken{tok: tok}
}

type staticToken struct {
	tok string
	err error
}

func (s staticToken) Token() (string, error) { return s.tok, s.err }

// tokenRecheckInterval is how often at most FileToken looks at its file.
// The kubelet refreshes a projected token once 80% of its lifetime (at
// least an hour, usually) has passed and the API server accepts the old one
// until it expires, so a second of delay costs nothing, while a stat per
// request would.
const tokenRecheckInterval = time.Second

// maxTokenSize bounds what FileToken reads: a JWT is a few kilobytes, so a
// bigger file is a mistake (a wrong path), not a token.
const maxTokenSize = 1 << 20

// FileToken is a TokenSource read from a file (the route key
// kubernetes_service_account_token_file), typically a projected
// service-account token, which the kubelet rotates.
//
// The token is cached. At most once per second a call to Token stats the
// path, following symlinks, and reads the file again if its inode, size or
// modification time changed. That catches both a plain rewrite and the
// kubelet's update of a projected volume, which writes a new timestamped
// directory and atomically swaps the ..data symlink to it, so that "token"
// (a symlink to ..data/token) resolves to a new inode. If the file cannot
// be read, or holds no valid token, FileToken keeps giving the last good
// token and logs one warning per streak of failures.
//
// Token is safe for concurrent use and takes no lock on the fast path: the
// state is an immutable value behind an atomic.Pointer, and the one caller
// that does the per-second check does not make the others wait.
type FileToken struct {
	path   string
	logger *slog.Logger

	cur atomic.Pointer[fileTokenState]

	// mu is held by the goroutine checking the file; others do not wait
	// for it (TryLock) but serve the cached token.
	mu sync.Mutex
	// failing is true after a failed re-read was logged, until a re-read
	// succeeds. Guarded by mu.
	failing bool
}

// fileTokenState is never modified once stored in FileToken.cur.
type fileTokenState struct {
	token   string
	info    os.FileInfo // the file the token was read from, as stat'ed just before reading
	checked time.Time   // when the path was last stat'ed; has a monotonic reading
}

// NewFileToken reads the token file at path and returns a FileToken that
// follows its changes. It fails if the file is missing, unreadable, empty
// or does not hold a valid bearer token; the error names the path and what
// to do. A nil logger discards warnings.
func NewFileToken(path string, logger *slog.Logger) (*FileToken, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := time.Now()
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading the service account token: %w: "+
			"set kubernetes_service_account_token_file to a readable file holding the token "+
			"(in a pod, the projected token is at /var/run/secrets/kubernetes.io/serviceaccount/token)", err)
	}
	tok, err := readToken(path)
	var bad *badTokenFileError
	switch {
	case errors.As(err, &bad):
		return nil, fmt.Errorf("reading the service account token: %w: "+
			"put the token of the service account Portcullis acts as in it, and nothing else "+
			"(for example the output of \"kubectl create token SERVICE-ACCOUNT\")", err)
	case err != nil:
		return nil, fmt.Errorf("reading the service account token: %w: "+
			"make the file readable by Portcullis, or set kubernetes_service_account_token_file to one that is", err)
	}
	f := &FileToken{path: path, logger: logger}
	f.cur.Store(&fileTokenState{token: tok, info: info, checked: now})
	return f, nil
}

// Token returns the current token. After the first successful read it
// never fails: a failed re-read keeps the last good token, which the API
// server accepts until it expires.
func (f *FileToken) Token() (string, error) {
	s := f.cur.Load()
	if time.Since(s.checked) < tokenRecheckInterval {
		return s.token, nil
	}
	if !f.mu.TryLock() {
		// Another goroutine is looking at the file right now.
		return s.token, nil
	}
	defer f.mu.Unlock()
	return f.recheck().token, nil
}

// recheck stats the file and re-reads it if it changed. f.mu must be held.
func (f *FileToken) recheck() *fileTokenState {
	s := f.cur.Load()
	if time.Since(s.checked) < tokenRecheckInterval {
		return s // checked while we were getting the lock
	}
	now := time.Now()
	// os.Stat follows symlinks, so a swapped ..data link shows as a
	// different file. The stat is taken before the read: if the file
	// changes while being read, the next check sees a difference again.
	info, err := os.Stat(f.path)
	if err == nil && sameFile(info, s.info) {
		next := &fileTokenState{token: s.token, info: s.info, checked: now}
		f.cur.Store(next)
		f.recovered()
		return next
	}
	var tok string
	if err == nil {
		tok, err = readToken(f.path)
	}
	if err != nil {
		// Keep the last good token and the file info it came from, so the
		// file is read again on the next check.
		next := &fileTokenState{token: s.token, info: s.info, checked: now}
		f.cur.Store(next)
		if !f.failing {
			f.failing = true
			f.logger.Warn("re-reading the service account token failed; still using the last token read",
				"path", f.path, "error", err)
		}
		return next
	}
	next := &fileTokenState{token: tok, info: info, checked: now}
	f.cur.Store(next)
	f.recovered()
	if tok != s.token {
		f.logger.Info("service account token changed on disk; using the new one", "path", f.path)
	}
	return next
}

// recovered ends a failure streak. f.mu must be held.
func (f *FileToken) recovered() {
	if f.failing {
		f.failing = false
		f.logger.Info("service account token file is readable again", "path", f.path)
	}
}

// sameFile reports whether a and b describe the same, unchanged file:
// same device and inode (os.SameFile), size and modification time.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// readToken reads the token in the file at path, trimmed of surrounding
// whitespace (editors and "echo" add a newline). Its errors name the path
// and never include the file's contents.
func readToken(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxTokenSize+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxTokenSize {
		return "", &badTokenFileError{path, fmt.Errorf("larger than %d bytes: it is not a token", maxTokenSize)}
	}
	tok := strings.TrimSpace(string(b))
	if err := validateToken(tok); err != nil {
		return "", &badTokenFileError{path, err}
	}
	return tok, nil
}

// badTokenFileError is readToken's error for a file that could be read
// but does not hold a token, as opposed to one that could not be read.
type badTokenFileError struct {
	path string
	err  error
}

func (e *badTokenFileError) Error() string { return e.path + ": " + e.err.Error() }
func (e *badTokenFileError) Unwrap() error { return e.err }

// CheckToken reports what makes tok unusable as the service account's
// bearer token (kubernetes_service_account_token), or nil. Its errors never
// include the token.
func CheckToken(tok string) error { return validateToken(tok) }

// errEmptyToken is validateToken's error for an empty token.
var errEmptyToken = errors.New("the token is empty")

// validateToken accepts a bearer token of visible ASCII characters, which
// is what a JWT, or any token Kubernetes issues, is made of; anything else
// could not be sent in an Authorization header unchanged. Its errors never
// include the token.
func validateToken(tok string) error {
	if tok == "" {
		return errEmptyToken
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("the token has a space, control or non-ASCII character at byte %d", i)
		}
	}
	return nil
}
