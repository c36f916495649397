package testenv

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

// howToGetRunc is appended when runc or umoci is missing: containers run
// here without Docker, with Debian's runc (crun fails on hybrid cgroups)
// and umoci to unpack an OCI image layout.
const howToGetRunc = "containers run with Debian's runc and umoci: `make testenv` installs them as root (apt-get install -y runc umoci)"

// BuildImage builds Portcullis's container image from this source
// checkout for this machine's architecture, with the builder `make image`
// runs (deploy/image), into a new OCI image layout. It returns the
// layout's directory and the tag of the one platform's image, for
// ContainerSpec.
func BuildImage(t testing.TB, ctx context.Context) (layout, ref string) {
	t.Helper()
	tools, err := toolsDir()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	src := filepath.Join(tools, "..", "..", "..")
	layout = filepath.Join(t.TempDir(), "image")
	cmd := exec.CommandContext(ctx, "go", "run", ".", "-out", layout, "-src", src,
		"-platforms", "linux/"+runtime.GOARCH, "-version", "test")
	cmd.Dir = filepath.Join(src, "deploy", "image")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: building the container image (cd deploy/image && go run . …): %v\n%s", err, out)
	}
	return layout, "test-" + runtime.GOARCH
}

// ContainerSpec says how to run an image the way a pod would run it.
type ContainerSpec struct {
	// Layout and Ref name the image: an OCI image layout directory and a
	// reference (tag) in its index.json, as umoci unpack takes them.
	Layout, Ref string
	// Args are added after the image's entrypoint; Env to its environment.
	Args, Env []string
	// Mounts are bind mounts into the container, read-only unless
	// Writable.
	Mounts []Mount
}

// PodVolume writes files into a new directory, removed when the test ends,
// as a pod's ConfigMap or Secret volume holds them: readable by the
// container's user, whichever it is. It returns the directory, for
// Mount.Source.
func PodVolume(t testing.TB, files map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp(t.TempDir(), "volume-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	for name, content := range files {
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
		}
	}
	if err != nil {
		t.Fatalf("testenv: writing a pod volume: %v", err)
	}
	return dir
}

// A Mount binds a host path into a container.
type Mount struct {
	Source, Destination string
	Writable            bool
}

// Container is a running container.
type Container struct {
	ID     string
	Bundle string
	// Config is the OCI runtime configuration it was started with, for
	// assertions (user, read-only root).
	Config map[string]any
	proc   *Process
}

// RunContainer unpacks an image and runs it with runc as a pod's container
// would run: a read-only root filesystem, the image's user, no new
// privileges, no capabilities, a tmpfs on /tmp; but in the host's network
// namespace, so that it listens on the host's loopback. It waits until
// readyURL answers 200 (with tlsConfig's roots) and removes the container
// when the test ends.
func RunContainer(t testing.TB, ctx context.Context, spec ContainerSpec, readyURL string, tlsConfig *tls.Config) *Container {
	t.Helper()
	c, err := startContainer(ctx, t.TempDir(), spec, readyURL, tlsConfig)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("container %s log (%s) ends:\n%s", c.ID, c.proc.LogPath, c.proc.LogTail(60))
		}
	})
	return c
}

func startContainer(ctx context.Context, dir string, spec ContainerSpec, readyURL string, tlsConfig *tls.Config) (*Container, error) {
	c, runc, err := prepareContainer(ctx, dir, spec)
	if err != nil {
		return nil, err
	}
	c.proc, err = StartServerProcess(ctx, "container "+c.ID, runc, dir,
		[]string{"run", "--bundle", c.Bundle, c.ID}, os.Environ(), readyURL, tlsConfig)
	if err != nil {
		exec.Command(runc, "delete", "--force", c.ID).Run()
		return nil, fmt.Errorf("running the container with runc: %w", err)
	}
	return c, nil
}

// RunContainerCommand runs an image as RunContainer does, but to its end,
// as a Job's pod would (e.g. `portcullis --check-config`), and returns
// what it printed and how it ended.
func RunContainerCommand(t testing.TB, ctx context.Context, spec ContainerSpec) (output string, err error) {
	t.Helper()
	dir := t.TempDir()
	c, runc, err := prepareContainer(ctx, dir, spec)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer exec.Command(runc, "delete", "--force", c.ID).Run()
	out, err := exec.CommandContext(ctx, runc, "run", "--bundle", c.Bundle, c.ID).CombinedOutput()
	return string(out), err
}

