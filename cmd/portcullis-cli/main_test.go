package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "portcullis-cli dev\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Commands that are not built yet must fail and say so, never pretend.
func TestNotImplementedCommandsFail(t *testing.T) {
	for _, args := range [][]string{
		{"k8s", "exec-credential", "https://k8s.example.com"},
		{"k8s", "flush-credentials"},
		{"k8s", "setup", "https://k8s.example.com"},
		{"login", "https://k8s.example.com"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), args, &out, &out)
			if !errors.Is(err, errNotImplemented) {
				t.Errorf("got %v, want a not-implemented error", err)
			}
			if out.Len() != 0 {
				t.Errorf("stdout/stderr: got %q, want nothing (stdout is reserved for ExecCredential JSON)", out.String())
			}
		})
	}
}
