// Command image builds Portcullis's container image, an OCI image layout
// with the server for linux/amd64 and linux/arm64, without a container
// daemon, and pushes it when asked. `make image` runs it; README.md says
// what is in the image, why the build is reproducible, and how to run the
// image with umoci and runc.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("out", "", "write the OCI image layout to `DIR`, replacing what is there (default: bin/image in the source)")
	src := fs.String("src", "", "build the server from the Portcullis source in `DIR` (default: the one holding the working directory)")
	binaries := fs.String("binaries", "", "take the servers from `DIR`/<os>_<arch>/portcullis instead of building them")
	goCmd := fs.String("go", "go", "the go `command` that builds the server")
	platformList := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated `os/arch` list")
	version := fs.String("version", "dev", "the version stamped into the server and the labels, also a tag in the layout")
	revision := fs.String("revision", "", "the commit the image is built from, for the revision label")
	source := fs.String("source", "https://"+mainModule, "the source `URL` label")
	licenses := fs.String("licenses", "", "the licenses label, an SPDX expression (left out when empty)")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "the image's date in Unix `seconds`, for every file and the created fields (default $SOURCE_DATE_EPOCH, else 0)")
	push := fs.String("push", "", "also push the image to this `reference` (registry/name:tag), with the credentials of ~/.docker/config.json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run . [flags]\n\n"+
			"Builds Portcullis's container image as an OCI image layout, without a\n"+
			"container daemon, and optionally pushes it. See README.md.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	if *version == "" || strings.ContainsAny(*version, " \t\r\n") {
		// It becomes a tag in the layout and `portcullis --version`.
		return fmt.Errorf("reading -version %q: want a version without spaces", *version)
	}
	created := time.Unix(0, 0)
	if *epoch != "" {
		s, err := strconv.ParseInt(*epoch, 10, 64)
		if err != nil {
			return fmt.Errorf("reading -source-date-epoch %q: not a number of seconds", *epoch)
		}
		created = time.Unix(s, 0)
	}
	platforms, err := parsePlatforms(*platformList)
	if err != nil {
		return err
	}
	var ref name.Reference
	if *push != "" {
		// Checked before the build, so a typo costs no compile.
		if ref, err = name.ParseReference(*push); err != nil {
			return fmt.Errorf("reading -push: %w", err)
		}
	}

	if *src == "" && (*binaries == "" || *out == "") {
		if *src, err = findSource("."); err != nil {
			return err
		}
	}
	if *out == "" {
		*out = filepath.Join(*src, "bin", "image")
	}
	if *binaries == "" {
		tmp, err := os.MkdirTemp("", "portcullis-image-")
		if err != nil {
			return fmt.Errorf("making a directory for the builds: %w", err)
		}
		defer os.RemoveAll(tmp)
		if err := buildServers(ctx, *goCmd, *src, tmp, *version, platforms); err != nil {
			return err
		}
		*binaries = tmp
	}

	m := meta{version: *version, revision: *revision, source: *source, licenses: *licenses, created: created}
	idx, err := buildIndex(m, *binaries, platforms)
	if err != nil {
		return err
	}
	if err := writeLayout(*out, idx, refNames(*version)); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("computing the index digest: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %s\n", *out, digest)

	if ref != nil {
		if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing to %s: %w", ref, err)
		}
		fmt.Fprintf(stdout, "pushed %s@%s\n", ref.Context(), digest)
	}
	return nil
}

func parsePlatforms(list string) ([]v1.Platform, error) {
	var ps []v1.Platform
	for s := range strings.SplitSeq(list, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(s))
		if err != nil || p.OS != "linux" || p.Architecture == "" {
			return nil, fmt.Errorf("reading -platforms: %q is not linux/<arch>", s)
		}
		ps = append(ps, *p)
	}
	return ps, nil
}
