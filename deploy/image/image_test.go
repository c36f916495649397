package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const testVersion = "v0.0.0-test"

var (
	testMeta = meta{
		version:  testVersion,
		revision: "0123456789abcdef0123456789abcdef01234567",
		source:   "https://github.com/portcullis-proxy/portcullis",
		created:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	amd64         = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64         = v1.Platform{OS: "linux", Architecture: "arm64"}
	testPlatforms = []v1.Platform{amd64, arm64}
)

// The servers are cross-compiled once per test run (a minute or more on a
// cold cache) and shared, like the image built from them.
var (
	serversOnce sync.Once
	serversDir  string
	serversErr  error

	indexOnce sync.Once
	index     v1.ImageIndex
	indexErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if serversDir != "" {
		os.RemoveAll(serversDir)
	}
	os.Exit(code)
}

// servers is a directory with the real server for each test platform, in
// the layout -binaries takes.
func servers(t *testing.T) string {
	t.Helper()
	serversOnce.Do(func() {
		var src string
		if src, serversErr = findSource("."); serversErr != nil {
			return
		}
		if serversDir, serversErr = os.MkdirTemp("", "portcullis-image-test-"); serversErr != nil {
			return
		}
		serversErr = buildServers(context.Background(), "go", src, serversDir, testVersion, testPlatforms)
	})
	if serversErr != nil {
		t.Fatal(serversErr)
	}
	return serversDir
}

// testIndex is the image of testMeta and the test servers.
func testIndex(t *testing.T) v1.ImageIndex {
	t.Helper()
	dir := servers(t)
	indexOnce.Do(func() { index, indexErr = buildIndex(testMeta, dir, testPlatforms) })
	if indexErr != nil {
		t.Fatal(indexErr)
	}
	return index
}

func platformImage(t *testing.T, idx v1.ImageIndex, p v1.Platform) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Equals(p) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("the index has no image for %s", p)
	return nil
}

// TestSameInputsSameImage is what makes `make image` reproducible: the
// same servers and metadata give the same index digest and a layout with
// the same bytes, wherever and whenever it is built.
func TestSameInputsSameImage(t *testing.T) {
	first := testIndex(t)
	second, err := buildIndex(testMeta, servers(t), testPlatforms)
	if err != nil {
		t.Fatal(err)
	}
	d1, err := first.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := second.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("two builds from the same inputs: index digests %s and %s", d1, d2)
	}

	dir1, dir2 := t.TempDir(), t.TempDir()
	if err := writeLayout(dir1, first, refNames(testVersion)); err != nil {
		t.Fatal(err)
	}
	if err := writeLayout(dir2, second, refNames(testVersion)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tree(t, dir1), tree(t, dir2)); diff != "" {
		t.Errorf("two layouts from the same inputs differ (-first +second):\n%s", diff)
	}

	later := testMeta
	later.created = later.created.Add(time.Second)
	third, err := buildIndex(later, servers(t), testPlatforms)
	if err != nil {
		t.Fatal(err)
	}
	if d3, err := third.Digest(); err != nil || d3 == d1 {
		t.Errorf("a different date gave digest %s (error %v), the same as before: the date does not reach the image", d3, err)
	}
}

// tree is every file under dir as "mode sha256".
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = fmt.Sprintf("%v %x", info.Mode(), sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestImageConfig checks what a runtime reads before starting the server:
// its user, entrypoint and labels, per platform, and the whole config
// against testdata (the layer digests left out: they follow the server).
func TestImageConfig(t *testing.T) {
	idx := testIndex(t)
	for _, p := range testPlatforms {
		t.Run(p.Architecture, func(t *testing.T) {
			cf, err := platformImage(t, idx, p).ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if got := (v1.Platform{OS: cf.OS, Architecture: cf.Architecture}); !got.Equals(p) {
				t.Errorf("config platform = %s, want %s", got, p)
			}
			want := v1.Config{
				User:       "65532:65532",
				Entrypoint: []string{"/usr/local/bin/portcullis"},
				WorkingDir: "/",
				Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
				Labels: map[string]string{
					"org.opencontainers.image.title":       "Portcullis",
					"org.opencontainers.image.description": "Identity-aware access proxy for the Kubernetes API",
					"org.opencontainers.image.version":     testVersion,
					"org.opencontainers.image.revision":    testMeta.revision,
					"org.opencontainers.image.source":      testMeta.source,
					"org.opencontainers.image.created":     "2026-01-02T03:04:05Z",
				},
			}
			if diff := cmp.Diff(want, cf.Config); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if len(cf.RootFS.DiffIDs) != 2 {
				t.Errorf("%d layers, want 2 (the base, the server)", len(cf.RootFS.DiffIDs))
			}
			cf.RootFS.DiffIDs = nil
			got, err := json.MarshalIndent(cf, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "config."+p.OS+"-"+p.Architecture+".json"), append(got, '\n'))
		})
	}
}

