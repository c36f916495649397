// Command fakenode is a kubelet stand-in for tests: kube-apiserver sends it
// exec, attach and port-forward requests for the pods bound to its node, as
// it would to a kubelet, and it serves them with Kubernetes' own streaming
// server code (k8s.io/cri-streaming), the code the kubelet's CRI streaming
// server is made of.
//
// Unlike kwok, the commands it runs keep what a test needs to see: the
// command's real exit code reaches kubectl, stdin EOF reaches the command
// (so `kubectl cp` into a pod works), and terminal resizes arrive (see the
// built-in command fakenode-report-size).
//
// It is a test tool, not a kubelet: an exec'd command is a plain local
// process in --workdir with the tool's own rights, and it authenticates no
// client: keep --listen on loopback (the default). Linux only (pty, Pdeathsig).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.Args[1:], log); err != nil {
		log.Error("fakenode failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("fakenode", flag.ContinueOnError)
	var cfg config
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:0", "address to serve HTTPS on (port 0 picks a free port)")
	fs.StringVar(&cfg.addressFile, "address-file", "", "once serving, write the listening address (127.0.0.1:PORT) to this file")
	fs.StringVar(&cfg.workDir, "workdir", "", "working directory of exec'd commands (required)")
	fs.StringVar(&cfg.forwardTarget, "portforward-target", "", "send every forwarded pod port to this host:port (default: pod port N goes to 127.0.0.1:N)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("parsing flags: %w", err)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("parsing flags: unexpected arguments %q", fs.Args())
	}
	if cfg.workDir == "" {
		return errors.New("parsing flags: --workdir is required")
	}
	if fi, err := os.Stat(cfg.workDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("parsing flags: --workdir %s is not a directory (%v)", cfg.workDir, err)
	}
	return serve(ctx, cfg, log)
}
