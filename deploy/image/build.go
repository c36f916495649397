package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// mainModule is the module whose server the image carries.
const mainModule = "github.com/portcullis-proxy/portcullis"

// meta is what the image says about itself.
type meta struct {
	version  string // as `portcullis --version` prints it
	revision string // the commit; the label is left out when empty
	source   string // where the source is
	licenses string // SPDX expression; the label is left out when empty
	created  time.Time
}

// labels are the OCI annotation keys tools and registries read (GitHub's
// container registry links a package to its repository by .source).
func (m meta) labels() map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "Portcullis",
		"org.opencontainers.image.description": "Identity-aware access proxy for the Kubernetes API",
		"org.opencontainers.image.version":     m.version,
		"org.opencontainers.image.source":      m.source,
		"org.opencontainers.image.created":     m.created.UTC().Format(time.RFC3339),
	}
	if m.revision != "" {
		l["org.opencontainers.image.revision"] = m.revision
	}
	if m.licenses != "" {
		l["org.opencontainers.image.licenses"] = m.licenses
	}
	return l
}

// platformDir is where a platform's server is under a binaries directory:
// linux_amd64/portcullis, the layout `go install` uses for cross builds.
func platformDir(p v1.Platform) string { return p.OS + "_" + p.Architecture }

// buildServers cross-compiles the server for each platform into
// out/<os>_<arch>/portcullis the way the Makefile's build target does, with
// no cgo so the binary needs nothing from the image. goCmd runs in src, so
// go.mod's toolchain line there picks the Go (GOTOOLCHAIN=auto).
func buildServers(ctx context.Context, goCmd, src, out, version string, platforms []v1.Platform) error {
	for _, p := range platforms {
		bin := filepath.Join(out, platformDir(p), "portcullis")
		cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath",
			"-ldflags", "-s -w -X main.version="+version,
			"-o", bin, "./cmd/portcullis")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOOS="+p.OS, "GOARCH="+p.Architecture, "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building the server for %s: %w", p, err)
		}
	}
	return nil
}

// findSource is the Portcullis repository holding dir: the nearest parent
// whose go.mod declares the main module.
func findSource(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("finding the Portcullis source: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			for line := range strings.Lines(string(b)) {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && strings.Trim(f[1], `"`) == mainModule {
					return d, nil
				}
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("finding the Portcullis source: no go.mod of %s in %s or above it; pass -src", mainModule, dir)
		}
	}
}

// buildIndex assembles the multi-platform image from the servers under
// binaries (see platformDir): per platform, the shared base layer and a
// layer with that platform's server.
func buildIndex(m meta, binaries string, platforms []v1.Platform) (v1.ImageIndex, error) {
	files, err := baseFiles()
	if err != nil {
		return nil, err
	}
	base, err := layer(files, m.created)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		bin, err := os.ReadFile(filepath.Join(binaries, platformDir(p), "portcullis"))
		if err != nil {
			return nil, fmt.Errorf("reading the server for %s: %w", p, err)
		}
		server, err := layer(serverFiles(bin), m.created)
		if err != nil {
			return nil, err
		}
		img, err := image(m, p, base, server)
		if err != nil {
			return nil, fmt.Errorf("building the image for %s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	// The labels again on the index: a registry showing a multi-platform
	// image reads them here, not in one platform's config.
	return mutate.Annotations(idx, m.labels()).(v1.ImageIndex), nil
}

// image is one platform's image. Every date in it is m.created, so a
// rebuild of the same commit is the same image.
func image(m meta, p v1.Platform, base, server v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created := v1.Time{Time: m.created.UTC()}
	img, err := mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{
			Created:   created,
			CreatedBy: "deploy/image: accounts (" + userName + " is 65532), CA certificates, /home/nonroot, /tmp",
		}},
		mutate.Addendum{Layer: server, History: v1.History{
			Created:   created,
			CreatedBy: "deploy/image: " + binaryPath + " " + m.version + " for " + p.String(),
		}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = created
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint: []string{binaryPath},
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels:     m.labels(),
	}
	return mutate.ConfigFile(img, cf)
}
