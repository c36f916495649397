// Command portcullis is the identity-aware access proxy for the Kubernetes
// API. It reads its configuration from the environment and an optional
// YAML file (--config), then serves until SIGINT or SIGTERM. All logic
// lives in internal packages; this file parses flags, sets up logging and
// maps errors to exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/server"
	"github.com/portcullis-proxy/portcullis/internal/tracing"
)

// version is set at build time:
// go build -ldflags "-X main.version=v1.2.3" ./cmd/portcullis
var version = "dev"

// configReference is the page, in the Portcullis repository, that lists
// every setting; --help points to it.
const configReference = "docs/configuration.md"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // bad configuration, or the server failed
	exitUsage   = 2 // bad flags or arguments, as the flag package does
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default behaviour: a second
		// SIGINT or SIGTERM ends the process at once instead of waiting
		// for the graceful shutdown.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err (unless run already did) and maps it to an exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var e *exitError
	if !errors.As(err, &e) {
		e = &exitError{code: exitFailure, err: err}
	}
	if !e.reported {
		fmt.Fprintf(stderr, "portcullis: %v\n", e.err)
	}
	return e.code
}

// exitError gives an error its exit code. reported means run has already
// printed everything about it (the flag package's message, the list of
// configuration problems), so main only exits.
type exitError struct {
	code     int
	reported bool
	err      error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// run is the whole command, with its environment passed in so tests can
// call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) error {
	if len(args) > 0 && args[0] == "direct-config" {
		return runDirectConfig(args[1:], stdout, stderr, lookupEnv) // direct.go
	}
	fs := flag.NewFlagSet("portcullis", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "read settings from this YAML `file`; environment variables override it")
	checkConfig := fs.Bool("check-config", false, "load and validate the configuration, print a summary or every problem, and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: portcullis [--config FILE] [--check-config] [--version]\n"+
			"       portcullis direct-config --out DIR [--route URL] [--ca-cert FILE] [--config FILE]\n\n"+
			"Settings come from environment variables (ADDRESS, CERTIFICATE, COOKIE_SECRET, ROUTES, …)\n"+
			"and from the optional YAML file, whose keys are the same names in lower case.\n"+
			"Every setting, its environment variable, file key and default: %s\n"+
			"in the Portcullis repository.\n\n", configReference)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, "settings come from flags, the environment and --config"); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintf(stdout, "portcullis %s\n", version)
		return nil
	}

	// Load validates too, with the server's own checks (the same that
	// server.New runs), and reports every problem at once. A reload reads
	// the same way.
	load := func() (*config.Options, error) { return config.Load(*configFile, lookupEnv, server.Checks()...) }
	opts, err := load()
	// Tracing is set up by the OpenTelemetry variables, OTEL_*, as every
	// OpenTelemetry SDK is; its problems are configuration problems too.
	traces, terr := tracing.FromEnv(lookupEnv)
	if err != nil || terr != nil {
		return reportProblems(stderr, errors.Join(err, terr))
	}

	if *checkConfig {
		fmt.Fprintln(stdout, strings.TrimRight(opts.Summary(), "\n"))
		fmt.Fprintf(stdout, "tracing: %s\n", traces.Summary())
		for _, w := range opts.Warnings() {
			fmt.Fprintf(stdout, "warning: %s\n", w)
		}
		// Say what a start would generate, without generating it here: a
		// copy takes the new values.
		preview := *opts
		if generated := preview.GenerateMissingSecrets(); len(generated) > 0 {
			fmt.Fprintf(stdout, "not set, so generated at each start: %s (set them when running more than one replica)\n",
				strings.Join(generated, ", "))
		}
		// What start does beyond this check: the network.
		fmt.Fprintln(stdout, "not checked: reaching the identity provider, the upstreams and the listen addresses, which happens at start and at each request")
		return nil
	}

	// A missing secret is generated rather than refused, so that one
	// replica starts with no secrets set up, and said loudly below.
	generated := opts.GenerateMissingSecrets()
	level := new(slog.LevelVar) // LOG_LEVEL, which a reload can change
	level.Set(opts.LogLevel)
	logger := newLogger(stderr, opts, level)
	logger.Info("starting portcullis", "version", version)
	if len(generated) > 0 {
		logger.Warn("generated random secrets because they were not set; "+
			"sessions and tokens will not survive a restart, and with more than one replica "+
			"these MUST be set to the same value on every replica",
			"generated", generated)
	}
	tracer, err := tracing.Start(ctx, traces, version, logger)
	if err != nil {
		return err
	}
	logger.Info("tracing: " + traces.Summary())
	defer func() {
		// The spans of the last requests, with a bound of their own: the
		// signal's context is done by now.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracer.Shutdown(sctx); err != nil {
			logger.Warn("exporting the last traces", "error", err)
		}
	}()
	srv, err := server.New(opts, logger)
	var cerr *server.ConfigError
	if errors.As(err, &cerr) {
		return reportProblems(stderr, cerr.Err)
	}
	if err != nil {
		return err
	}
	srv.SetTracer(tracer)
	srv.SetReloader(load, level)
	// SIGHUP reloads the configuration, as it does for most daemons; the
	// server also reloads by itself when a file it was read from changes.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP: reloading the configuration")
				srv.Reload() //nolint:errcheck // Reload logs every problem and counts the failure
			}
		}
	}()
	return srv.Run(ctx)
}

// parseFlags parses args into fs, which takes no arguments (hint says
// what to do instead), and gives a bad flag its exit code.
func parseFlags(fs *flag.FlagSet, args []string, hint string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		// The flag package has printed the problem and the usage.
		return &exitError{code: exitUsage, reported: true, err: err}
	}
	if fs.NArg() > 0 {
		return &exitError{code: exitUsage, err: fmt.Errorf("unexpected argument %q; %s", fs.Arg(0), hint)}
	}
	return nil
}

// newLogger builds the process's logger from LOG_FORMAT, at level (LOG_LEVEL).
func newLogger(w io.Writer, opts *config.Options, level slog.Leveler) *slog.Logger {
	hopts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(opts.LogFormat, "text") {
		return slog.New(slog.NewTextHandler(w, hopts))
	}
	return slog.New(slog.NewJSONHandler(w, hopts))
}

// reportProblems prints each configuration problem on its own line, then
// how many there were, and returns an error main will not print again.
func reportProblems(stderr io.Writer, err error) error {
	problems := config.Messages(err)
	for _, p := range problems {
		// A problem of several lines keeps them together, indented.
		fmt.Fprintf(stderr, "config: %s\n", strings.ReplaceAll(p, "\n", "\n  "))
	}
	fmt.Fprintf(stderr, "%d problem(s) found\n", len(problems))
	return &exitError{code: exitFailure, reported: true, err: err}
}
