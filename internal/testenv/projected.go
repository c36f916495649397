package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// ProjectedVolume is a directory laid out as the kubelet lays out a
// projected volume, the pod's service-account directory among them
// (token, ca.crt, namespace). Each file is a symlink "name -> ..data/name";
// "..data" is a symlink to a timestamped directory holding this version of
// every file. An update writes a new timestamped directory and renames a
// new symlink over "..data", so that a reader sees either the old set of
// files or the new one, never a mix. That swap, not a rewrite in place, is
// what Portcullis must notice when the kubelet rotates the token.
type ProjectedVolume struct {
	Dir string
}

// NewProjectedVolume makes dir (mode 0755, so that a container's non-root
// user can read it, as the kubelet's default mode 0644 lets it) and writes
// files into it.
func NewProjectedVolume(dir string, files map[string][]byte) (*ProjectedVolume, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("making the projected volume: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("making the projected volume: %w", err)
	}
	v := &ProjectedVolume{Dir: dir}
	return v, v.Update(files)
}

// Update replaces every file at once, as the kubelet's atomic writer does.
func (v *ProjectedVolume) Update(files map[string][]byte) error {
	old, _ := os.Readlink(filepath.Join(v.Dir, "..data"))
	version := ".." + time.Now().UTC().Format("2006_01_02_15_04_05.000000000")
	tsDir := filepath.Join(v.Dir, version)
	if err := os.Mkdir(tsDir, 0o755); err != nil {
		return fmt.Errorf("updating the projected volume: %w", err)
	}
	names := make([]string, 0, len(files))
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(tsDir, name), data, 0o644); err != nil {
			return fmt.Errorf("updating the projected volume: %w", err)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	tmp := filepath.Join(v.Dir, "..data_tmp")
	os.Remove(tmp)
	if err := os.Symlink(version, tmp); err != nil {
		return fmt.Errorf("updating the projected volume: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(v.Dir, "..data")); err != nil {
		return fmt.Errorf("updating the projected volume: swapping ..data: %w", err)
	}
	for _, name := range names {
		link := filepath.Join(v.Dir, name)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join("..data", name) {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("updating the projected volume: %w", err)
		}
	}
	if old != "" && old != version {
		os.RemoveAll(filepath.Join(v.Dir, old))
	}
	return nil
}
