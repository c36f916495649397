// Command bench runs Portcullis's benchmark harness: every scenario against
// direct access, Portcullis (sessions in memory and in PostgreSQL, and
// auditing to a file), nginx and oauth2-proxy in one interleaved run,
// written to RESULTS.md and results.json. See bench/README.md.
//
//	go run ./cmd/bench                  # the full run (about 25 minutes)
//	BENCH_SHORT=1 go run ./cmd/bench    # the smoke test (under 3 minutes)
//
// "bench render [DIR]" writes DIR/RESULTS.md again from DIR/results.json.
// "bench stub" is the stub upstream the harness starts as a process of its
// own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis-proxy/portcullis/bench/internal/harness"
	"github.com/portcullis-proxy/portcullis/bench/internal/stub"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "stub":
		err = runStub(ctx, os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "render":
		err = render(os.Args[2:])
	default:
		err = run(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	out := fs.String("out", ".", "directory to write RESULTS.md and results.json into")
	short := fs.Bool("short", os.Getenv("BENCH_SHORT") != "" && os.Getenv("BENCH_SHORT") != "0", "smoke-test sizes (also BENCH_SHORT=1): small counts, one round; checks the harness works")
	profile := fs.String("profile", "", "directory to write Portcullis's CPU and allocation profiles of the small-GET scenarios into (builds it with -tags pprof)")
	only := fs.String("scenarios", "", "comma-separated scenarios to run (default: all): "+strings.Join(harness.Scenarios, ", "))
	command := fs.String("command", "", "the command line to record in RESULTS.md (default: this program's arguments)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *command == "" {
		*command = strings.Join(append([]string{"go run ./cmd/bench"}, args...), " ")
	}
	for _, sc := range splitList(*only) {
		if !slices.Contains(harness.Scenarios, sc) {
			return fmt.Errorf("-scenarios: unknown scenario %q; the scenarios are %s", sc, strings.Join(harness.Scenarios, ", "))
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	start := time.Now()
	report := harness.NewReport(*command, *short)
	rows, runErr := harness.Run(ctx, harness.Options{Short: *short, Only: splitList(*only), Profile: *profile, StubBin: []string{self, "stub"}, Log: os.Stderr})
	if rows == nil && runErr != nil {
		return runErr
	}
	report.Finish(rows, runErr, time.Since(start))
	for name, write := range map[string]func(string) error{"results.json": report.WriteJSON, "RESULTS.md": report.WriteMarkdown} {
		if err := write(filepath.Join(*out, name)); err != nil {
			return errors.Join(runErr, err)
		}
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s and %s in %v\n", filepath.Join(*out, "RESULTS.md"), filepath.Join(*out, "results.json"), time.Since(start).Round(time.Second))
	if runErr != nil {
		return fmt.Errorf("some checks failed (the results say which):\n%w", runErr)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// render writes RESULTS.md again from a results.json, after a change to
// how results are written: "bench render [DIR]" (default: the current
// directory).
func render(args []string) error {
	dir := "."
	if len(args) > 0 {
		dir = args[0]
	}
	r, err := harness.ReadReport(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	return r.WriteMarkdown(filepath.Join(dir, "RESULTS.md"))
}

// runStub serves the stub upstream until it is told to stop.
func runStub(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench stub", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "TLS listen address")
	admin := fs.String("admin", "127.0.0.1:0", "admin listen address (plain HTTP, loopback)")
	cert := fs.String("cert", "", "TLS certificate file")
	key := fs.String("key", "", "TLS key file")
	user := fs.String("user", "", "the Impersonate-User every request must carry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token := os.Getenv("BENCH_STUB_TOKEN")
	if token == "" || *user == "" || *cert == "" || *key == "" {
		return errors.New("stub: -cert, -key, -user and BENCH_STUB_TOKEN are required")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	adminLn, err := net.Listen("tcp", *admin)
	if err != nil {
		return err
	}
	return stub.Serve(ctx, stub.New(stub.Config{Token: token, User: *user}), ln, adminLn, *cert, *key)
}
