package main

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// A platform is one build of the CLI, named as GOOS/GOARCH and as krew's
// selector labels (which are the same words).
type platform struct{ OS, Arch string }

func (p platform) String() string { return p.OS + "/" + p.Arch }

// platforms are the builds of a release: what kubectl runs on, on the
// desktops and the servers people run it from.
var platforms = []platform{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

const (
	// pluginName is the krew plugin, and so `kubectl portcullis`.
	pluginName = "portcullis"
	// manifestName is the filled-in krew manifest in the release files.
	manifestName = pluginName + ".yaml"
	sumsName     = "SHA256SUMS"
	// archivePrefix starts every archive's name, and nothing else in a
	// release directory.
	archivePrefix = "portcullis-cli_"
	// versionToken and shaToken are what the manifest template says where
	// the version and an archive's sha256 go.
	versionToken = "${VERSION}"
	shaToken     = "${SHA256}"
)

// binName is the executable in p's archive: kubectl finds plugins on PATH
// as kubectl-NAME (kubectl-NAME.exe on Windows).
func binName(p platform) string {
	if p.OS == "windows" {
		return "kubectl-" + pluginName + ".exe"
	}
	return "kubectl-" + pluginName
}

// archiveName is p's archive: tar.gz, or zip on Windows, the two that
// krew unpacks, and what people on each system open without a tool.
func archiveName(version string, p platform) string {
	ext := ".tar.gz"
	if p.OS == "windows" {
		ext = ".zip"
	}
	return archivePrefix + version + "_" + p.OS + "_" + p.Arch + ext
}

// goBuild builds the CLI for p into out the way the Makefile's build
// target builds it, without cgo so that one machine builds every platform.
func goBuild(ctx context.Context, goCmd, ldflags string) func(platform, string) error {
	return func(p platform, out string) error {
		cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags", ldflags, "-o", out,
			"github.com/portcullis-proxy/portcullis/cmd/portcullis-cli")
		cmd.Env = append(os.Environ(), "GOOS="+p.OS, "GOARCH="+p.Arch, "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building portcullis-cli for %s: %w", p, err)
		}
		return nil
	}
}

// A release is what write needs to make the release files.
type release struct {
	Version string
	// Epoch is the date of every archive entry, in Unix seconds.
	Epoch int64
	// Manifest is the krew manifest template.
	Manifest []byte
	// Build writes the CLI for a platform to a file.
	Build func(p platform, out string) error
}

// write builds every platform and writes the archives, SHA256SUMS and the
// manifest into dir, first removing the release files of an earlier run
// (of any version) so that SHA256SUMS lists all there is.
func (r release) write(dir string, stderr io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, archivePrefix+"*"))
	if err != nil {
		return err
	}
	for _, f := range append(old, filepath.Join(dir, sumsName), filepath.Join(dir, manifestName)) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "portcullis-cli-dist-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// Two builds at a time: one links (on one core) while the other
	// compiles, which on two cores takes a cold build from about 5½
	// minutes to about 4.
	start := time.Now()
	bins := make([]string, len(platforms))
	errs := make([]error, len(platforms))
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, p := range platforms {
		bins[i] = filepath.Join(tmp, p.OS+"_"+p.Arch, binName(p))
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = r.Build(p, bins[i])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "dist: built %d platforms in %s\n", len(platforms), time.Since(start).Round(10*time.Millisecond))
	mtime := time.Unix(r.Epoch, 0).UTC()
	sums := map[string]string{}
	for i, p := range platforms {
		name := archiveName(r.Version, p)
		sum, err := writeArchive(filepath.Join(dir, name), p, bins[i], mtime)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		sums[name] = sum
		fmt.Fprintf(stderr, "dist: %s\n", name)
	}
	if err := os.WriteFile(filepath.Join(dir, sumsName), formatSums(sums), 0o644); err != nil {
		return err
	}
	m, err := fillManifest(r.Manifest, r.Version, sums)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, manifestName), m, 0o644)
}

// writeArchive puts the executable bin into a new archive at path, as
// binName(p) at its root, and returns the archive's hex SHA-256. Only the
// content, the name, the date given and mode 0755 go in: no owner, no
// host, no build date.
func writeArchive(path string, p platform, bin string, mtime time.Time) (string, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if p.OS == "windows" {
		zw := zip.NewWriter(&buf)
		h := &zip.FileHeader{Name: binName(p), Method: zip.Deflate, Modified: mtime}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return "", err
		}
		if _, err := w.Write(data); err != nil {
			return "", err
		}
		if err := zw.Close(); err != nil {
			return "", err
		}
	} else {
		gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return "", err
		}
		tw := tar.NewWriter(gz)
		h := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     binName(p),
			Mode:     0o755,
			Size:     int64(len(data)),
			ModTime:  mtime,
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(h); err != nil {
			return "", err
		}
		if _, err := tw.Write(data); err != nil {
			return "", err
		}
		if err := tw.Close(); err != nil {
			return "", err
		}
		if err := gz.Close(); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

