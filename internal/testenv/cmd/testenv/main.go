// Command testenv prepares the real components Portcullis's tests use.
//
//	go run ./internal/testenv/cmd/testenv prepare   # build kube-apiserver, kubectl, etcd, kwok into the cache
//	go run ./internal/testenv/cmd/testenv path NAME # print a built binary's path
//	go run ./internal/testenv/cmd/testenv demo      # a local cluster with Portcullis in front, until Ctrl-C
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: testenv prepare | testenv path NAME | testenv demo [--port N]")
	}
	switch args[0] {
	case "prepare":
		for _, name := range testenv.ToolNames() {
			p, err := testenv.Tool(ctx, name, os.Stderr)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "testenv: %-15s %s\n", name, p)
		}
		return nil
	case "demo":
		return demo(ctx, args[1:])
	case "browse":
		return browse(ctx, args[1:])
	case "path":
		if len(args) != 2 {
			return errors.New("usage: testenv path NAME")
		}
		p, err := testenv.Tool(ctx, args[1], os.Stderr)
		if err != nil {
			return err
		}
		fmt.Println(p)
		return nil
	default:
		return fmt.Errorf("unknown command %q: want prepare, path or demo", args[0])
	}
}
