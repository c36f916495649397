package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sink writes audit events somewhere. A Backend calls Write from one
// goroutine at a time; an error makes it retry the same events later.
type Sink interface {
	// Write writes events, in order. An error means none or only some were
	// written; the caller may write them again. Write must not keep the
	// slice events after it returns: the caller reuses it.
	Write(ctx context.Context, events []*Event) error
	// Close releases what the sink holds. Write must not be called after.
	Close() error
}

// backupTimeFormat names a rotated file, as kube-apiserver's log rotation
// (gopkg.in/natefinch/lumberjack.v2, in UTC) does.
const backupTimeFormat = "2006-01-02T15-04-05.000"

// fileBatchWait is how long the first event of a batch waits for more
// before the file sink writes them: short enough that the log keeps up
// with the requests, long enough that a busy server's events are written
// many at a time, each batch waking the writer once. Woken for every
// event, the writer cost a small request more CPU than encoding it.
const fileBatchWait = 10 * time.Millisecond

// megabyte is lumberjack's megabyte, by which --audit-log-maxsize counts.
const megabyte = 1024 * 1024

// fileSink writes events as JSON lines to a file it rotates, or to stdout.
type fileSink struct {
	mu         sync.Mutex
	path       string    // "" for stdout
	w          io.Writer // the open file, or stdout
	f          *os.File  // the open file; nil for stdout
	size       int64     // bytes in the open file
	maxBytes   int64     // rotate past this; 0 never
	maxBackups int       // keep this many rotated files; 0 all
	now        func() time.Time
	buf        []byte // Write's buffer, kept for the next
}

// NewFileSink returns a Sink that writes each event as one JSON line, as
// kube-apiserver's --audit-log-path does. Path "-" is stdout. Otherwise the
// file is appended to (created 0600: the audit log says who did what, which
// is for its readers only). When a write would take it past maxSizeMB
// megabytes (0: never) it is renamed to
// "<name>-<UTC time 2006-01-02T15-04-05.000><ext>" and a new one started,
// keeping at most maxBackups renamed files (0: all), as kube-apiserver's
// --audit-log-maxsize and --audit-log-maxbackup do.
func NewFileSink(path string, maxSizeMB, maxBackups int) (Sink, error) {
	return newFileSink(path, int64(maxSizeMB)*megabyte, maxBackups, os.Stdout, time.Now)
}

// newFileSink is NewFileSink with the size in bytes, stdout and the clock
// given, for tests.
func newFileSink(path string, maxBytes int64, maxBackups int, stdout io.Writer, now func() time.Time) (*fileSink, error) {
	if maxBytes < 0 || maxBackups < 0 {
		return nil, fmt.Errorf("opening audit log %s: maximum size and backups must not be negative", path)
	}
	s := &fileSink{maxBytes: maxBytes, maxBackups: maxBackups, now: now}
	if path == "-" {
		s.w = stdout
		return s, nil
	}
	s.path = path
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// defaultBatchWait tells a Backend how long a partial batch waits.
func (s *fileSink) defaultBatchWait() time.Duration { return fileBatchWait }

// open opens (or creates) the file at s.path for appending.
func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening audit log: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening audit log: %w", err)
	}
	s.f, s.w, s.size = f, f, info.Size()
	return nil
}

// maxKeptBuffer is the largest encoding buffer a fileSink keeps between
// Writes; one that a large batch grew past it is let go.
const maxKeptBuffer = 1 << 20

// Write appends one JSON line per event, rotating the file first whenever
// the next line would take it past its maximum size. The lines are
// encoded into one buffer, kept from Write to Write, and written with one
// write(2) per batch (two around a rotation).
func (s *fileSink) Write(_ context.Context, events []*Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return errors.New("writing audit log: sink is closed")
	}
	buf := s.buf[:0]
	defer func() {
		if cap(buf) <= maxKeptBuffer {
			s.buf = buf[:0]
		} else {
			s.buf = nil
		}
	}()
	for _, ev := range events {
		start := len(buf)
		buf = appendEvent(buf, ev)
		buf = append(buf, '\n')
		if s.f != nil && s.maxBytes > 0 && s.size+int64(len(buf)) > s.maxBytes && s.size+int64(start) > 0 {
			// The lines before this one go to the file being rotated.
			if err := s.flush(buf[:start]); err != nil {
				return err
			}
			buf = buf[:copy(buf, buf[start:])]
			if err := s.rotate(); err != nil {
				return err
			}
		}
	}
	return s.flush(buf)
}

// flush writes buf out.
func (s *fileSink) flush(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	n, err := s.w.Write(buf)
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("writing audit log: %w", err)
	}
	return nil
}

// rotate renames the open file to its backup name, opens a new one and
// removes the oldest backups past maxBackups.
func (s *fileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("rotating audit log: %w", err)
	}
	s.f, s.w = nil, nil
	dir, name := filepath.Split(s.path)
	ext := filepath.Ext(name)
	prefix := strings.TrimSuffix(name, ext) + "-"
	t := s.now().UTC()
	backup := filepath.Join(dir, prefix+t.Format(backupTimeFormat)+ext)
	// Two rotations within a millisecond would give one name; the second
	// must not overwrite the first.
	for {
		if _, err := os.Lstat(backup); errors.Is(err, fs.ErrNotExist) {
			break
		}
		t = t.Add(time.Millisecond)
		backup = filepath.Join(dir, prefix+t.Format(backupTimeFormat)+ext)
	}
	renameErr := os.Rename(s.path, backup)
	// Open a file even if the rename failed, so that events go on being
	// written (to the old file, past its size) rather than lost.
	if err := s.open(); err != nil {
		return errors.Join(renameErr, err)
	}
	if renameErr != nil {
		return fmt.Errorf("rotating audit log: %w", renameErr)
	}
	return s.prune(dir, prefix, ext)
}

// prune removes the oldest backups past maxBackups. Backups are found by
// name, as lumberjack finds them, and ordered by the time in it.
func (s *fileSink) prune(dir, prefix, ext string) error {
	if s.maxBackups == 0 {
		return nil
	}
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return fmt.Errorf("pruning audit log backups: %w", err)
	}
	type backup struct {
		name string
		t    time.Time
	}
	var backups []backup
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, ext) {
			continue
		}
		t, err := time.Parse(backupTimeFormat, n[len(prefix):len(n)-len(ext)])
		if err != nil {
			continue
		}
		backups = append(backups, backup{n, t})
	}
	slices.SortFunc(backups, func(a, b backup) int { return b.t.Compare(a.t) })
	var errs []error
	for _, b := range backups[min(s.maxBackups, len(backups)):] {
		if err := os.Remove(filepath.Join(dir, b.name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pruning audit log backups: %w", err)
	}
	return nil
}

// Close closes the file; stdout stays open.
func (s *fileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.f
	s.f, s.w = nil, nil
	if f == nil {
		return nil
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing audit log: %w", err)
	}
	return nil
}
