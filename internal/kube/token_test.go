package kube

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// waitRecheck is how long a test waits for FileToken to look at its file
// again.
const waitRecheck = tokenRecheckInterval + 150*time.Millisecond

func TestStaticToken(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "token", in: "abc.def.ghi", want: "abc.def.ghi"},
		{name: "trimmed", in: " abc.def.ghi\n", want: "abc.def.ghi"},
		{name: "empty", in: "", wantErr: "kubernetes_service_account_token): the token is empty"},
		{name: "blank", in: " \n", wantErr: "the token is empty"},
		{name: "inner newline", in: "secret1\nsecret2", wantErr: "character at byte 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := StaticToken(tt.in).Token()
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("Token() = %q, %v; want %q, nil", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Token() = %q, %v; want an error containing %q", got, err, tt.wantErr)
			}
			if got != "" {
				t.Errorf("Token() gave %q with its error, want \"\"", got)
			}
			if strings.Contains(err.Error(), "secret1") || strings.Contains(err.Error(), "secret2") {
				t.Errorf("error %q quotes the token", err)
			}
		})
	}
}

func TestNewFileTokenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		path string
		want []string // substrings of the error
	}{
		{
			name: "missing",
			path: filepath.Join(dir, "missing"),
			want: []string{filepath.Join(dir, "missing"), "no such file", "set kubernetes_service_account_token_file"},
		},
		{
			name: "empty",
			path: write("empty", ""),
			want: []string{filepath.Join(dir, "empty"), "the token is empty", "kubectl create token"},
		},
		{
			name: "blank",
			path: write("blank", " \n\t\n"),
			want: []string{filepath.Join(dir, "blank"), "the token is empty"},
		},
		{
			name: "two lines",
			path: write("two", "secret-one\nsecret-two\n"),
			want: []string{filepath.Join(dir, "two"), "character at byte 10", "and nothing else"},
		},
		{
			// Opens, then fails to read: the branch an unreadable file
			// takes too (which a test running as root cannot make).
			name: "directory",
			path: dir,
			want: []string{dir, "is a directory", "make the file readable"},
		},
		{
			name: "too large",
			path: write("large", strings.Repeat("a", maxTokenSize+1)),
			want: []string{filepath.Join(dir, "large"), "larger than"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft, err := NewFileToken(tt.path, nil)
			if err == nil {
				t.Fatalf("NewFileToken(%q) = %v, nil; want an error", tt.path, ft)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret-") {
				t.Errorf("error %q quotes the file's contents", err)
			}
		})
	}
}

