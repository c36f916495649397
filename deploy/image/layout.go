package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const refNameKey = "org.opencontainers.image.ref.name"

// refNames are the tags the layout gives the image: latest and the version.
func refNames(version string) []string {
	if version == "latest" {
		return []string{"latest"}
	}
	return []string{"latest", version}
}

// platformTag is the tag of one platform's image in the layout:
// latest-amd64, v1.2.0-arm64.
func platformTag(tag string, p v1.Platform) string {
	return tag + "-" + p.Architecture + p.Variant
}

// writeLayout replaces dir with an OCI image layout of idx, where each tag
// names two things:
//
//   - tag: the multi-platform index, what a registry would hold (what
//     skopeo copy --all oci:DIR:tag copies);
//   - tag-<arch>: one platform's image, for tools that cannot choose from an
//     index, umoci among them: it refuses a tag that leads to more than one
//     image ("tag is ambiguous").
//
// index.json lists them in that order, so the same idx and tags write the
// same bytes.
func writeLayout(dir string, idx v1.ImageIndex, tags []string) error {
	if err := clearLayout(dir); err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("reading the image index: %w", err)
	}
	var adds []mutate.IndexAddendum
	for _, tag := range tags {
		adds = append(adds, mutate.IndexAddendum{Add: idx, Descriptor: v1.Descriptor{
			Annotations: map[string]string{refNameKey: tag},
		}})
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return fmt.Errorf("reading the image for %s: %w", d.Platform, err)
		}
		for _, tag := range tags {
			adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
				Platform:    d.Platform,
				Annotations: map[string]string{refNameKey: platformTag(tag, *d.Platform)},
			}})
		}
	}
	top := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	if _, err := layout.Write(dir, top); err != nil {
		return fmt.Errorf("writing the image layout to %s: %w", dir, err)
	}
	// go-containerregistry leaves layers readable by their owner only and
	// index.json executable: the same modes everywhere let another user
	// (runc's, a web server's) read the layout, and two builds compare
	// equal with cmp -r or rsync.
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		if err := os.Chmod(path, mode); err != nil {
			return fmt.Errorf("writing the image layout to %s: %w", dir, err)
		}
		return nil
	})
}

// clearLayout removes dir when it is an image layout or empty, and refuses
// to remove anything else: -out might be mistyped.
func clearLayout(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clearing %s for the image layout: %w", dir, err)
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("clearing %s for the image layout: it is not empty and not an image layout; remove it or choose another -out", dir)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing %s for the image layout: %w", dir, err)
	}
	return nil
}
