package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/bench/internal/contender"
	"github.com/portcullis-proxy/portcullis/bench/internal/procstat"
)

// auditProbe checks that Portcullis writing its audit trail to a file
// (contender.PortcullisAudit) recorded every request of each measured
// phase, one event (line) each, and counts the events and their bytes.
// The file sink writes from a queue of its own, after the response: the
// probe waits, untimed, for the warm-up's events to be written before the
// measured phase starts, so that the phase does not write them, and for
// the phase's own after it ends, so that the next contender's round does
// not share the machine with this one's writing.
type auditProbe struct {
	inst    *contender.Instance
	log     *auditCount
	client  *http.Client
	start   auditTotal // before the warm-up
	warm    auditTotal // when the warm-up's events were written
	problem string     // what went wrong before the measured phase
}

// auditSettle is how long an audit log that has not grown is given before
// the events it lacks are taken as never written: the sink's queue holds
// at most 10,000 events, which it writes in well under this. Tests
// shorten it.
var auditSettle = 2 * time.Second

func newAuditProbe(inst *contender.Instance) probe {
	return &auditProbe{inst: inst, log: &auditCount{path: inst.AuditLog}, client: &http.Client{Timeout: 10 * time.Second}}
}

func (p *auditProbe) begin(ctx context.Context) {
	p.problem = ""
	var err error
	if p.start, err = p.log.total(); err != nil {
		p.problem = fmt.Sprintf("reading its audit log: %v", err)
	}
	p.warm = p.start
}

func (p *auditProbe) warmedUp(ctx context.Context, n int64) {
	if p.problem != "" {
		return
	}
	var err error
	p.warm, err = p.wait(ctx, p.start.events+n)
	switch got := p.warm.events - p.start.events; {
	case err != nil:
		p.problem = fmt.Sprintf("reading its audit log: %v", err)
	case got < n:
		p.problem = p.short("warm-up", got, n)
	}
}

func (p *auditProbe) measured(ctx context.Context, n int64) probed {
	end, err := p.wait(ctx, p.warm.events+n)
	events := end.events - p.warm.events
	pr := probed{values: map[string]float64{"events": float64(events), "requests": float64(n)}, problem: p.problem}
	if events > 0 {
		pr.values["bytes_per_event"] = float64(end.bytes-p.warm.bytes) / float64(events)
	}
	switch {
	case pr.problem != "":
	case err != nil:
		pr.problem = fmt.Sprintf("reading its audit log: %v", err)
	case events < n:
		pr.problem = p.short("measured", events, n)
	}
	return pr
}

// short says that the audit log received got events for the n requests
// of a phase, with what the proxy says it dropped.
func (p *auditProbe) short(phase string, got, n int64) string {
	s := fmt.Sprintf("its audit log %s received %d events for the %d requests of the %s phase", p.inst.AuditLog, got, n, phase)
	if d, ok := procstat.Metric(p.client, p.inst.Metrics, "portcullis_audit_events_dropped_total", `sink="log"`); ok {
		s += fmt.Sprintf(" (portcullis_audit_events_dropped_total{sink=\"log\"} %g so far)", d)
	}
	return s
}

// wait reads the audit log until it holds at least want events, or has
// not grown for auditSettle, or ctx ends; it returns the last count.
func (p *auditProbe) wait(ctx context.Context, want int64) (auditTotal, error) {
	last, err := p.log.total()
	changed := time.Now()
	for err == nil && last.events < want && time.Since(changed) < auditSettle {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		var t auditTotal
		if t, err = p.log.total(); t != last {
			changed = time.Now()
		}
		last = t
	}
	return last, err
}

// row reports the fewest events per request of any round, which must be
// at least one, and the median size of an event.
func (p *auditProbe) row(row *Row, rounds []probed) {
	var per, size []float64
	for _, pr := range rounds {
		if n := pr.values["requests"]; n > 0 {
			per = append(per, pr.values["events"]/n)
		}
		if b, ok := pr.values["bytes_per_event"]; ok {
			size = append(size, b)
		}
	}
	if len(per) > 0 {
		row.Extra["audit_events_per_request"] = slices.Min(per)
	}
	if len(size) > 0 {
		row.Extra["audit_bytes_per_event"] = float64(int64(median(size) + 0.5))
	}
}

// auditTotal is what an audit log has received: events (lines) and bytes.
type auditTotal struct{ events, bytes int64 }

func (a auditTotal) plus(b auditTotal) auditTotal {
	return auditTotal{a.events + b.events, a.bytes + b.bytes}
}

// auditCount counts what an audit log has received, the files rotated out
// of it included (named as the sink names them, docs/audit.md). A rotated
// file no longer changes, so each is read once, and stays counted if the
// sink removes it as an old backup; the live file is read on from where
// the last count stopped, or from its start once it is a new file.
type auditCount struct {
	path    string
	rotated map[string]auditTotal // by name
	live    os.FileInfo           // the live file as last read
	liveAt  auditTotal            // what of it has been read: whole lines only
	buf     []byte
}

// backupTime is the time in a rotated file's name, in UTC.
const backupTime = "2006-01-02T15-04-05.000"

// total reads what the log has received so far. A rotation while it
// reads can leave the file rotated out uncounted until the next call.
func (c *auditCount) total() (auditTotal, error) {
	if c.path == "" {
		return auditTotal{}, errors.New("the contender names no audit log")
	}
	if c.rotated == nil {
		c.rotated = map[string]auditTotal{}
	}
	dir, name := filepath.Split(c.path)
	ext := filepath.Ext(name)
	prefix := strings.TrimSuffix(name, ext) + "-"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return auditTotal{}, err
	}
	for _, e := range entries {
		n := e.Name()
		if _, seen := c.rotated[n]; seen || e.IsDir() || !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, ext) {
			continue
		}
		if _, err := time.Parse(backupTime, strings.TrimSuffix(strings.TrimPrefix(n, prefix), ext)); err != nil {
			continue
		}
		t, err := c.read(filepath.Join(dir, n), auditTotal{})
		if err != nil {
			return auditTotal{}, err
		}
		c.rotated[n] = t
	}
	var sum auditTotal
	for _, t := range c.rotated {
		sum = sum.plus(t)
	}
	f, err := os.Open(c.path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return sum, err
	}
	if c.live == nil || !os.SameFile(c.live, info) {
		c.live, c.liveAt = info, auditTotal{}
	}
	if c.liveAt, err = c.readFile(f, c.liveAt); err != nil {
		return sum, err
	}
	return sum.plus(c.liveAt), nil
}

// read counts the whole lines of the file at path past from.
func (c *auditCount) read(path string, from auditTotal) (auditTotal, error) {
	f, err := os.Open(path)
	if err != nil {
		return from, err
	}
	defer f.Close()
	return c.readFile(f, from)
}

// readFile counts the whole lines of f past from: a line the sink is
// still writing is counted when it is whole.
func (c *auditCount) readFile(f *os.File, from auditTotal) (auditTotal, error) {
	if c.buf == nil {
		c.buf = make([]byte, 1<<20)
	}
	at, off := from, from.bytes
	for {
		n, err := f.ReadAt(c.buf, off)
		if chunk := c.buf[:n]; n > 0 {
			if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
				at.events += int64(bytes.Count(chunk[:i+1], []byte{'\n'}))
				at.bytes = off + int64(i) + 1
			}
			off += int64(n)
		}
		if err == io.EOF {
			return at, nil
		}
		if err != nil {
			return at, err
		}
	}
}
