package procstat

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestGroupOfAChild(t *testing.T) {
	// A shell that burns a little CPU, then waits, in a group of its own.
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	g := Group{Leader: cmd.Process.Pid}
	deadline := time.Now().Add(10 * time.Second)
	for g.CPU() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if g.CPU() <= 0 {
		t.Errorf("CPU: got %v, want more than 0", g.CPU())
	}
	if m := g.Memory(); m <= 0 || m > 1<<30 {
		t.Errorf("Memory: got %d bytes, want a shell's few hundred KiB", m)
	}
	if none := (Group{}); none.CPU() != 0 || none.Memory() != 0 {
		t.Error("the zero Group (no process) should read as nothing")
	}
}

func TestGoroutines(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 42\ngo_threads 7\n"))
	}))
	defer srv.Close()
	if got := Goroutines(srv.Client(), srv.URL); got != 42 {
		t.Errorf("got %d, want 42", got)
	}
	if got := Goroutines(srv.Client(), ""); got != -1 {
		t.Errorf("no endpoint: got %d, want -1", got)
	}
}

func TestMetric(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`# HELP portcullis_store_operation_seconds Time the session store's database took.
# TYPE portcullis_store_operation_seconds histogram
portcullis_store_operation_seconds_bucket{operation="get",le="0.001"} 2
portcullis_store_operation_seconds_count{operation="get"} 3
portcullis_store_operation_seconds_count{operation="reconcile"} 5
portcullis_store_operation_seconds_count_total{operation="get"} 100
other{note="a b"} 7
`))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, series, label string
		want                float64
		wantOK              bool
	}{
		{"one label", "portcullis_store_operation_seconds_count", `operation="get"`, 3, true},
		{"all labels summed", "portcullis_store_operation_seconds_count", "", 8, true},
		{"space in a label value", "other", "", 7, true},
		{"absent", "portcullis_store_errors_total", "", 0, false},
	} {
		got, ok := Metric(srv.Client(), srv.URL, tc.series, tc.label)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: got %v, %v, want %v, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
}