// TestIndexAnnotations: a registry shows a multi-platform image by the
// index's annotations.
func TestIndexAnnotations(t *testing.T) {
	im, err := testIndex(t).IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(testMeta.labels(), im.Annotations); diff != "" {
		t.Errorf("index annotations (-want +got):\n%s", diff)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", im.MediaType, types.OCIImageIndex)
	}
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

// filesystem is an image's files as a runtime unpacks them.
func filesystem(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files["/"+strings.TrimSuffix(h.Name, "/")] = entry{h, b}
	}
}

// TestImageFiles checks what the server finds in its filesystem: its own
// binary for the platform's machine, the accounts, the CA bundle, and
// nothing else (no shell); the listing is in testdata/files.txt.
func TestImageFiles(t *testing.T) {
	idx := testIndex(t)
	for _, tt := range []struct {
		platform v1.Platform
		machine  elf.Machine
	}{
		{amd64, elf.EM_X86_64},
		{arm64, elf.EM_AARCH64},
	} {
		t.Run(tt.platform.Architecture, func(t *testing.T) {
			files := filesystem(t, platformImage(t, idx, tt.platform))

			var listing []string
			for name, e := range files {
				listing = append(listing, fmt.Sprintf("%v %d:%d %s", fs.FileMode(e.hdr.Mode).Perm()|modeBits(e.hdr), e.hdr.Uid, e.hdr.Gid, name))
				if !e.hdr.ModTime.Equal(testMeta.created) {
					t.Errorf("%s: mtime %v, want the image's date %v", name, e.hdr.ModTime, testMeta.created)
				}
			}
			slices.SortFunc(listing, func(a, b string) int {
				return strings.Compare(a[strings.LastIndex(a, " "):], b[strings.LastIndex(b, " "):])
			})
			golden(t, filepath.Join("testdata", "files.txt"), []byte(strings.Join(listing, "\n")+"\n"))

			for _, shell := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/sh"} {
				if _, ok := files[shell]; ok {
					t.Errorf("the image has %s", shell)
				}
			}

			bin, ok := files["/usr/local/bin/portcullis"]
			if !ok {
				t.Fatal("no /usr/local/bin/portcullis")
			}
			f, err := elf.NewFile(bytes.NewReader(bin.data))
			if err != nil {
				t.Fatalf("/usr/local/bin/portcullis is not an ELF binary: %v", err)
			}
			if f.Machine != tt.machine {
				t.Errorf("/usr/local/bin/portcullis is for %v, want %v", f.Machine, tt.machine)
			}
			// Static: no interpreter to find in an image without a libc.
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("/usr/local/bin/portcullis is dynamically linked")
				}
			}

			passwd := strings.Split(string(files["/etc/passwd"].data), "\n")
			if !slices.Contains(passwd, "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin") {
				t.Errorf("/etc/passwd has no nonroot user 65532:\n%s", files["/etc/passwd"].data)
			}
			group := strings.Split(string(files["/etc/group"].data), "\n")
			if !slices.Contains(group, "nonroot:x:65532:") {
				t.Errorf("/etc/group has no nonroot group 65532:\n%s", files["/etc/group"].data)
			}
			if home := files["/home/nonroot"].hdr; home.Uid != 65532 || home.Gid != 65532 {
				t.Errorf("/home/nonroot is owned by %d:%d, want the user's 65532:65532", home.Uid, home.Gid)
			}

			checkCABundle(t, files["/etc/ssl/certs/ca-certificates.crt"].data)
		})
	}
}

func modeBits(h *tar.Header) fs.FileMode {
	m := fs.FileMode(0)
	if h.Typeflag == tar.TypeDir {
		m |= fs.ModeDir
	}
	if h.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// checkCABundle: every certificate parses, and the bundle is the pinned
// module's roots but those NSS trusts only with a constraint.
func checkCABundle(t *testing.T, pemBytes []byte) {
	t.Helper()
	var got []string
	for rest := pemBytes; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				t.Errorf("the CA bundle has %d bytes that are not PEM", len(rest))
			}
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Errorf("a certificate of the CA bundle does not parse: %v", err)
			continue
		}
		got = append(got, c.Subject.String())
	}
	var want []string
	for r := range bundle.Roots() {
		c, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		if r.Constraint == nil {
			want = append(want, c.Subject.String())
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CA bundle subjects (-want +got):\n%s", diff)
	}
	if len(got) < 100 {
		t.Errorf("the CA bundle has %d certificates; the NSS store has over 100", len(got))
	}
	if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "ISRG Root X1") }) {
		t.Errorf("the CA bundle has no ISRG Root X1 (Let's Encrypt)")
	}
}

