package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// manifest is a krew plugin manifest (krew.googlecontainertools.github.com/v1alpha2
// Plugin): the fields krew reads, and no others, so that a misspelt one
// is an error here rather than a field krew ignores.
type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Version          string             `yaml:"version"`
		Homepage         string             `yaml:"homepage"`
		ShortDescription string             `yaml:"shortDescription"`
		Description      string             `yaml:"description"`
		Caveats          string             `yaml:"caveats"`
		Platforms        []manifestPlatform `yaml:"platforms"`
	} `yaml:"spec"`
}

type manifestPlatform struct {
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	URI    string `yaml:"uri"`
	Sha256 string `yaml:"sha256"`
	Bin    string `yaml:"bin"`
}

const krewAPIVersion = "krew.googlecontainertools.github.com/v1alpha2"

func parseManifest(b []byte) (*manifest, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var m manifest
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return &m, nil
}

// platform is the manifest's entry for p, or nil.
func (m *manifest) platform(p platform) *manifestPlatform {
	for i, e := range m.Spec.Platforms {
		if e.Selector.MatchLabels["os"] == p.OS && e.Selector.MatchLabels["arch"] == p.Arch {
			return &m.Spec.Platforms[i]
		}
	}
	return nil
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkManifest checks m as krew would, and against the release: version
// is spec.version, and each platform has one entry whose uri ends in its
// archive's name and whose bin is its executable. version is
// versionToken for the template, whose sha256 fields are shaToken.
func checkManifest(m *manifest, version string) error {
	var errs []error
	if m.APIVersion != krewAPIVersion || m.Kind != "Plugin" {
		errs = append(errs, fmt.Errorf("apiVersion %q, kind %q: want %s, Plugin", m.APIVersion, m.Kind, krewAPIVersion))
	}
	if m.Metadata.Name != pluginName {
		errs = append(errs, fmt.Errorf("metadata.name %q: want %s", m.Metadata.Name, pluginName))
	}
	if m.Spec.Version != version {
		errs = append(errs, fmt.Errorf("spec.version %q: want %s", m.Spec.Version, version))
	}
	if m.Spec.ShortDescription == "" || m.Spec.Homepage == "" {
		errs = append(errs, errors.New("spec.shortDescription and spec.homepage are required"))
	}
	seen := map[platform]bool{}
	for i, e := range m.Spec.Platforms {
		where := fmt.Sprintf("spec.platforms[%d]", i)
		p := platform{e.Selector.MatchLabels["os"], e.Selector.MatchLabels["arch"]}
		if len(e.Selector.MatchLabels) != 2 || !slices.Contains(platforms, p) {
			errs = append(errs, fmt.Errorf("%s: selector %v: want os and arch of a build (%v)", where, e.Selector.MatchLabels, platforms))
			continue
		}
		if seen[p] {
			errs = append(errs, fmt.Errorf("%s: %s again", where, p))
		}
		seen[p] = true
		u, err := url.Parse(e.URI)
		if err != nil || u.Scheme != "https" || u.Host == "" || path.Base(u.Path) != archiveName(version, p) {
			errs = append(errs, fmt.Errorf("%s (%s): uri %q: want an https URL of %s", where, p, e.URI, archiveName(version, p)))
		}
		if e.Bin != binName(p) {
			errs = append(errs, fmt.Errorf("%s (%s): bin %q: want %s", where, p, e.Bin, binName(p)))
		}
		if version == versionToken && e.Sha256 != shaToken || version != versionToken && !hexSHA256.MatchString(e.Sha256) {
			errs = append(errs, fmt.Errorf("%s (%s): sha256 %q", where, p, e.Sha256))
		}
	}
	for _, p := range platforms {
		if !seen[p] {
			errs = append(errs, fmt.Errorf("spec.platforms: nothing for %s", p))
		}
	}
	return errors.Join(errs...)
}

// fillManifest writes the release's manifest from the template: version
// for versionToken, and each platform's archive's sha256 from sums.
// Everything else, comments too, stays as the template has it.
func fillManifest(tmpl []byte, version string, sums map[string]string) ([]byte, error) {
	m, err := parseManifest(tmpl)
	if err != nil {
		return nil, fmt.Errorf("the krew manifest template: %w", err)
	}
	if err := checkManifest(m, versionToken); err != nil {
		return nil, fmt.Errorf("the krew manifest template: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(tmpl, &doc); err != nil {
		return nil, err
	}
	spec := mapValue(doc.Content[0], "spec")
	mapValue(spec, "version").Value = version
	for _, e := range mapValue(spec, "platforms").Content {
		labels := mapValue(mapValue(e, "selector"), "matchLabels")
		p := platform{mapValue(labels, "os").Value, mapValue(labels, "arch").Value}
		uri := mapValue(e, "uri")
		uri.Value = strings.ReplaceAll(uri.Value, versionToken, version)
		sha := mapValue(e, "sha256")
		sha.Value, sha.Style, sha.Tag = sums[archiveName(version, p)], 0, "!!str"
	}
	doc.HeadComment = "The krew plugin manifest of portcullis-cli " + version + ", written by `make cli-dist`\n" +
		"from deploy/krew/portcullis.yaml with the sha256 of each archive beside it."
	// The template's own comment is about the template: yaml puts it on
	// the document, the mapping or its first key.
	root := doc.Content[0]
	root.HeadComment = ""
	if len(root.Content) > 0 {
		root.Content[0].HeadComment = ""
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	filled, err := parseManifest(out.Bytes())
	if err != nil {
		return nil, err
	}
	if err := checkManifest(filled, version); err != nil {
		return nil, fmt.Errorf("the filled-in krew manifest: %w", err)
	}
	return out.Bytes(), nil
}

// mapValue is the value of key in the mapping node n (nil if there is
// none: the template was checked before it is walked).
func mapValue(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
