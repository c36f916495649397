package cache

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testURL = "https://k8s.example.com"

func entry(url, token string) Entry {
	return Entry{
		URL:      url,
		Token:    token,
		Expiry:   time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC),
		Obtained: time.Date(2026, 11, 27, 16, 0, 0, 0, time.UTC),
	}
}

func TestStoreLoad(t *testing.T) {
	c := New(filepath.Join(t.TempDir(), "portcullis-cli", "exec-credential"))
	if e, err := c.Load(testURL); e != nil || err != nil {
		t.Fatalf("empty cache: got %+v, %v, want nil, nil", e, err)
	}
	want := entry(testURL, "a.b.c")
	if err := c.Store(want); err != nil {
		t.Fatal(err)
	}
	got, err := c.Load(testURL)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Another URL has its own file.
	if e, err := c.Load(testURL + ":8443"); e != nil || err != nil {
		t.Errorf("other URL: got %+v, %v, want nil, nil", e, err)
	}
}

// The file name is the SHA-256 of the URL, as the package documents.
func TestPathIsSHA256OfURL(t *testing.T) {
	dir := t.TempDir()
	sum := sha256.Sum256([]byte(testURL))
	if got, want := New(dir).Path(testURL), filepath.Join(dir, hex.EncodeToString(sum[:])+".json"); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/tmp/xdg-cache")
	got, err := DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	// XDG_CACHE_HOME counts on Linux and the BSDs; macOS and Windows have
	// a cache directory of their own (~/Library/Caches, %LocalAppData%).
	base := "/tmp/xdg-cache"
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		if base, err = os.UserCacheDir(); err != nil {
			t.Fatal(err)
		}
	}
	if want := filepath.Join(base, "portcullis-cli", "exec-credential"); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// Readers racing writers see a whole old entry or a whole new one, never
// a partial file; no temporary file is left behind.
func TestStoreIsAtomic(t *testing.T) {
	c := New(t.TempDir())
	tokens := map[string]bool{}
	for i := range 4 {
		// Large entries, so a non-atomic write would be seen half-done.
		tok := strings.Repeat(fmt.Sprint(i), 64<<10)
		tokens[tok] = true
	}
	if err := c.Store(entry(testURL, strings.Repeat("0", 64<<10))); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var reads atomic.Int64
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				e, err := c.Load(testURL)
				if err != nil || e == nil || !tokens[e.Token] {
					t.Errorf("a reader saw %v (entry present: %v): a partial write", err, e != nil)
					return
				}
				reads.Add(1)
			}
		})
	}
	var writers sync.WaitGroup
	for tok := range tokens {
		writers.Go(func() {
			for range 5 {
				if err := c.Store(entry(testURL, tok)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	if reads.Load() == 0 {
		t.Error("no read happened during the writes")
	}
	names, _ := filepath.Glob(filepath.Join(c.dir, "*"))
	if len(names) != 1 || names[0] != c.Path(testURL) {
		t.Errorf("files left: %v, want only the entry", names)
	}
}

func TestLoadCorrupt(t *testing.T) {
	c := New(t.TempDir())
	if err := c.Store(entry(testURL, "a.b.c")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		content string
	}{
		{"truncated", `{"url":"https://k8s.example.com","tok`},
		{"not JSON", "garbage"},
		{"no token", `{"url":"https://k8s.example.com"}`},
		{"another URL's entry", `{"url":"https://other.example.com","token":"a.b.c"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(c.Path(testURL), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			e, err := c.Load(testURL)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %+v, %v, want ErrCorrupt", e, err)
			}
		})
	}
	// A corrupt entry is overwritten by the next Store.
	if err := c.Store(entry(testURL, "g.h.i")); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Load(testURL); err != nil || e.Token != "g.h.i" {
		t.Errorf("after overwriting: got %+v, %v", e, err)
	}
}

func TestDelete(t *testing.T) {
	c := New(t.TempDir())
	urls := []string{testURL, "https://a.example.com", "https://b.example.com:8443"}
	for _, u := range urls {
		if err := c.Store(entry(u, "a.b.c")); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Delete(urls[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(urls[0]); err != nil {
		t.Errorf("deleting again: %v, want no error", err)
	}
	if e, _ := c.Load(urls[0]); e != nil {
		t.Errorf("deleted entry still loads: %+v", e)
	}
	if e, _ := c.Load(urls[1]); e == nil {
		t.Errorf("Delete removed another URL's entry")
	}
	unlock, err := c.Lock(context.Background(), urls[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	n, err := c.DeleteAll()
	if err != nil || n != 2 {
		t.Errorf("DeleteAll: got %d, %v, want 2 entries", n, err)
	}
	for _, u := range urls {
		if e, _ := c.Load(u); e != nil {
			t.Errorf("%s still cached after DeleteAll", u)
		}
	}
	if n, err := New(filepath.Join(t.TempDir(), "missing")).DeleteAll(); n != 0 || err != nil {
		t.Errorf("DeleteAll of a missing directory: got %d, %v, want 0, nil", n, err)
	}
}

// Goroutines with their own opens exclude one another (flock and
// LockFileEx belong to the open file), and each sees the previous holder's write.
func TestLockExcludes(t *testing.T) {
	c := New(t.TempDir())
	var holders, maxHolders atomic.Int32
	var waited atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			unlock, err := c.Lock(context.Background(), testURL, func() { waited.Add(1) })
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			n := holders.Add(1)
			if n > maxHolders.Load() {
				maxHolders.Store(n)
			}
			time.Sleep(20 * time.Millisecond)
			holders.Add(-1)
		})
	}
	wg.Wait()
	if got := maxHolders.Load(); got != 1 {
		t.Errorf("got %d holders at once, want 1", got)
	}
	if waited.Load() == 0 {
		t.Errorf("no goroutine was told it waits")
	}
	// Locks for different URLs are independent.
	u1, err := c.Lock(context.Background(), testURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u1()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u2, err := c.Lock(ctx, "https://other.example.com", nil)
	if err != nil {
		t.Fatalf("another URL's lock: %v", err)
	}
	u2()
}

func TestLockGivesUpWithContext(t *testing.T) {
	c := New(t.TempDir())
	unlock, err := c.Lock(context.Background(), testURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Lock(ctx, testURL, nil); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another portcullis-cli") {
		t.Errorf("got %v, want a deadline error saying what it waited for", err)
	}
}

// Another process waits for the lock and gets it once it is released, as
// a second kubectl's plugin does while the first signs in.
func TestLockAcrossProcesses(t *testing.T) {
	if dir := os.Getenv("PORTCULLIS_CACHE_LOCK_HELPER"); dir != "" {
		lockHelper(dir)
		return
	}
	dir := t.TempDir()
	c := New(dir)
	unlock, err := c.Lock(context.Background(), testURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLockAcrossProcesses$")
	cmd.Env = append(os.Environ(), "PORTCULLIS_CACHE_LOCK_HELPER="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "waiting" {
		t.Fatalf("helper: got %q, want it to wait", lines.Text())
	}
	time.Sleep(300 * time.Millisecond) // it keeps waiting while the lock is held
	if err := c.Store(entry(testURL, "from.the.holder")); err != nil {
		t.Fatal(err)
	}
	unlock()
	if !lines.Scan() || lines.Text() != "locked from.the.holder" {
		t.Fatalf("helper: got %q, want it to take the lock and read the holder's entry", lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

func lockHelper(dir string) {
	c := New(dir)
	unlock, err := c.Lock(context.Background(), testURL, func() { fmt.Println("waiting") })
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	defer unlock()
	e, err := c.Load(testURL)
	if err != nil || e == nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("locked", e.Token)
}
