//go:build unix || windows

package cache

import (
	"context"
	"fmt"
	"os"
	"time"
)

// lockPoll is how often a waiting process tries the lock again. Neither
// flock(2) nor LockFileEx can wait on a context, so waiting is a
// non-blocking try in a loop; a tenth of a second is nothing next to a
// browser sign-in.
const lockPoll = 100 * time.Millisecond

// Lock takes the exclusive lock for url, waiting until it is free or ctx
// ends. waiting, if not nil, is called once if the lock is held by
// someone else, so the caller can tell the person why nothing happens.
// The returned function releases the lock; the system also releases it
// if the process dies, so a crashed sign-in never blocks the next.
//
// The lock is on a file of its own (not the entry, which Store replaces
// by rename): flock(2) on Unix, LockFileEx on Windows. Both belong to an
// open file, so two opens in one process exclude each other as two
// processes do.
func (c *Cache) Lock(ctx context.Context, url string, waiting func()) (unlock func(), err error) {
	if err := c.ensureDir(); err != nil {
		return nil, err
	}
	path := c.lockPath(url)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking credential cache: %w", err)
	}
	for {
		held, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking credential cache %s: %w", path, err)
		}
		if !held {
			break
		}
		if waiting != nil {
			waiting()
			waiting = nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another portcullis-cli to finish signing in: %w", context.Cause(ctx))
		case <-time.After(lockPoll):
		}
	}
	return func() {
		unlockFile(f)
		f.Close()
	}, nil
}
