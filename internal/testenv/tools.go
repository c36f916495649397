package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// A toolModule is one pinned upstream module under tools/ and the commands
// built from it, or the data taken from it.
type toolModule struct {
	dir      string            // directory under tools/
	version  string            // upstream version, for the cache key and messages
	packages []string          // main packages to build; binaries are named by their last path element
	rename   map[string]string // go build's output name → the tool's name
	ldflags  string
	note     string // shown when a build starts
	// assets are files of the upstream module copied next to the
	// binaries (module, then path inside it), so that tests do not depend
	// on the module cache staying put.
	assets map[string][]string
	// data, if set, makes the tool a directory of the upstream module,
	// such as a database, instead of a binary: nothing is built, and the
	// directory is copied whole into the cache, for the same reason.
	data *moduleData
}

// A moduleData is a directory of a pinned upstream module that is a tool
// in itself.
type moduleData struct {
	name   string // the tool's name, and the copy's
	module string // required by the tool module's go.mod, which pins the version
	dir    string // slash-separated, inside the module
}

// Binaries built from the pinned modules, by command name.
const (
	KubeAPIServer = "kube-apiserver"
	Kubectl       = "kubectl"
	Etcd          = "etcd"
	Kwok          = "kwok"
	// Helm renders and lints the chart in deploy/helm, and renders the
	// plain manifests in deploy/kubernetes from it.
	Helm = "helm"
	// Directories of CustomResourceDefinitions, one YAML file each.
	PrometheusOperatorCRDs = "prometheus-operator-crds"
	CertManagerCRDs        = "cert-manager-crds"
	// FakeNodeTool is the fake kubelet of FakeNode, built from our own
	// source in tools/fakenode.
	FakeNodeTool = "fakenode"
)

// KubernetesVersion is the pinned Kubernetes release of kube-apiserver and kubectl.
const KubernetesVersion = "v1.37.2"

var toolModules = map[string]toolModule{
	KubeAPIServer: kubernetesTools,
	Kubectl:       kubernetesTools,
	Etcd: {
		dir:      "etcd",
		version:  "v3.7.3",
		packages: []string{"go.etcd.io/etcd/server/v3"},
		// go build names a /v3 module's binary after the element before it.
		rename: map[string]string{"server": Etcd},
	},
	Kwok: {
		dir:      "kwok",
		version:  "v0.8.0",
		packages: []string{"sigs.k8s.io/kwok/cmd/kwok"},
		assets:   map[string][]string{"sigs.k8s.io/kwok": kwokAssets},
	},
	Helm: {
		dir:      "helm",
		version:  HelmVersion,
		packages: []string{"helm.sh/helm/v4/cmd/helm"},
		// Helm's own release build stamps the version; without it
		// `helm version` says only v4.3.
		ldflags: "-X helm.sh/helm/v4/internal/version.version=" + HelmVersion,
	},
	// The CustomResourceDefinitions of the resources the chart can render
	// beyond Kubernetes's own, so that its tests have the API server check
	// them as a cluster with those operators would.
	PrometheusOperatorCRDs: {
		dir:     "prometheus-operator-crds",
		version: "v0.85.0",
		data:    &moduleData{name: PrometheusOperatorCRDs, module: "github.com/prometheus-operator/prometheus-operator", dir: "example/prometheus-operator-crd"},
	},
	CertManagerCRDs: {
		dir:     "cert-manager-crds",
		version: "v1.21.2",
		data:    &moduleData{name: CertManagerCRDs, module: "github.com/cert-manager/cert-manager", dir: "deploy/crds"},
	},
	FakeNodeTool: {
		dir: "fakenode",
		// Our own source, pinned by the hash of the module's files.
		version:  "local",
		packages: []string{"github.com/portcullis-proxy/portcullis/internal/testenv/tools/fakenode"},
	},

	// The lint tools, which make lint and make vulncheck ask for by name
	// (testenv path).
	"staticcheck": {
		dir:      "staticcheck",
		version:  "v0.8.2", // staticcheck 2026.2.2
		packages: []string{"honnef.co/go/tools/cmd/staticcheck"},
	},
	"deadcode": {
		dir:      "deadcode",
		version:  "v0.52.0",
		packages: []string{"golang.org/x/tools/cmd/deadcode"},
	},
	"govulncheck": {
		dir:      "govulncheck",
		version:  "v1.9.0",
		packages: []string{"golang.org/x/vuln/cmd/govulncheck"},
	},
	// govulncheck's database, for -db file://DIR: vuln.go.dev cannot be
	// reached here or in CI, the module proxy can. The vulndb module holds
	// each report as the OSV JSON vuln.go.dev serves, in data/osv, and
	// govulncheck takes a directory of OSV files as a database, indexing it
	// as vulndb's own cmd/indexdb would (the same findings; indexdb itself
	// takes minutes to build). The pin in tools/vulndb/go.mod is the
	// database's date.
	"vulndb": {
		dir:     "vulndb",
		version: "v0.0.0-20261105234957-e22db6528018",
		data:    &moduleData{name: "vulndb", module: "golang.org/x/vulndb", dir: "data/osv"},
	},
}

