package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testEvent returns a complete event numbered n.
func testEvent(n int) *Event {
	received := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Millisecond)
	ev := NewEvent(LevelMetadata, fmt.Sprintf("audit-%05d", n), received)
	ev.Stage = StageResponseComplete
	ev.StageTimestamp = received.Add(time.Millisecond)
	ev.Verb = "get"
	ev.RequestURI = "/api/v1/namespaces/dev/pods"
	ev.User = UserInfo{Username: "alice@example.com", Groups: []string{"developers"}, Extra: map[string][]string{ExtraSessionID: {SessionHash("s")}}}
	ev.ResponseStatus = &ResponseStatus{Code: 200}
	return ev
}

// readLines decodes every JSON line of r into events.
func readLines(t *testing.T, r io.Reader) []*Event {
	t.Helper()
	var out []*Event
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q is not an event: %v", sc.Text(), err)
		}
		out = append(out, &ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFileSinkLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	s, err := NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []*Event{testEvent(1), testEvent(2), testEvent(3)}
	if err := s.Write(context.Background(), want[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), want[2:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("mode: got %v, want 0600", got)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if diff := cmp.Diff(want, readLines(t, f)); diff != "" {
		t.Errorf("events read back (-want +got):\n%s", diff)
	}
}

func TestFileSinkStdout(t *testing.T) {
	r, w := io.Pipe()
	s, err := newFileSink("-", 0, 0, w, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []*Event)
	go func() { got <- readLines(t, r) }()
	want := []*Event{testEvent(1), testEvent(2)}
	if err := s.Write(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	w.Close() // Close leaves stdout open; the test ends the pipe itself.
	if diff := cmp.Diff(want, <-got); diff != "" {
		t.Errorf("events on stdout (-want +got):\n%s", diff)
	}
}

func TestFileSinkRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	line, err := json.Marshal(testEvent(0))
	if err != nil {
		t.Fatal(err)
	}
	lineSize := int64(len(line) + 1)
	clock := time.Date(2026, 3, 14, 9, 30, 0, 0, time.FixedZone("CET", 3600))
	now := func() time.Time { clock = clock.Add(1500 * time.Millisecond); return clock }
	// Room for two lines a file; the third rotates.
	s, err := newFileSink(path, 2*lineSize+lineSize/2, 2, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	var all []*Event
	for i := range 9 {
		ev := testEvent(i)
		all = append(all, ev)
		if err := s.Write(context.Background(), []*Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	// Four rotations at 08:30:01.500, 03.000, 04.500 and 06.000 UTC; the
	// two oldest backups are pruned.
	want := []string{"audit-2026-03-14T08-30-04.500.log", "audit-2026-03-14T08-30-06.000.log", "audit.log"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("files (-want +got):\n%s", diff)
	}
	var got []*Event
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) > 2*lineSize+lineSize/2 {
			t.Errorf("%s: %d bytes, past the maximum", n, len(b))
		}
		got = append(got, readLines(t, bytes.NewReader(b))...)
	}
	if diff := cmp.Diff(all[4:], got); diff != "" {
		t.Errorf("events kept, oldest first (-want +got):\n%s", diff)
	}
}

// TestFileSinkRotationSameMillisecond: two rotations with one clock
// reading must both keep their file.
func TestFileSinkRotationSameMillisecond(t *testing.T) {
	dir := t.TempDir()
	fixed := time.Date(2026, 3, 14, 9, 30, 0, 0, time.UTC)
	s, err := newFileSink(filepath.Join(dir, "audit"), 1, 0, nil, func() time.Time { return fixed })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), []*Event{testEvent(1), testEvent(2), testEvent(3)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Collect(func(yield func(string) bool) {
		for _, e := range entries {
			if !yield(e.Name()) {
				return
			}
		}
	})
	want := []string{"audit", "audit-2026-03-14T09-30-00.000", "audit-2026-03-14T09-30-00.001"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}
