package identity

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A GroupFilter keeps the groups that match at least one of its patterns
// (kubernetes_groups_filter). A pattern is a group's exact name, or a name
// with stars: each * stands for any run of characters, none included, and
// every other character for itself, so "team-*" matches "team-a" and
// "team-", "*-admins" every group ending so, and "*" every group. Matching
// is exact and case-sensitive, as Kubernetes compares group names.
//
// A glob rather than a regular expression: the one wildcard is the one an
// operator needs to pick a provider's groups, a pattern cannot mean more
// than it looks like it does (a regular expression's unescaped dot or
// missing anchor lets in more groups than intended), and matching takes
// time linear in the name for each star, whatever the pattern.
//
// The nil GroupFilter keeps every group.
type GroupFilter struct {
	patterns []groupPattern
}

// groupPattern is one parsed pattern: the text between its stars. A
// pattern without a star has one part, matched exactly; "a*b" has two,
// "*" two empty ones.
type groupPattern struct {
	parts []string
}

// maxGroupPattern bounds a pattern's length in bytes: no group name a
// provider sends is longer (the provider's claims are kept up to 1 KiB a
// value), and a bound keeps matching cheap.
const maxGroupPattern = 1024

// CheckGroupPattern says what is wrong with pattern, or returns nil: it
// must be one line of printable UTF-8 text, with no leading or trailing
// space, at most 1024 bytes long. Group names that are not so are refused
// on the way to Kubernetes anyway, so such a pattern could only be a
// mistake.
func CheckGroupPattern(pattern string) error {
	switch {
	case pattern == "":
		return errors.New("an empty pattern: want a group's name, or a pattern such as team-*")
	case len(pattern) > maxGroupPattern:
		return fmt.Errorf("a pattern of %d bytes: want at most %d", len(pattern), maxGroupPattern)
	case !utf8.ValidString(pattern):
		return fmt.Errorf("pattern %q is not valid UTF-8", pattern)
	case strings.IndexFunc(pattern, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fmt.Errorf("pattern %q holds a character that is not printable", pattern)
	case strings.TrimSpace(pattern) != pattern:
		return fmt.Errorf("pattern %q begins or ends with a space", pattern)
	}
	return nil
}

// ParseGroupFilter parses patterns (see GroupFilter). No patterns give
// the nil GroupFilter, which keeps every group.
func ParseGroupFilter(patterns []string) (*GroupFilter, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	f := &GroupFilter{patterns: make([]groupPattern, 0, len(patterns))}
	var errs []error
	for _, p := range patterns {
		if err := CheckGroupPattern(p); err != nil {
			errs = append(errs, err)
			continue
		}
		f.patterns = append(f.patterns, groupPattern{parts: strings.Split(p, "*")})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

// Keep reports whether group matches one of f's patterns; the nil filter
// keeps every group.
func (f *GroupFilter) Keep(group string) bool {
	if f == nil {
		return true
	}
	for _, p := range f.patterns {
		if p.match(group) {
			return true
		}
	}
	return false
}

// match reports whether s matches the pattern. The first part must begin
// s and the last end it; the parts between are found left to right, each
// as early as it can be, which never loses a match: whatever a later part
// could match after a later occurrence, it can match after the earliest.
func (p groupPattern) match(s string) bool {
	if len(p.parts) == 1 {
		return s == p.parts[0]
	}
	first, last := p.parts[0], p.parts[len(p.parts)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	for _, mid := range p.parts[1 : len(p.parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return true
}
