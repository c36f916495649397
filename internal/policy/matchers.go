package policy

import (
	"slices"
	"strings"
)

// strOp is a string matcher operator.
type strOp uint8

const (
	strIs strOp = iota
	strNot
	strContains
	strStartsWith
	strEndsWith
	strIn
	strNotIn
)

var strOps = map[string]strOp{
	"is":          strIs,
	"not":         strNot,
	"contains":    strContains,
	"starts_with": strStartsWith,
	"ends_with":   strEndsWith,
	"in":          strIn,
	"not_in":      strNotIn,
}

var strOpNames = []string{"is", "not", "contains", "starts_with", "ends_with", "in", "not_in"}

// setIndexMin is the size from which in and not_in look values up in a
// map rather than scanning the list.
const setIndexMin = 16

// strMatcher is one operator of a string matcher with its operand.
type strMatcher struct {
	op  strOp
	val string
	// set is the operand of in and not_in; index holds it too once it is
	// long.
	set   []string
	index map[string]struct{}
}

func (m *strMatcher) match(s string) bool {
	switch m.op {
	case strIs:
		return s == m.val
	case strNot:
		return s != m.val
	case strContains:
		return strings.Contains(s, m.val)
	case strStartsWith:
		return strings.HasPrefix(s, m.val)
	case strEndsWith:
		return strings.HasSuffix(s, m.val)
	case strIn:
		return m.inSet(s)
	case strNotIn:
		return !m.inSet(s)
	}
	return false
}

func (m *strMatcher) inSet(s string) bool {
	if m.index != nil {
		_, ok := m.index[s]
		return ok
	}
	return slices.Contains(m.set, s)
}

// matchString reports whether s satisfies every matcher: Pomerium ANDs the
// operators of one matcher object.
func matchString(ms []strMatcher, s string) bool {
	for i := range ms {
		if !ms[i].match(s) {
			return false
		}
	}
	return true
}

// listOp is a string list matcher operator.
type listOp uint8

const (
	listHas     listOp = iota // some element is the value
	listIs                    // the list is exactly [value]
	listExclude               // no element is the value
)

var listOps = map[string]listOp{"has": listHas, "is": listIs, "exclude": listExclude}

var listOpNames = []string{"has", "is", "exclude"}

type listMatcher struct {
	op  listOp
	val string
}

func (m *listMatcher) match(list []string) bool {
	switch m.op {
	case listHas:
		return slices.Contains(list, m.val)
	case listIs:
		return len(list) == 1 && list[0] == m.val
	case listExclude:
		return !slices.Contains(list, m.val)
	}
	return false
}

// matchList reports whether list satisfies every matcher.
func matchList(ms []listMatcher, list []string) bool {
	for i := range ms {
		if !ms[i].match(list) {
			return false
		}
	}
	return true
}