func TestFileTokenTrims(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	writeFile(t, p, "  token-a\n")
	ft, err := NewFileToken(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ft.Token(); got != "token-a" || err != nil {
		t.Errorf("Token() = %q, %v; want %q, nil", got, err, "token-a")
	}
}

// TestFileTokenCachesWithinInterval checks that a request does not read the
// file: until the interval has passed, a changed file is not looked at.
func TestFileTokenCachesWithinInterval(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	writeFile(t, p, "token-a")
	ft, err := NewFileToken(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Pretend the file was just checked, however slow this machine is.
	s := ft.cur.Load()
	ft.cur.Store(&fileTokenState{token: s.token, info: s.info, checked: time.Now().Add(time.Hour)})
	writeFile(t, p, "token-b")
	for range 100 {
		if got, _ := ft.Token(); got != "token-a" {
			t.Fatalf("Token() = %q within the interval, want the cached %q", got, "token-a")
		}
	}
}

func TestFileTokenRotation(t *testing.T) {
	tests := []struct {
		name string
		// setup writes token into dir and returns the path to give
		// NewFileToken; rotate replaces it with token.
		setup  func(t testing.TB, dir, token string) string
		rotate func(t testing.TB, dir, token string)
	}{
		{
			name: "plain rewrite",
			setup: func(t testing.TB, dir, token string) string {
				writeFile(t, filepath.Join(dir, "token"), token)
				return filepath.Join(dir, "token")
			},
			rotate: func(t testing.TB, dir, token string) {
				writeFile(t, filepath.Join(dir, "token"), token)
			},
		},
		{
			name: "rename over",
			setup: func(t testing.TB, dir, token string) string {
				writeFile(t, filepath.Join(dir, "token"), token)
				return filepath.Join(dir, "token")
			},
			rotate: func(t testing.TB, dir, token string) {
				renameOver(t, filepath.Join(dir, "token"), token)
			},
		},
		{
			name:   "kubelet ..data symlink swap",
			setup:  setupProjected,
			rotate: swapProjected,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			// Same length, so a size check alone would miss the change.
			const a, b = "token-aaaa", "token-bbbb"
			ft, err := NewFileToken(tt.setup(t, dir, a), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := ft.Token(); got != a || err != nil {
				t.Fatalf("Token() = %q, %v; want %q, nil", got, err, a)
			}
			tt.rotate(t, dir, b)
			time.Sleep(waitRecheck)
			if got, err := ft.Token(); got != b || err != nil {
				t.Fatalf("Token() after rotation = %q, %v; want %q, nil", got, err, b)
			}
			tt.rotate(t, dir, a)
			time.Sleep(waitRecheck)
			if got, err := ft.Token(); got != a || err != nil {
				t.Fatalf("Token() after the second rotation = %q, %v; want %q, nil", got, err, a)
			}
		})
	}
}

// TestFileTokenSymlinkSwapSameMtime covers a swap to a file with the same
// size and modification time: only the inode tells it apart.
func TestFileTokenSymlinkSwapSameMtime(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := setupProjected(t, dir, "token-aaaa")
	ft, err := NewFileToken(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	swapProjected(t, dir, "token-bbbb")
	if err := os.Chtimes(p, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(waitRecheck)
	if got, _ := ft.Token(); got != "token-bbbb" {
		t.Errorf("Token() after the swap = %q, want %q", got, "token-bbbb")
	}
}

func TestFileTokenKeepsLastGoodToken(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "token")
	writeFile(t, p, "token-aaaa")
	var logs logbuf.Buffer
	ft, err := NewFileToken(p, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := func(step, tok string) {
		t.Helper()
		if got, err := ft.Token(); got != tok || err != nil {
			t.Fatalf("%s: Token() = %q, %v; want %q, nil", step, got, err, tok)
		}
	}
	warnings := func() int { return strings.Count(logs.String(), "level=WARN") }

	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	time.Sleep(waitRecheck)
	want("deleted", "token-aaaa")
	time.Sleep(waitRecheck)
	want("still deleted", "token-aaaa")
	if got := warnings(); got != 1 {
		t.Errorf("got %d warnings for one failure streak, want 1; log:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), p) {
		t.Errorf("the warning does not name the path %s; log:\n%s", p, logs.String())
	}

	writeFile(t, p, "token-bbbb")
	time.Sleep(waitRecheck)
	want("recreated", "token-bbbb")
	if !strings.Contains(logs.String(), "readable again") {
		t.Errorf("no log of the recovery; log:\n%s", logs.String())
	}

	writeFile(t, p, "\n") // emptied: a new failure streak
	time.Sleep(waitRecheck)
	want("emptied", "token-bbbb")
	if got := warnings(); got != 2 {
		t.Errorf("got %d warnings after two failure streaks, want 2; log:\n%s", got, logs.String())
	}
	if l := logs.String(); strings.Contains(l, "token-aaaa") || strings.Contains(l, "token-bbbb") {
		t.Errorf("the log contains a token:\n%s", l)
	}
}

// TestFileTokenConcurrent reads the token from many goroutines while the
// file rotates; run it with -race. Every token read must be one that was
// written whole.
func TestFileTokenConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := setupProjected(t, dir, "token-0")
	ft, err := NewFileToken(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	var written sync.Map
	written.Store("token-0", true)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				tok, err := ft.Token()
				if err != nil {
					t.Errorf("Token(): %v", err)
					return
				}
				if _, ok := written.Load(tok); !ok {
					t.Errorf("Token() = %q, which was never written", tok)
					return
				}
				// Yield: the machine running the tests is shared.
				time.Sleep(50 * time.Microsecond)
			}
		})
	}
	for n := 1; n <= 3; n++ {
		time.Sleep(waitRecheck)
		tok := "token-" + string(rune('0'+n))
		written.Store(tok, true)
		swapProjected(t, dir, tok)
	}
	time.Sleep(waitRecheck)
	// One more call after the last wait sees the last token for sure.
	last, _ := ft.Token()
	stop.Store(true)
	wg.Wait()
	if last != "token-3" {
		t.Errorf("Token() after the last rotation = %q, want %q", last, "token-3")
	}
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// renameOver replaces path atomically with a new file holding data.
func renameOver(t testing.TB, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// setupProjected lays out dir as the kubelet lays out a projected volume
// (k8s.io/kubernetes/pkg/volume/util/atomic_writer.go):
//
//	..2026_01_01_00_00_00.000000001/token
//	..data -> ..2026_01_01_00_00_00.000000001
//	token -> ..data/token
//
// and returns the path of the token symlink.
func setupProjected(t testing.TB, dir, token string) string {
	t.Helper()
	ts := writeTimestampDir(t, dir, token)
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "token"), filepath.Join(dir, "token")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "token")
}

// swapProjected rotates a projected volume the kubelet's way: a new
// timestamped directory, a new symlink renamed over ..data (atomic), then
// the old directory removed.
func swapProjected(t testing.TB, dir, token string) {
	t.Helper()
	old, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	ts := writeTimestampDir(t, dir, token)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
		t.Fatal(err)
	}
}

var tsCounter atomic.Int64

func writeTimestampDir(t testing.TB, dir, token string) string {
	t.Helper()
	name := fmt.Sprintf("..2026_01_01_00_00_00.%09d", tsCounter.Add(1))
	if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name, "token"), token)
	return name
}