var kubernetesTools = toolModule{
	dir:      "kubernetes",
	version:  KubernetesVersion,
	packages: []string{"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubectl"},
	note:     "about 5 minutes cold on 2 cores",
	// Without the version stamp the server reports v0.0.0-master+$Format:%H$,
	// which kubectl cannot parse.
	ldflags: "-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion +
		" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37",
}

// HelmVersion is the pinned Helm release that lints and renders the chart.
const HelmVersion = "v4.3.2"

// ToolNames lists every tool the tests need, in build order: what testenv
// prepare builds. The lint tools above are built when the Makefile first asks.
func ToolNames() []string {
	return []string{Etcd, KubeAPIServer, Kubectl, Kwok, FakeNodeTool, Helm, PrometheusOperatorCRDs, CertManagerCRDs}
}

// toolsDir finds tools/ next to this source file. testenv runs from a source
// checkout (tests, the demo), so the path recorded by the compiler is real;
// PORTCULLIS_TESTENV_TOOLS overrides it for unusual layouts.
func toolsDir() (string, error) {
	if d := os.Getenv("PORTCULLIS_TESTENV_TOOLS"); d != "" {
		return d, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locating testenv tools: no caller information; set PORTCULLIS_TESTENV_TOOLS to internal/testenv/tools")
	}
	d := filepath.Join(filepath.Dir(file), "tools")
	if _, err := os.Stat(filepath.Join(d, "kubernetes", "go.mod")); err != nil {
		return "", fmt.Errorf("locating testenv tools: %w; run from a Portcullis source checkout or set PORTCULLIS_TESTENV_TOOLS", err)
	}
	return d, nil
}

// CacheDir is where built binaries are kept: $PORTCULLIS_TESTENV_CACHE, or
// the user cache directory.
func CacheDir() (string, error) {
	if d := os.Getenv("PORTCULLIS_TESTENV_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache directory: %w; set PORTCULLIS_TESTENV_CACHE", err)
	}
	return filepath.Join(d, "portcullis", "testenv"), nil
}

// binDir is the cache directory of one tool module: its name, upstream
// version, and a hash of every file in the module directory (go.mod and
// go.sum for the pinned upstream modules, also the source of our own) and
// the Go version, so that any change to the pins, the source or the
// toolchain builds afresh.
func (m toolModule) binDir(tools, cache string) (string, error) {
	h := sha256.New()
	// go.mod and go.sum first and bare, then any other file with its name:
	// a module of only those two keeps the hash, and the cached build, it
	// had before other files counted.
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(tools, m.dir, f))
		if err != nil {
			return "", fmt.Errorf("reading tool module %s: %w", m.dir, err)
		}
		h.Write(b)
	}
	root := filepath.Join(tools, m.dir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "go.mod" || rel == "go.sum" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// Name and length first, so that no two file sets hash alike.
		fmt.Fprintf(h, "\x00%s\x00%d\x00", filepath.ToSlash(rel), len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("reading tool module %s: %w", m.dir, err)
	}
	io.WriteString(h, runtime.Version()+m.ldflags)
	for mod, files := range m.assets {
		io.WriteString(h, mod+strings.Join(files, ","))
	}
	return filepath.Join(cache, fmt.Sprintf("%s-%s-%s", m.dir, m.version, hex.EncodeToString(h.Sum(nil))[:12])), nil
}

// Tool returns the path of a built binary, building its module first if the
// cache does not have it. Progress goes to progress (may be nil).
func Tool(ctx context.Context, name string, progress io.Writer) (string, error) {
	m, ok := toolModules[name]
	if !ok {
		return "", fmt.Errorf("unknown tool %q", name)
	}
	tools, err := toolsDir()
	if err != nil {
		return "", err
	}
	return m.tool(ctx, tools, name, progress)
}

// A ModuleTool is a pinned Go module outside testenv's own tools/, such as
// the benchmark harness's peers, built and cached like the tools above.
type ModuleTool struct {
	Dir     string // the module directory (go.mod and go.sum pin the upstream)
	Version string // upstream version, for the cache key and messages
	Package string // the main package to build
	Name    string // the binary's name, if go build names it otherwise
	Note    string // shown when a build starts, e.g. how long it takes
}

// BuildModuleTool returns the path of t's binary, building it into the
// cache first if needed.
func BuildModuleTool(ctx context.Context, t ModuleTool, progress io.Writer) (string, error) {
	dir, err := filepath.Abs(t.Dir)
	if err != nil {
		return "", err
	}
	m := toolModule{dir: filepath.Base(dir), version: t.Version, packages: []string{t.Package}, note: t.Note}
	name := m.commandNames()[0]
	if t.Name != "" && t.Name != name {
		m.rename = map[string]string{name: t.Name}
		name = t.Name
	}
	return m.tool(ctx, filepath.Dir(dir), name, progress)
}

