package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/bench/internal/contender"
)

// appendLines appends n event lines, and then part of one more if partial.
func appendLines(t *testing.T, path string, n int, partial bool) {
	t.Helper()
	if err := writeLines(path, n, partial); err != nil {
		t.Fatal(err)
	}
}

func writeLines(path string, n int, partial bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	var b strings.Builder
	for range n {
		b.WriteString(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata"}` + "\n")
	}
	if partial {
		b.WriteString(`{"kind":"Ev`)
	}
	_, err = f.WriteString(b.String())
	return errors.Join(err, f.Close())
}

// The count takes in the files rotated out of the log, keeps counting
// one the sink removed as an old backup, and counts a line only once it
// is whole.
func TestAuditCount(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	// Not rotated files of this log: the proxy's own log, and another
	// file with the same prefix.
	for _, name := range []string{"portcullis-audit.log", "audit-notes.log"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x\ny\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &auditCount{path: path}
	check := func(events int64) {
		t.Helper()
		got, err := c.total()
		if err != nil {
			t.Fatal(err)
		}
		if got.events != events {
			t.Fatalf("counted %d events, want %d", got.events, events)
		}
	}
	appendLines(t, path, 3, true)
	check(3)
	appendLines(t, path, 2, false) // the first completes the partial line
	check(5)
	backup := func(i int) string {
		return filepath.Join(dir, "audit-"+time.Date(2026, 12, 1, 10, 0, i, 0, time.UTC).Format(backupTime)+".log")
	}
	for i := range 3 {
		if err := os.Rename(path, backup(i)); err != nil {
			t.Fatal(err)
		}
		appendLines(t, path, 10, false)
		check(5 + 10*int64(i+1))
	}
	if err := os.Remove(backup(0)); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, 1, false)
	check(36)
}

// A round whose requests are not all in the audit log fails, and says
// how many were; one whose are passes.
func TestAuditProbe(t *testing.T) {
	defer func(d time.Duration) { auditSettle = d }(auditSettle)
	auditSettle = 50 * time.Millisecond
	path := filepath.Join(t.TempDir(), "audit.log")
	appendLines(t, path, 2, false) // the sign-in and the first served request
	pb := newAuditProbe(&contender.Instance{Name: contender.PortcullisAudit, AuditLog: path})
	ctx := context.Background()
	var rounds []probed
	for _, missing := range []int{0, 1} {
		pb.begin(ctx)
		appendLines(t, path, 20, false)
		pb.warmedUp(ctx, 20)
		// Written after the phase ends, from the sink's queue.
		written := make(chan error, 1)
		go func() {
			time.Sleep(10 * time.Millisecond)
			written <- writeLines(path, 100-missing, false)
		}()
		pr := pb.measured(ctx, 100)
		if err := <-written; err != nil {
			t.Fatal(err)
		}
		want := ""
		if missing > 0 {
			want = fmt.Sprintf("received %d events for the 100 requests of the measured phase", 100-missing)
		}
		if (want == "") != (pr.problem == "") || !strings.Contains(pr.problem, want) {
			t.Errorf("with %d events missing: problem %q, want %q", missing, pr.problem, want)
		}
		rounds = append(rounds, pr)
	}
	row := Row{Extra: map[string]any{}}
	pb.row(&row, rounds)
	if got := row.Extra["audit_events_per_request"]; got != 0.99 {
		t.Errorf("audit_events_per_request %v, want 0.99 (the fewest of the rounds)", got)
	}
	if got := row.Extra["audit_bytes_per_event"]; got != 67.0 {
		t.Errorf("audit_bytes_per_event %v, want 67", got)
	}
}
