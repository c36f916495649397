package main

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const templatePath = "../../../deploy/krew/portcullis.yaml"

// fakeExecutable is the smallest file debug/elf, debug/macho or debug/pe
// reads as an executable for p: a header, and a body that tells builds
// apart.
func fakeExecutable(t *testing.T, p platform, body string) []byte {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	switch p.OS {
	case "linux":
		h := elf.Header64{Type: uint16(elf.ET_EXEC), Version: 1, Ehsize: 64}
		copy(h.Ident[:], elf.ELFMAG)
		h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
		h.Machine = uint16(map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Arch])
		binary.Write(&b, le, h)
	case "darwin":
		cpu := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[p.Arch]
		binary.Write(&b, le, macho.FileHeader{Magic: macho.Magic64, Cpu: cpu, Type: macho.TypeExec})
		binary.Write(&b, le, uint32(0)) // the 64-bit header's reserved word
	case "windows":
		dos := make([]byte, 0x40)
		copy(dos, "MZ")
		le.PutUint32(dos[0x3c:], 0x40)
		b.Write(dos)
		b.WriteString("PE\x00\x00")
		machine := map[string]uint16{"amd64": pe.IMAGE_FILE_MACHINE_AMD64, "arm64": pe.IMAGE_FILE_MACHINE_ARM64}[p.Arch]
		binary.Write(&b, le, pe.FileHeader{Machine: machine, Characteristics: pe.IMAGE_FILE_EXECUTABLE_IMAGE})
	default:
		t.Fatalf("no fake executable for %s", p)
	}
	b.WriteString(body)
	return b.Bytes()
}

// fakeBuild "builds" each platform's executable, or, for the platforms
// in wrongArch, one for the other processor.
func fakeBuild(t *testing.T, wrongArch ...platform) func(platform, string) error {
	return func(p platform, out string) error {
		q := p
		for _, w := range wrongArch {
			if w == p {
				q.Arch = map[string]string{"amd64": "arm64", "arm64": "amd64"}[p.Arch]
			}
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, fakeExecutable(t, q, "portcullis-cli for "+p.String()), 0o755)
	}
}

func writeRelease(t *testing.T, dir, version string, wrongArch ...platform) {
	t.Helper()
	tmpl, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	r := release{Version: version, Epoch: 1700000000, Manifest: tmpl, Build: fakeBuild(t, wrongArch...)}
	if err := r.write(dir, io.Discard); err != nil {
		t.Fatal(err)
	}
}

// The committed manifest is krew's format, with an entry for every build
// and the placeholders make cli-dist fills in.
func TestManifestTemplate(t *testing.T) {
	b, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	var any map[string]any
	if err := yaml.Unmarshal(b, &any); err != nil {
		t.Fatalf("not YAML: %v", err)
	}
	m, err := parseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkManifest(m, versionToken); err != nil {
		t.Error(err)
	}
	if len(m.Spec.Platforms) != len(platforms) {
		t.Errorf("%d platforms, want %d", len(m.Spec.Platforms), len(platforms))
	}
	for _, p := range platforms {
		e := m.platform(p)
		if e == nil {
			t.Errorf("no entry for %s", p)
			continue
		}
		want := "https://github.com/portcullis-proxy/portcullis/releases/download/" + versionToken + "/" + archiveName(versionToken, p)
		if e.URI != want {
			t.Errorf("%s: uri %s, want %s", p, e.URI, want)
		}
	}
}