// tool builds m from its directory under tools unless the cache has it.
func (m toolModule) tool(ctx context.Context, tools, name string, progress io.Writer) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir, err := m.binDir(tools, cache)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	if isBuilt(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("creating cache directory: %w", err)
	}
	// One build per module at a time across processes: `go test ./...` runs
	// package test binaries in parallel, and each may need kube-apiserver.
	unlock, err := lockFile(ctx, filepath.Join(cache, m.dir+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if isBuilt(bin) { // built by another process while we waited
		return bin, nil
	}
	if err := m.build(ctx, filepath.Join(tools, m.dir), dir, progress); err != nil {
		return "", err
	}
	return bin, nil
}

func (m toolModule) build(ctx context.Context, src, dst string, progress io.Writer) error {
	if progress == nil {
		progress = io.Discard
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building %s %s: the go command is not on PATH: install Go 1.26 or newer", m.dir, m.version)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), m.dir+"-build-")
	if err != nil {
		return fmt.Errorf("building %s: %w", m.dir, err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	fmt.Fprintf(progress, "testenv: building %s from %s %s into %s (once per machine%s)\n",
		strings.Join(m.commandNames(), ", "), m.dir, m.version, dst, strings.TrimSuffix("; "+m.note, "; "))
	if len(m.packages) > 0 {
		args := []string{"build", "-trimpath", "-ldflags", strings.TrimSpace("-s -w " + m.ldflags), "-o", tmp + string(filepath.Separator)}
		args = append(args, m.packages...)
		cmd := goCommand(ctx, goBin, src, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s %s in %s: %w\n%s\nthe Go module proxy must be reachable for the first build", m.dir, m.version, src, err, tail(out.String(), 40))
		}
	}
	if err := m.copyAssets(ctx, goBin, src, tmp); err != nil {
		return err
	}
	if d := m.data; d != nil {
		modDir, err := moduleDir(ctx, goBin, src, d.module)
		if err != nil {
			return err
		}
		if err := os.CopyFS(filepath.Join(tmp, d.name), os.DirFS(filepath.Join(modDir, filepath.FromSlash(d.dir)))); err != nil {
			return fmt.Errorf("copying %s from %s: %w", d.dir, d.module, err)
		}
	}
	for from, to := range m.rename {
		if err := os.Rename(filepath.Join(tmp, from), filepath.Join(tmp, to)); err != nil {
			return fmt.Errorf("building %s: %w", m.dir, err)
		}
	}
	// Publish atomically: a reader either sees no directory or a complete one.
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("building %s: publishing binaries: %w", m.dir, err)
	}
	fmt.Fprintf(progress, "testenv: built %s in %s\n", strings.Join(m.commandNames(), ", "), time.Since(start).Round(time.Second))
	return nil
}

// copyAssets copies the listed files of upstream modules into dst/assets,
// keeping their paths.
func (m toolModule) copyAssets(ctx context.Context, goBin, src, dst string) error {
	for mod, files := range m.assets {
		modDir, err := moduleDir(ctx, goBin, src, mod)
		if err != nil {
			return err
		}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(modDir, f))
			if err != nil {
				return fmt.Errorf("copying %s from %s: %w", f, mod, err)
			}
			to := filepath.Join(dst, "assets", f)
			if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(to, b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// moduleDir returns the directory of module mod, as required by the tool
// module in src, in the module cache, downloading it first if needed.
func moduleDir(ctx context.Context, goBin, src, mod string) (string, error) {
	cmd := goCommand(ctx, goBin, src, "mod", "download", "-json", mod)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// On failure the JSON, if any, says why in Error.
	var m struct{ Dir, Error string }
	json.Unmarshal(out, &m)
	if err != nil || m.Dir == "" {
		return "", fmt.Errorf("locating module %s in %s: %v\n%s\nthe Go module proxy must be reachable for the first build", mod, src, err, strings.TrimSpace(m.Error+"\n"+tail(stderr.String(), 20)))
	}
	return m.Dir, nil
}

// goCommand runs the go command in a tool module's directory. The tool
// modules are separate from Portcullis's own; a go.work or a
// GOFLAGS=-mod=vendor from the caller must not leak into them.
func goCommand(ctx context.Context, goBin, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	return cmd
}

func (m toolModule) commandNames() []string {
	var names []string
	for _, p := range m.packages {
		n := filepath.Base(p)
		if strings.HasPrefix(n, "v") && len(n) > 1 && strings.Trim(n[1:], "0123456789") == "" {
			n = filepath.Base(filepath.Dir(p))
		}
		if r, ok := m.rename[n]; ok {
			n = r
		}
		names = append(names, n)
	}
	if m.data != nil {
		names = append(names, m.data.name)
	}
	return names
}

// isBuilt reports whether path is a built tool: an executable file, or a
// data tool's directory.
func isBuilt(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && (fi.IsDir() || fi.Mode().IsRegular() && fi.Mode()&0o111 != 0)
}

// lockFile takes an exclusive flock, waiting until ctx is done.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening build lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("taking build lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for build lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
