//go:build windows

package cache

import (
	"errors"
	"math/rand/v2"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/windows"
)

// retryFor bounds how long an open or a rename is retried while another
// process has the entry open: a reader holds it for the microseconds of a
// read, so this is only ever reached by a real failure.
const retryFor = 2 * time.Second

// Windows refuses to replace a file that another process has open, and to
// open a file while a rename replaces it, where Unix lets both go ahead:
// with kubectl running several plugins at once, one's Store and another's
// Load meet. Both are retried for a moment, as the go command does with
// its own files (cmd/go/internal/robustio).
func openEntry(path string) (*os.File, error) {
	var f *os.File
	err := retry(func() (err error) {
		f, err = os.Open(path)
		return err
	})
	return f, err
}

func replaceFile(from, to string) error {
	return retry(func() error { return os.Rename(from, to) })
}

func retry(op func() error) error {
	deadline := time.Now().Add(retryFor)
	for {
		err := op()
		if err == nil || !transient(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond + rand.N(5*time.Millisecond))
	}
}

// transient reports the errors Windows gives while another process has
// the file open.
func transient(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case windows.ERROR_SHARING_VIOLATION, windows.ERROR_ACCESS_DENIED, windows.ERROR_LOCK_VIOLATION:
		return true
	}
	return false
}