// make cli-dist's files: an archive per platform with the executable,
// SHA256SUMS that sha256sum -c accepts, and the manifest with those sums.
func TestRelease(t *testing.T) {
	dir := t.TempDir()
	writeRelease(t, dir, "v1.2.3")
	if err := check(dir); err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(dir, sumsName))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(sums), "\n"), "\n")
	if len(lines) != len(platforms) {
		t.Fatalf("%s has %d lines, want %d:\n%s", sumsName, len(lines), len(platforms), sums)
	}
	bySum := map[string]string{}
	for _, l := range lines {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok {
			t.Fatalf("%s: line %q is not sha256sum's", sumsName, l)
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: sha256 %x, %s says %s", name, got, sumsName, sum)
		}
		bySum[name] = sum
	}
	mb, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	if m.Spec.Version != "v1.2.3" {
		t.Errorf("spec.version %q", m.Spec.Version)
	}
	if strings.Contains(string(mb), "${") {
		t.Errorf("a placeholder is left:\n%s", mb)
	}
	for _, p := range platforms {
		name := archiveName("v1.2.3", p)
		e := m.platform(p)
		if e.Sha256 != bySum[name] || !strings.HasSuffix(e.URI, "/releases/download/v1.2.3/"+name) || e.Bin != binName(p) {
			t.Errorf("%s: %+v; want the sha256 %s of %s", p, e, bySum[name], name)
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		read := readTarGz
		if p.OS == "windows" {
			read = readZip
		}
		files, modes, err := read(data)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := files[binName(p)], fakeExecutable(t, p, "portcullis-cli for "+p.String()); !bytes.Equal(got, want) || modes[binName(p)].Perm() != 0o755 {
			t.Errorf("%s: %s is %d bytes, mode %v; want the build, 0755", name, binName(p), len(got), modes[binName(p)])
		}
	}
	if !strings.Contains(string(mb), "# The krew plugin manifest of portcullis-cli v1.2.3") || !strings.Contains(string(mb), "kubectl portcullis k8s setup https://ROUTE") {
		t.Errorf("the manifest lost its comment or its text:\n%s", mb)
	}

	// The same build gives the same bytes.
	again := t.TempDir()
	writeRelease(t, again, "v1.2.3")
	for _, f := range append(strings.Fields(strings.Join(lines, " ")), sumsName, manifestName) {
		if len(f) == 64 {
			continue
		}
		a, _ := os.ReadFile(filepath.Join(dir, f))
		b, _ := os.ReadFile(filepath.Join(again, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs", f)
		}
	}

	// Another version replaces the earlier one's files.
	writeRelease(t, dir, "v1.2.4")
	if err := check(dir); err != nil {
		t.Fatal(err)
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "*v1.2.3*")); len(old) != 0 {
		t.Errorf("left behind: %v", old)
	}
}