// TestLayoutTags checks what each tag of the layout names: the tag the
// multi-platform index, tag-<arch> that platform's image alone (what umoci
// needs).
func TestLayoutTags(t *testing.T) {
	idx := testIndex(t)
	dir := t.TempDir()
	if err := writeLayout(dir, idx, refNames(testVersion)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var top v1.IndexManifest
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range top.Manifests {
		ref := d.Annotations[refNameKey]
		if _, dup := got[ref]; dup {
			t.Errorf("tag %q is in index.json twice", ref)
		}
		got[ref] = describe(d)
	}

	digest := func(img v1.Image) string {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	amdImage, armImage := digest(platformImage(t, idx, amd64)), digest(platformImage(t, idx, arm64))
	want := map[string]string{
		"latest":               "index " + idxDigest.String(),
		testVersion:            "index " + idxDigest.String(),
		"latest-amd64":         "image linux/amd64 " + amdImage,
		testVersion + "-amd64": "image linux/amd64 " + amdImage,
		"latest-arm64":         "image linux/arm64 " + armImage,
		testVersion + "-arm64": "image linux/arm64 " + armImage,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("index.json tags (-want +got):\n%s", diff)
	}

	for name, mode := range tree(t, dir) {
		if !strings.HasPrefix(mode, "-rw-r--r-- ") {
			t.Errorf("%s: mode %s, want -rw-r--r--", name, mode)
		}
	}
}

func describe(d v1.Descriptor) string {
	switch {
	case d.MediaType == types.OCIImageIndex && d.Platform == nil:
		return "index " + d.Digest.String()
	case d.MediaType == types.OCIManifestSchema1 && d.Platform != nil:
		return "image " + d.Platform.String() + " " + d.Digest.String()
	}
	return fmt.Sprintf("%s %v %s", d.MediaType, d.Platform, d.Digest)
}

// TestUmociUnpacks unpacks the layout with umoci, as the runc e2e test and
// README.md do, and runs the unpacked server when it is for this machine.
// --rootless lets it run as any user.
func TestUmociUnpacks(t *testing.T) {
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		t.Fatal("umoci is not installed: `make testenv` installs it as root (apt-get install -y umoci)")
	}
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "image")
	if err := writeLayout(layoutDir, testIndex(t), refNames(testVersion)); err != nil {
		t.Fatal(err)
	}
	for _, p := range testPlatforms {
		t.Run(p.Architecture, func(t *testing.T) {
			bundleDir := filepath.Join(dir, "bundle-"+p.Architecture)
			ref := layoutDir + ":" + platformTag("latest", p)
			if out, err := exec.Command(umoci, "unpack", "--rootless", "--image", ref, bundleDir).CombinedOutput(); err != nil {
				t.Fatalf("umoci unpack %s: %v\n%s", ref, err, out)
			}
			raw, err := os.ReadFile(filepath.Join(bundleDir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var spec struct {
				Process struct {
					User struct{ UID, GID int }
					Args []string
					Env  []string
					Cwd  string
				}
			}
			if err := json.Unmarshal(raw, &spec); err != nil {
				t.Fatal(err)
			}
			if spec.Process.User.UID != 65532 || spec.Process.User.GID != 65532 {
				t.Errorf("runtime user %d:%d, want 65532:65532", spec.Process.User.UID, spec.Process.User.GID)
			}
			if diff := cmp.Diff([]string{"/usr/local/bin/portcullis"}, spec.Process.Args); diff != "" {
				t.Errorf("runtime args (-want +got):\n%s", diff)
			}
			// umoci finds the home directory in /etc/passwd.
			if !slices.Contains(spec.Process.Env, "HOME=/home/nonroot") {
				t.Errorf("runtime environment %q has no HOME=/home/nonroot: /etc/passwd was not read", spec.Process.Env)
			}
			server := filepath.Join(bundleDir, "rootfs", "usr", "local", "bin", "portcullis")
			if p.Architecture != runtime.GOARCH {
				if _, err := os.Stat(server); err != nil {
					t.Error(err)
				}
				return
			}
			out, err := exec.Command(server, "--version").CombinedOutput()
			if got, want := strings.TrimSpace(string(out)), "portcullis "+testVersion; err != nil || got != want {
				t.Errorf("portcullis --version from the image: %q (error %v), want %q", got, err, want)
			}
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// TestRunPushes runs the command as `make image PUSH=1` does, against an
// in-memory registry: the registry then serves the index the command
// printed, with both platforms' images.
func TestRunPushes(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/portcullis:" + testVersion
	out := filepath.Join(t.TempDir(), "image")
	var stdout bytes.Buffer
	err := run(context.Background(), []string{
		"-binaries", servers(t), "-out", out,
		"-version", testVersion, "-revision", testMeta.revision,
		"-source-date-epoch", fmt.Sprint(testMeta.created.Unix()),
		"-push", ref,
	}, &stdout)
	if err != nil {
		t.Fatal(err)
	}
	want, err := testIndex(t).Digest()
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	wantOut := fmt.Sprintf("wrote %s: %s\npushed %s@%s\n", out, want, r.Context(), want)
	if diff := cmp.Diff(wantOut, stdout.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	pushed, err := remote.Index(r)
	if err != nil {
		t.Fatalf("reading the pushed index: %v", err)
	}
	if got, err := pushed.Digest(); err != nil || got != want {
		t.Errorf("pushed index digest %s (error %v), want %s", got, err, want)
	}
	for _, p := range testPlatforms {
		img, err := remote.Image(r, remote.WithPlatform(p))
		if err != nil {
			t.Errorf("pulling the %s image: %v", p, err)
			continue
		}
		if _, err := img.Layers(); err != nil {
			t.Errorf("the %s image's layers: %v", p, err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("the pushed %s image does not validate: %v", p, err)
		}
	}
}
