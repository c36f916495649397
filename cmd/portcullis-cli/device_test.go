package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestUseDevice: which sign-in a command runs, from its flags and the
// environment, and what `k8s setup` writes for kubectl to run it again.
func TestUseDevice(t *testing.T) {
	tests := []struct {
		name     string
		args     string
		env      map[string]string
		goos     string
		want     bool
		wantArgs []string
	}{
		{name: "a desktop", env: map[string]string{"DISPLAY": ":0"}, goos: "linux", want: false},
		{name: "a server without a display", goos: "linux", want: true},
		{name: "over SSH", env: map[string]string{"SSH_CONNECTION": "192.0.2.1 5000 192.0.2.2 22", "DISPLAY": "localhost:10.0"}, goos: "linux", want: true},
		{name: "a Mac", goos: "darwin", want: false},
		{name: "over SSH with a browser command", args: "--browser-cmd w3m", env: map[string]string{"SSH_TTY": "/dev/pts/0"}, goos: "linux", want: false,
			wantArgs: []string{"--browser-cmd", "w3m"}},
		{name: "over SSH with $BROWSER", env: map[string]string{"SSH_TTY": "/dev/pts/0", "BROWSER": "lynx"}, goos: "linux", want: false},
		{name: "over SSH with --no-browser (a tunnelled port)", args: "--no-browser", env: map[string]string{"SSH_TTY": "/dev/pts/0"}, goos: "linux", want: false,
			wantArgs: []string{"--no-browser"}},
		{name: "--device on a desktop", args: "--device", env: map[string]string{"DISPLAY": ":0"}, goos: "linux", want: true, wantArgs: []string{"--device"}},
		{name: "--device with a browser command", args: "--device --browser-cmd w3m", goos: "linux", want: true, wantArgs: []string{"--browser-cmd", "w3m", "--device"}},
		{name: "--device=false over SSH", args: "--device=false", env: map[string]string{"SSH_TTY": "/dev/pts/0"}, goos: "linux", want: false,
			wantArgs: []string{"--device=false"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f connFlags
			cmd := &cobra.Command{Use: "exec-credential"}
			f.register(cmd)
			if err := cmd.ParseFlags(strings.Fields(tc.args)); err != nil {
				t.Fatal(err)
			}
			if got := f.useDevice(func(k string) string { return tc.env[k] }, tc.goos); got != tc.want {
				t.Errorf("useDevice: got %v, want %v", got, tc.want)
			}
			args, err := f.args()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(args, tc.wantArgs) && (len(args) != 0 || len(tc.wantArgs) != 0) {
				t.Errorf("setup's arguments: got %q, want %q", args, tc.wantArgs)
			}
		})
	}
}