// check finds every way the files can disagree.
func TestCheckCatches(t *testing.T) {
	linuxArm := platform{"linux", "arm64"}
	for _, tt := range []struct {
		name      string
		wrongArch []platform
		spoil     func(t *testing.T, dir string)
		want      string
	}{
		{
			name: "an archive changed after SHA256SUMS",
			spoil: func(t *testing.T, dir string) {
				appendTo(t, filepath.Join(dir, archiveName("v1.0.0", linuxArm)), "x")
			},
			want: "portcullis-cli_v1.0.0_linux_arm64.tar.gz: sha256",
		},
		{
			name: "an archive missing from SHA256SUMS",
			spoil: func(t *testing.T, dir string) {
				edit(t, filepath.Join(dir, sumsName), func(s string) string {
					var keep []string
					for _, l := range strings.SplitAfter(s, "\n") {
						if !strings.Contains(l, "windows_arm64") {
							keep = append(keep, l)
						}
					}
					return strings.Join(keep, "")
				})
			},
			want: "SHA256SUMS: no line for portcullis-cli_v1.0.0_windows_arm64.zip",
		},
		{
			name: "an archive too many",
			spoil: func(t *testing.T, dir string) {
				appendTo(t, filepath.Join(dir, "portcullis-cli_v0.9.0_linux_amd64.tar.gz"), "old")
			},
			want: "portcullis-cli_v0.9.0_linux_amd64.tar.gz is not in SHA256SUMS",
		},
		{
			name: "the manifest's sha256 is another archive's",
			spoil: func(t *testing.T, dir string) {
				sums, _ := parseSums(mustRead(t, filepath.Join(dir, sumsName)))
				edit(t, filepath.Join(dir, manifestName), func(s string) string {
					return strings.Replace(s, sums[archiveName("v1.0.0", platform{"darwin", "amd64"})], sums[archiveName("v1.0.0", platform{"darwin", "arm64"})], 1)
				})
			},
			want: "portcullis.yaml: the sha256 of darwin/amd64 is",
		},
		{
			name: "the manifest points at another version",
			spoil: func(t *testing.T, dir string) {
				edit(t, filepath.Join(dir, manifestName), func(s string) string {
					return strings.Replace(s, "download/v1.0.0/portcullis-cli_v1.0.0_linux_amd64", "download/v0.9.0/portcullis-cli_v0.9.0_linux_amd64", 1)
				})
			},
			want: "uri \"https://github.com/portcullis-proxy/portcullis/releases/download/v0.9.0/portcullis-cli_v0.9.0_linux_amd64.tar.gz\"",
		},
		{
			name:      "a build for the wrong processor",
			wrongArch: []platform{linuxArm},
			want:      "portcullis-cli_v1.0.0_linux_arm64.tar.gz: built for \"amd64\", not arm64",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeRelease(t, dir, "v1.0.0", tt.wrongArch...)
			if tt.spoil != nil {
				tt.spoil(t, dir)
			}
			err := check(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// A template that is not a krew manifest for every build is refused.
func TestFillManifestRefusesBadTemplates(t *testing.T) {
	tmpl := string(mustRead(t, templatePath))
	sums := map[string]string{}
	for _, p := range platforms {
		sums[archiveName("v1.0.0", p)] = strings.Repeat("ab", 32)
	}
	if _, err := fillManifest([]byte(tmpl), "v1.0.0", sums); err != nil {
		t.Fatalf("the template: %v", err)
	}
	for name, tt := range map[string]struct{ old, new, want string }{
		"a misspelt field":   {"shortDescription:", "shortDescripton:", "field shortDescripton not found"},
		"no windows/arm64":   {"arch: arm64\n      uri: https://github.com/portcullis-proxy/portcullis/releases/download/${VERSION}/portcullis-cli_${VERSION}_windows_arm64.zip", "arch: arm\n      uri: https://github.com/portcullis-proxy/portcullis/releases/download/${VERSION}/portcullis-cli_${VERSION}_windows_arm64.zip", "nothing for windows/arm64"},
		"the wrong bin":      {"bin: kubectl-portcullis.exe", "bin: kubectl-portcullis", `bin "kubectl-portcullis": want kubectl-portcullis.exe`},
		"another plugin":     {"name: portcullis", "name: portcullis-cli", `metadata.name "portcullis-cli"`},
		"a fixed version":    {"version: ${VERSION}", "version: v1.0.0", `spec.version "v1.0.0"`},
		"an http uri":        {"uri: https://", "uri: http://", "want an https URL"},
		"a sha256 filled in": {"sha256: ${SHA256}", "sha256: " + strings.Repeat("0", 64), "sha256"},
	} {
		bad := strings.Replace(tmpl, tt.old, tt.new, 1)
		if bad == tmpl {
			t.Fatalf("%s: the template has no %q", name, tt.old)
		}
		if _, err := fillManifest([]byte(bad), "v1.0.0", sums); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tt.want)
		}
	}
}

func TestIsReleaseVersion(t *testing.T) {
	for v, want := range map[string]bool{
		"v1.2.3": true, "v0.1.0-rc.1": true, "v1.0.0+build.5": true,
		"1.2.3": false, "v1.2": false, "998b96b-dirty": false, "v1.2.3-4-g998b96b-dirty": true, "dev": false,
	} {
		if got := isReleaseVersion(v); got != want {
			t.Errorf("isReleaseVersion(%q) = %v", v, got)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func edit(t *testing.T, path string, f func(string) string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(f(string(mustRead(t, path)))), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