// formatSums is sha256sum's format, sorted by name: `sha256sum -c
// SHA256SUMS` checks the archives.
func formatSums(sums map[string]string) []byte {
	var b bytes.Buffer
	for _, name := range slices.Sorted(maps.Keys(sums)) {
		fmt.Fprintf(&b, "%s  %s\n", sums[name], name)
	}
	return b.Bytes()
}

var sumLine = regexp.MustCompile(`^([0-9a-f]{64})  ([^/\\]+)$`)

// parseSums reads a SHA256SUMS file.
func parseSums(b []byte) (map[string]string, error) {
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		m := sumLine.FindStringSubmatch(sc.Text())
		if m == nil {
			return nil, fmt.Errorf("%s line %d: want `<sha256>  <file>`, got %q", sumsName, n, sc.Text())
		}
		if _, dup := sums[m[2]]; dup {
			return nil, fmt.Errorf("%s line %d: %s again", sumsName, n, m[2])
		}
		sums[m[2]] = m[1]
	}
	return sums, sc.Err()
}

// check verifies the release files in dir: SHA256SUMS against the
// archives, one archive per platform and no other, each holding the
// executable krew will link for the platform's processor, and the
// manifest naming each archive, its sha256 and executable.
func check(dir string) error {
	mb, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return err
	}
	m, err := parseManifest(mb)
	if err != nil {
		return fmt.Errorf("%s: %w", manifestName, err)
	}
	version := m.Spec.Version
	if err := checkManifest(m, version); err != nil {
		return fmt.Errorf("%s: %w", manifestName, err)
	}
	sb, err := os.ReadFile(filepath.Join(dir, sumsName))
	if err != nil {
		return err
	}
	sums, err := parseSums(sb)
	if err != nil {
		return err
	}
	present, err := filepath.Glob(filepath.Join(dir, archivePrefix+"*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range present {
		if _, ok := sums[filepath.Base(f)]; !ok {
			errs = append(errs, fmt.Errorf("%s is not in %s", filepath.Base(f), sumsName))
		}
	}
	for _, p := range platforms {
		name := archiveName(version, p)
		want, ok := sums[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no line for %s", sumsName, name))
			continue
		}
		delete(sums, name)
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != want {
			errs = append(errs, fmt.Errorf("%s: sha256 %x, but %s says %s", name, got, sumsName, want))
			continue
		}
		if pm := m.platform(p); pm != nil && pm.Sha256 != want {
			errs = append(errs, fmt.Errorf("%s: the sha256 of %s is %s, but %s says %s", manifestName, p, pm.Sha256, sumsName, want))
		}
		if err := checkArchive(name, data, p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	for name := range sums {
		errs = append(errs, fmt.Errorf("%s lists %s, which is not a %s archive", sumsName, name, version))
	}
	return errors.Join(errs...)
}

// checkArchive checks that an archive holds binName(p), executable, built
// for p.
func checkArchive(name string, data []byte, p platform) error {
	var files map[string][]byte
	var modes map[string]os.FileMode
	var err error
	if strings.HasSuffix(name, ".zip") {
		files, modes, err = readZip(data)
	} else {
		files, modes, err = readTarGz(data)
	}
	if err != nil {
		return err
	}
	bin, ok := files[binName(p)]
	if !ok {
		return fmt.Errorf("no %s in it", binName(p))
	}
	if len(files) != 1 {
		return fmt.Errorf("holds %d files, want only %s", len(files), binName(p))
	}
	if modes[binName(p)]&0o111 == 0 {
		return fmt.Errorf("%s is not executable (mode %v)", binName(p), modes[binName(p)])
	}
	return checkExecutable(bin, p)
}

func readTarGz(data []byte) (map[string][]byte, map[string]os.FileMode, error) {
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	files, modes := map[string][]byte{}, map[string]os.FileMode{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, modes, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if h.Typeflag != tar.TypeReg || path.Clean(h.Name) != h.Name || strings.Contains(h.Name, "/") {
			return nil, nil, fmt.Errorf("entry %q: want only regular files at the root", h.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, err
		}
		files[h.Name], modes[h.Name] = b, h.FileInfo().Mode()
	}
}

func readZip(data []byte) (map[string][]byte, map[string]os.FileMode, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, nil, err
	}
	files, modes := map[string][]byte{}, map[string]os.FileMode{}
	for _, f := range zr.File {
		if !f.Mode().IsRegular() || path.Clean(f.Name) != f.Name || strings.Contains(f.Name, "/") {
			return nil, nil, fmt.Errorf("entry %q: want only regular files at the root", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, nil, err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, nil, err
		}
		files[f.Name], modes[f.Name] = b, f.Mode()
	}
	return files, modes, nil
}

var releaseVersion = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// isReleaseVersion reports whether v is a version krew takes: a semantic
// version with a leading v, as release tags are.
func isReleaseVersion(v string) bool { return releaseVersion.MatchString(v) }