// prepareContainer unpacks the image into a bundle under dir and writes
// its pod-like runtime configuration; it returns the container and the
// path of runc.
func prepareContainer(ctx context.Context, dir string, spec ContainerSpec) (*Container, string, error) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		return nil, "", fmt.Errorf("runc is not installed: %s", howToGetRunc)
	}
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		return nil, "", fmt.Errorf("umoci is not installed: %s", howToGetRunc)
	}
	c := &Container{ID: fmt.Sprintf("portcullis-e2e-%d-%d", os.Getpid(), time.Now().UnixNano()), Bundle: filepath.Join(dir, "bundle")}
	if out, err := exec.CommandContext(ctx, umoci, "unpack", "--image", spec.Layout+":"+spec.Ref, c.Bundle).CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("unpacking %s:%s with umoci: %v\n%s", spec.Layout, spec.Ref, err, out)
	}
	configPath := filepath.Join(c.Bundle, "config.json")
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return nil, "", err
	}
	if err := json.Unmarshal(raw, &c.Config); err != nil {
		return nil, "", fmt.Errorf("umoci's config.json: %w", err)
	}
	if err := adaptRuntimeConfig(c.Config, spec); err != nil {
		return nil, "", err
	}
	if raw, err = json.MarshalIndent(c.Config, "", "\t"); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(configPath, raw, 0o600); err != nil {
		return nil, "", err
	}
	return c, runc, nil
}

// adaptRuntimeConfig turns umoci's runtime configuration into a pod-like
// one: arguments, environment and mounts added, root read-only, no
// capabilities, no terminal, and the host's network namespace.
func adaptRuntimeConfig(cfg map[string]any, spec ContainerSpec) error {
	process, ok := cfg["process"].(map[string]any)
	if !ok {
		return errors.New("umoci's config.json has no process")
	}
	args, _ := process["args"].([]any)
	for _, a := range spec.Args {
		args = append(args, a)
	}
	process["args"] = args
	env, _ := process["env"].([]any)
	for _, e := range spec.Env {
		env = append(env, e)
	}
	process["env"] = env
	process["terminal"] = false
	process["noNewPrivileges"] = true
	// The Helm chart's securityContext drops every capability (the
	// restricted Pod Security Standard); umoci grants runc's defaults.
	process["capabilities"] = map[string]any{}
	root, ok := cfg["root"].(map[string]any)
	if !ok {
		return errors.New("umoci's config.json has no root")
	}
	root["readonly"] = true
	mounts, _ := cfg["mounts"].([]any)
	mounts = append(mounts, map[string]any{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
		"options": []any{"nosuid", "nodev", "mode=1777", "size=64m"}})
	for _, m := range spec.Mounts {
		opts := []any{"rbind", "ro"}
		if m.Writable {
			opts = []any{"rbind", "rw"}
		}
		mounts = append(mounts, map[string]any{"destination": m.Destination, "type": "bind", "source": m.Source, "options": opts})
	}
	cfg["mounts"] = mounts
	if linux, ok := cfg["linux"].(map[string]any); ok {
		nss, _ := linux["namespaces"].([]any)
		linux["namespaces"] = slices.DeleteFunc(nss, func(ns any) bool {
			m, _ := ns.(map[string]any)
			return m["type"] == "network"
		})
	}
	return nil
}

// stop ends the container and removes it.
func (c *Container) stop() {
	c.proc.Stop(10 * time.Second)
	if runc, err := exec.LookPath("runc"); err == nil {
		exec.Command(runc, "delete", "--force", c.ID).Run()
	}
}

// PID is the host's process ID of the container's process, as runc reports
// it: a test reads /proc/PID to see what user the process really runs as.
func (c *Container) PID(ctx context.Context) (int, error) {
	out, err := exec.CommandContext(ctx, "runc", "state", c.ID).Output()
	if err != nil {
		return 0, fmt.Errorf("runc state %s: %w", c.ID, err)
	}
	var state struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &state); err != nil {
		return 0, fmt.Errorf("runc state %s: %w", c.ID, err)
	}
	if state.Status != "running" || state.Pid == 0 {
		return 0, fmt.Errorf("container %s is %s", c.ID, state.Status)
	}
	return state.Pid, nil
}
