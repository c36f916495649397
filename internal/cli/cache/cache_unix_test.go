//go:build unix

package cache

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The directory is 0700 and the file 0600 whatever the umask, and a
// directory left wider by something else is tightened.
func TestPermissions(t *testing.T) {
	old := syscall.Umask(0) // the widest umask: nothing masked
	defer syscall.Umask(old)
	base := t.TempDir()
	c := New(filepath.Join(base, "portcullis-cli", "exec-credential"))
	if err := c.Store(entry(testURL, "a.b.c")); err != nil {
		t.Fatal(err)
	}
	mode := func(p string) os.FileMode {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	for _, p := range []string{c.dir, filepath.Dir(c.dir)} {
		if got := mode(p); got != 0o700 {
			t.Errorf("%s: got mode %v, want 0700", p, got)
		}
	}
	if got := mode(c.Path(testURL)); got != 0o600 {
		t.Errorf("cache file: got mode %v, want 0600", got)
	}
	unlock, err := c.Lock(context.Background(), testURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if got := mode(c.lockPath(testURL)); got != 0o600 {
		t.Errorf("lock file: got mode %v, want 0600", got)
	}

	if err := os.Chmod(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(entry(testURL, "d.e.f")); err != nil {
		t.Fatal(err)
	}
	if got := mode(c.dir); got != 0o700 {
		t.Errorf("a directory found 0755: got mode %v after Store, want 0700", got)
	}
}
