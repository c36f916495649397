// Package procstat reads what the benchmark reports about a process from
// /proc: CPU time and memory, summed over its process group so that a
// proxy with worker processes (nginx) is counted whole.
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// Group is a process group, led by the process Leader (testenv starts
// every component as the leader of a group of its own).
type Group struct{ Leader int }

// pids lists the processes of the group.
func (g Group) pids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := readStat(pid)
		if err != nil {
			continue
		}
		if pgrp, _ := strconv.Atoi(f[2]); pgrp == g.Leader {
			out = append(out, pid)
		}
	}
	return out
}

// readStat returns the fields of /proc/PID/stat after the command name
// (field 3, the state, is index 0).
func readStat(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	// The command name is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// CPU is the group's CPU time so far (user + system).
func (g Group) CPU() time.Duration {
	if g.Leader == 0 {
		return 0
	}
	var ticks int64
	for _, pid := range g.pids() {
		f, err := readStat(pid)
		if err != nil || len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// Memory is the group's proportional set size in bytes: resident memory
// with pages shared between its processes counted once, so nginx's master
// and workers add up to what they really hold.
func (g Group) Memory() int64 {
	if g.Leader == 0 {
		return 0
	}
	var total int64
	for _, pid := range g.pids() {
		total += pss(pid)
	}
	return total
}

func pss(pid int) int64 {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// Goroutines reads go_goroutines from a Prometheus endpoint; -1 if there
// is none or it cannot be read.
func Goroutines(client *http.Client, metricsURL string) int64 {
	v, ok := Metric(client, metricsURL, "go_goroutines", "")
	if !ok {
		return -1
	}
	return int64(v)
}

// Metric reads a Prometheus endpoint (the text format) and returns the sum
// of the samples of the series name whose labels contain label (such as
// `operation="get"`; "" for all). It reports false if the endpoint cannot
// be read or has no such sample.
func Metric(client *http.Client, metricsURL, name, label string) (float64, bool) {
	if metricsURL == "" {
		return 0, false
	}
	resp, err := client.Get(metricsURL)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	var sum float64
	found := false
	for line := range strings.SplitSeq(string(b), "\n") {
		// The value is the last field: a label's value may hold spaces.
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		series, value := line[:sp], line[sp+1:]
		n, labels, _ := strings.Cut(series, "{")
		if n != name || !strings.Contains(labels, label) {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}
