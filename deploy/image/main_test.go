package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParsePlatforms(t *testing.T) {
	for _, tt := range []struct {
		list    string
		want    []v1.Platform
		wantErr string
	}{
		{list: "linux/amd64,linux/arm64", want: []v1.Platform{amd64, arm64}},
		{list: " linux/arm64 ", want: []v1.Platform{arm64}},
		{list: "linux/arm/v7", want: []v1.Platform{{OS: "linux", Architecture: "arm", Variant: "v7"}}},
		{list: "darwin/arm64", wantErr: `"darwin/arm64" is not linux/<arch>`},
		{list: "linux/amd64,", wantErr: `"" is not linux/<arch>`},
	} {
		t.Run(tt.list, func(t *testing.T) {
			got, err := parsePlatforms(tt.list)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLayerRefuses(t *testing.T) {
	for _, tt := range []struct {
		name    string
		files   []file
		wantErr string
	}{
		{
			name:    "a file without its directory",
			files:   []file{dir("/etc", 0o755, 0), {name: "/etc/ssl/certs/x.pem", mode: 0o644}},
			wantErr: "/etc/ssl/certs/x.pem has no entry for its directory /etc/ssl/certs/",
		},
		{
			name:    "a directory without its parent",
			files:   []file{dir("/usr/local", 0o755, 0)},
			wantErr: "/usr/local/ has no entry for its directory /usr/",
		},
		{
			name:    "a name twice",
			files:   []file{dir("/etc", 0o755, 0), {name: "/etc/passwd"}, {name: "/etc/passwd"}},
			wantErr: "/etc/passwd is in it twice",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := layer(tt.files, time.Unix(0, 0))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one saying %s", err, tt.wantErr)
			}
		})
	}
}

// TestClearLayout: -out replaces an earlier layout, never a directory
// that is something else.
func TestClearLayout(t *testing.T) {
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "image")
	if err := os.MkdirAll(filepath.Join(layoutDir, "blobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layoutDir, "oci-layout"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := clearLayout(layoutDir); err != nil {
		t.Errorf("clearing an image layout: %v", err)
	}
	if _, err := os.Stat(layoutDir); !os.IsNotExist(err) {
		t.Errorf("the layout is still there: %v", err)
	}
	if err := clearLayout(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("clearing a directory that is not there: %v", err)
	}

	other := filepath.Join(dir, "src")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "main.go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := clearLayout(other); err == nil || !strings.Contains(err.Error(), "not an image layout") {
		t.Errorf("clearing a source directory: error %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(other, "main.go")); err != nil {
		t.Errorf("the source directory lost its file: %v", err)
	}
}

func TestFindSource(t *testing.T) {
	got, err := findSource(".")
	if err != nil {
		t.Fatal(err)
	}
	want, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("findSource(.) = %s, want the repository root %s", got, want)
	}
	if _, err := findSource(t.TempDir()); err == nil || !strings.Contains(err.Error(), "pass -src") {
		t.Errorf("findSource outside the repository: error %v, want one saying to pass -src", err)
	}
}
