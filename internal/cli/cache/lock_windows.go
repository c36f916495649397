//go:build windows

package cache

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// allBytes locks the whole file, whatever its length (the lock file is
// empty: the range may lie past its end).
const allBytes = ^uint32(0)

// tryLock takes LockFileEx's exclusive lock on f without waiting; held
// reports that another handle has it. Windows releases the lock when the
// handle is closed, or when the process ends.
func tryLock(f *os.File) (held bool, err error) {
	ol := new(windows.Overlapped) // offset 0
	err = windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, allBytes, allBytes, ol)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, windows.ERROR_LOCK_VIOLATION):
		return true, nil
	}
	return false, err
}

func unlockFile(f *os.File) {
	windows.UnlockFileEx(windows.Handle(f.Fd()), 0, allBytes, allBytes, new(windows.Overlapped))
}
