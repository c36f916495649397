package identity

import (
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestGroupFilter(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		keep     []string
		drop     []string
	}{
		{nil, []string{"anything", "", "system:masters"}, nil},
		{[]string{"dev"}, []string{"dev"}, []string{"Dev", "dev ", "devs", "xdev", "", "d*v"}},
		{[]string{"team-*"}, []string{"team-a", "team-", "team-a-b", "team-*"}, []string{"team", "Team-a", "a-team-b", "xteam-a"}},
		{[]string{"*-admins"}, []string{"ops-admins", "-admins", "a-admins-admins"}, []string{"admins", "ops-admins-x"}},
		{[]string{"*"}, []string{"", "x", "system:masters", strings.Repeat("y", 5000)}, nil},
		{[]string{"**"}, []string{"", "x"}, nil},
		{[]string{"a*b*c"}, []string{"abc", "aXbYc", "abbc", "abcbc", "a*b*c"}, []string{"ab", "acb", "bc", "abcd", "ac"}},
		{[]string{"a*a"}, []string{"aa", "aba"}, []string{"a", "ab"}},
		{[]string{"*ab*ab*"}, []string{"abab", "xabyabz"}, []string{"aba", "ab"}},
		{[]string{"org/*/admins"}, []string{"org/x/admins", "org/x/y/admins", "org//admins"}, []string{"org/admins", "other/x/admins"}},
		{[]string{"cn=ops,ou=groups,dc=example,dc=com"}, []string{"cn=ops,ou=groups,dc=example,dc=com"}, []string{"cn=ops"}},
		{[]string{"équipe-*", "ops"}, []string{"équipe-a", "ops"}, []string{"equipe-a", "ops-a"}},
		{[]string{`DOMAIN\*`}, []string{`DOMAIN\admins`}, []string{`DOMAINadmins`}},
	} {
		f, err := ParseGroupFilter(tc.patterns)
		if err != nil {
			t.Errorf("ParseGroupFilter(%q): %v", tc.patterns, err)
			continue
		}
		for _, g := range tc.keep {
			if !f.Keep(g) {
				t.Errorf("%q does not keep %q", tc.patterns, g)
			}
		}
		for _, g := range tc.drop {
			if f.Keep(g) {
				t.Errorf("%q keeps %q", tc.patterns, g)
			}
		}
	}
}

func TestGroupFilterRefuses(t *testing.T) {
	for _, p := range []string{
		"", " team-*", "team-* ", "team\n-*", "team\x00", "tab\there", "\xff*", "a\u200bb" /* zero-width space: not printable */, strings.Repeat("x", maxGroupPattern+1),
	} {
		if _, err := ParseGroupFilter([]string{"ok", p}); err == nil {
			t.Errorf("ParseGroupFilter accepts %q", p)
		}
	}
	if _, err := ParseGroupFilter([]string{strings.Repeat("x", maxGroupPattern)}); err != nil {
		t.Errorf("a pattern of %d bytes: %v", maxGroupPattern, err)
	}
}

// TestGroupFilterTime: a hostile name or pattern costs time linear in the
// name for each star, never a backtracking search.
func TestGroupFilterTime(t *testing.T) {
	f, err := ParseGroupFilter([]string{"*" + strings.Repeat("a*", 400) + "b*"})
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("a", 1<<16)
	start := time.Now()
	for range 10 {
		if f.Keep(name) {
			t.Fatal("kept a name without b")
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("10 matches took %v", d)
	}
}

// FuzzGroupPattern holds the pattern parser and matcher to their meaning:
// a pattern CheckGroupPattern accepts matches exactly the names that the
// regular expression with each * as .* and every other character quoted
// matches; any other pattern is refused, never panics.
func FuzzGroupPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"team-*", "team-a"}, {"*", ""}, {"a*b*c", "aXbYc"}, {"**", "x"}, {"*ab*ab*", "abab"},
		{"", ""}, {" x", "x"}, {"é*", "éa"}, {"a*a", "a"}, {"\xff", "\xff"}, {"x\ny", "x\ny"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		filter, err := ParseGroupFilter([]string{pattern})
		if err != nil {
			if CheckGroupPattern(pattern) == nil {
				t.Fatalf("ParseGroupFilter refuses %q, which CheckGroupPattern accepts: %v", pattern, err)
			}
			return
		}
		got := filter.Keep(name)
		if !utf8.ValidString(name) {
			return // the regexp reads invalid UTF-8 its own way; such a name is never impersonated
		}
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		want := regexp.MustCompile(`^(?s:` + strings.Join(parts, ".*") + `)$`).MatchString(name)
		if got != want {
			t.Fatalf("pattern %q, name %q: Keep = %v, the regexp says %v", pattern, name, got, want)
		}
	})
}
