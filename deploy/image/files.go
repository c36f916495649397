package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The user the server runs as. 65532 is the "nonroot" user of the
// distroless images, so policies and volume permissions written for those
// (runAsUser, fsGroup) fit this image too.
const (
	uid      = 65532
	userName = "nonroot"
	home     = "/home/nonroot"
)

// Where things are in the image.
const (
	binaryPath = "/usr/local/bin/portcullis"
	// Go's crypto/x509 reads this file first on Linux; so do most other
	// TLS stacks (Debian, Ubuntu, Alpine keep their bundle here).
	caBundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

// file is one entry of a layer: a directory when name ends in "/".
type file struct {
	name     string // absolute path in the image
	mode     int64  // permission bits, and the sticky bit for /tmp
	uid, gid int
	data     []byte
}

func dir(name string, mode int64, owner int) file {
	return file{name: strings.TrimSuffix(name, "/") + "/", mode: mode, uid: owner, gid: owner}
}

// baseFiles is everything in the image but the server: the accounts, the CA
// certificates, a home for the user and /tmp. There is no shell and no
// other program.
func baseFiles() ([]file, error) {
	roots, err := caBundle()
	if err != nil {
		return nil, err
	}
	return []file{
		dir("/etc", 0o755, 0),
		{name: "/etc/passwd", mode: 0o644, data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
				fmt.Sprintf("%s:x:%d:%d:%s:%s:/sbin/nologin\n", userName, uid, uid, userName, home))},
		{name: "/etc/group", mode: 0o644, data: []byte(
			"root:x:0:\n" +
				"nobody:x:65534:\n" +
				fmt.Sprintf("%s:x:%d:\n", userName, uid))},
		dir("/etc/ssl", 0o755, 0),
		dir("/etc/ssl/certs", 0o755, 0),
		{name: caBundlePath, mode: 0o644, data: roots},
		dir("/home", 0o755, 0),
		dir(home, 0o700, uid),
		dir("/root", 0o700, 0),
		dir("/tmp", 0o1777, 0),
	}, nil
}

// serverFiles is the layer that differs between platforms: the server and
// the directories above it.
func serverFiles(binary []byte) []file {
	return []file{
		dir("/usr", 0o755, 0),
		dir("/usr/local", 0o755, 0),
		dir("/usr/local/bin", 0o755, 0),
		{name: binaryPath, mode: 0o755, data: binary},
	}
}

// caBundle is the Mozilla (NSS) root store as the pinned
// golang.org/x/crypto/x509roots/fallback module carries it, as PEM. Taking
// it from a Go module rather than the build machine's /etc/ssl means every
// machine builds the same bundle, and go.mod says which one; a new bundle is
// a version bump in deploy/image/go.mod.
//
// Roots that NSS trusts only with a constraint (today: for certificates
// issued before a distrust date) are left out: a PEM file cannot carry the
// constraint, and trusting them without it would accept what NSS refuses.
func caBundle() ([]byte, error) {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, fmt.Errorf("encoding the CA bundle: %w", err)
		}
	}
	if b.Len() == 0 {
		return nil, fmt.Errorf("building the CA bundle: x509roots/fallback has no unconstrained roots")
	}
	return b.Bytes(), nil
}

// layer is a gzipped tar of files that depends on nothing but its
// arguments: entries sorted by name, every time the same mtime, numeric
// owners without names, no access or change times. The same files give
// the same digest on any machine with the same Go (compress/gzip's output
// is part of the digest, which is why go.mod pins the toolchain).
func layer(files []file, mtime time.Time) (v1.Layer, error) {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.name, b.name) })
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i, f := range files {
		if i > 0 && f.name == files[i-1].name {
			return nil, fmt.Errorf("building a layer: %s is in it twice", f.name)
		}
		name := strings.TrimPrefix(f.name, "/")
		h := &tar.Header{
			Name:     name,
			Mode:     f.mode,
			Uid:      f.uid,
			Gid:      f.gid,
			ModTime:  mtime,
			Typeflag: tar.TypeReg,
			Size:     int64(len(f.data)),
		}
		if strings.HasSuffix(name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		// Runtimes create a missing parent each their own way (owner,
		// mode); listing every one keeps the result the same everywhere.
		if parent := path.Dir(strings.TrimSuffix(f.name, "/")) + "/"; parent != "//" &&
			!slices.ContainsFunc(files[:i], func(d file) bool { return d.name == parent }) {
			return nil, fmt.Errorf("building a layer: %s has no entry for its directory %s", f.name, parent)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing %s to a layer: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("writing %s to a layer: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing a layer's tar: %w", err)
	}
	tarBytes := b.Bytes()
	l, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarBytes)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching,
	)
	if err != nil {
		return nil, fmt.Errorf("compressing a layer: %w", err)
	}
	return l, nil
}
