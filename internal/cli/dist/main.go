// Command dist builds portcullis-cli's release files: the CLI for Linux,
// macOS and Windows on amd64 and arm64, each in an archive krew installs
// (tar.gz, or zip for Windows) holding kubectl-portcullis, a SHA256SUMS
// file of the archives, and the krew plugin manifest
// deploy/krew/portcullis.yaml with the version and each archive's sha256
// filled in. Then it checks what it wrote: the sums against the archives,
// the manifest against the sums, and each archive's binary.
//
// `make cli-dist` runs it into dist/; deploy/krew/README.md says how a
// release is published and installed. The archives are the same bytes for
// the same commit, Go and version: their entries carry the commit's date
// (-source-date-epoch), no owner, and fixed modes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("dist", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "dist", "write the release files into `DIR`, replacing earlier ones")
	version := fs.String("version", "", "the release's version: the git tag (vMAJOR.MINOR.PATCH) the archives are published under")
	ldflags := fs.String("ldflags", "", "the go build -ldflags (the Makefile's: -s -w -X main.version=VERSION)")
	goCmd := fs.String("go", "go", "the go `command` that builds the CLI")
	manifest := fs.String("manifest", "deploy/krew/portcullis.yaml", "the krew plugin manifest to fill in")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "the date of every archive entry, in Unix `seconds` (default $SOURCE_DATE_EPOCH, else 0)")
	checkOnly := fs.Bool("check", false, "build nothing: check the release files already in -out")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *checkOnly {
		if err := check(*out); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "dist: %s checks out\n", *out)
		return nil
	}
	if *version == "" {
		return errors.New("-version is required")
	}
	var secs int64
	if *epoch != "" {
		var err error
		if secs, err = strconv.ParseInt(*epoch, 10, 64); err != nil || secs < 0 {
			return fmt.Errorf("-source-date-epoch %q: want Unix seconds", *epoch)
		}
	}
	tmpl, err := os.ReadFile(*manifest)
	if err != nil {
		return err
	}
	r := release{
		Version:  *version,
		Epoch:    secs,
		Manifest: tmpl,
		Build:    goBuild(ctx, *goCmd, *ldflags),
	}
	if err := r.write(*out, stderr); err != nil {
		return err
	}
	if err := check(*out); err != nil {
		return fmt.Errorf("checking what was written: %w", err)
	}
	if !isReleaseVersion(*version) {
		fmt.Fprintf(stderr, "dist: note: %s is not a release tag (vMAJOR.MINOR.PATCH): krew accepts the manifest only with one; make cli-dist VERSION=v1.2.3\n", *version)
	}
	fmt.Fprintf(stderr, "dist: wrote %d archives, SHA256SUMS and %s into %s\n", len(platforms), manifestName, *out)
	return nil
}
