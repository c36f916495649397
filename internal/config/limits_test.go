package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAliasExpansionIsBounded feeds configs where a few lines of anchors
// and aliases stand for millions of nodes. Load must stop early with one
// clear problem, not walk them all or report millions of problems.
func TestAliasExpansionIsBounded(t *testing.T) {
	const tooLarge = "the configuration is too large: more than 200000 YAML nodes once anchors and aliases are expanded"

	// Nine levels of ten aliases each: a billion criterion values.
	var policy strings.Builder
	policy.WriteString("routes:\n  - from: https://a.example.com\n    to: https://b.example.com\n" +
		"    policy: {allow: {or: [{email: &a0 [1,1,1,1,1,1,1,1,1,1]}")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&policy, ", {email: &a%d [%s]}", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d,", i-1), 10), ","))
	}
	policy.WriteString("]}}\n")

	// 2,000 aliases of a route with 2,000 upstreams.
	var to strings.Builder
	to.WriteString("routes:\n  - &r\n    from: https://a.example.com\n    to: [")
	for i := range 2000 {
		fmt.Fprintf(&to, "https://b%d.example.com,", i)
	}
	to.WriteString("]\n" + strings.Repeat("  - *r\n", 2000))

	// Merge keys that merge 30 copies of the previous mapping, 7 deep.
	var merge strings.Builder
	merge.WriteString("routes:\n  - &m0\n    from: https://a.example.com\n    to: https://b.example.com\n")
	for i := 1; i < 8; i++ {
		fmt.Fprintf(&merge, "  - &m%d\n    <<: [%s]\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*m%d,", i-1), 30), ","))
	}

	tests := []struct {
		name, file string
	}{
		{"policy values", policy.String()},
		{"route lists", to.String()},
		{"merge keys", merge.String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load("config.yaml", nil, configFile("config.yaml", tc.file))
			ps := Problems(err)
			found := 0
			for _, p := range ps {
				if p.Message == tooLarge {
					found++
				}
			}
			if found != 1 {
				t.Errorf("got %d %q problems, want 1; problems:\n%v", found, tooLarge, err)
			}
			if len(ps) > 200 {
				t.Errorf("got %d problems, want a bounded few", len(ps))
			}
		})
	}
}

// TestSelfReferentialAnchors checks that an anchor used inside itself is
// reported, not followed forever.
func TestSelfReferentialAnchors(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string
	}{
		{
			name: "criterion value",
			file: "routes:\n  - from: https://a.example.com\n    to: https://b.example.com\n" +
				"    policy: {allow: {or: [{email: &v {is: *v}}]}}\n",
			want: []string{`config.yaml:4: routes[0].policy.allow.or[0].email: value nested more than 64 deep (is an anchor used inside itself?)`},
		},
		{
			name: "nested operator",
			file: "routes:\n  - from: https://a.example.com\n    to: https://b.example.com\n" +
				"    policy: {allow: &o {or: [*o]}}\n",
			want: []string{`config.yaml:4: routes[0].policy.allow` + strings.Repeat(".or[0]", 32) +
				`.or: operators nested more than 32 deep: simplify the policy`},
		},
		{
			name: "merge key",
			file: "routes:\n  - &r\n    from: https://a.example.com\n    to: https://b.example.com\n    <<: *r\n",
			want: []string{`config.yaml:5: routes[0]: merge keys (<<) nested more than 8 deep (is an anchor merged into itself?): flatten them`},
		},
		{
			name: "route list",
			file: "routes: &l\n  - *l\n",
			want: []string{`config.yaml:2: routes[0]: want a route (a mapping with from, to and other route keys), got a list`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load("config.yaml", nil, configFile("config.yaml", tc.file))
			if diff := cmp.Diff(tc.want, messages(err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConfigFileIsBounded: Load reads the config file as it reads the files
// that *_file settings name, bounded by maxReadSize, so that a path like
// /dev/zero cannot exhaust memory (it used to read it whole). The
// environment's problems are still reported with it.
func TestConfigFileIsBounded(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.yaml": "# " + strings.Repeat("x", maxReadSize) + "\n"})
	_, err := Load(filepath.Join(dir, "config.yaml"), env{"LOG_FORMAT": "xml"}.lookup)
	want := []string{
		filepath.Join(dir, "config.yaml") + ": cannot read the config file: larger than 1048576 bytes, which is too large for a configuration",
		`LOG_FORMAT: "xml" is not a log format: want json or text`,
	}
	if diff := cmp.Diff(want, messages(err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}
