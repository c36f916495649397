package config

import (
	"errors"
	"fmt"
	"strings"
)

// Problem is one thing wrong with the configuration. Load and Check
// report every Problem they find, joined with errors.Join; Problems or
// errors.As get them back.
type Problem struct {
	// Source says where the value came from: "config.yaml:12" (the file
	// and line), "COOKIE_SECRET" (an environment variable), "POLICY (decoded)
	// line 3" (a line of a base64 value once decoded), or "" when Check
	// checks Options built in code.
	Source string
	// Key names the setting within Source: "cookie_secret" or
	// "routes[0].to" in the file, `route 1 ("https://k8s.example.com"): to`
	// in a decoded list of routes; "" when Source is an environment
	// variable, which names the setting itself.
	Key string
	// Message says what is wrong and what a valid value looks like. It is
	// lower case and never holds a secret.
	Message string
}

// Error returns "Source: Key: Message", leaving out empty parts.
func (p *Problem) Error() string {
	var b strings.Builder
	for _, s := range []string{p.Source, p.Key} {
		if s != "" {
			b.WriteString(s)
			b.WriteString(": ")
		}
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems returns every Problem in err (as returned by Load or Check),
// in order. Errors that are not Problems are left out.
func Problems(err error) []*Problem {
	var out []*Problem
	var walk func(error)
	walk = func(err error) {
		var p *Problem
		switch e := err.(type) {
		case nil:
		case *Problem:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, e := range e.Unwrap() {
				walk(e)
			}
		default:
			if errors.As(err, &p) {
				out = append(out, p)
			}
		}
	}
	walk(err)
	return out
}

// unknownKey is the message for a key that is not in known. other lists the
// keys of the other level (route keys at the top level and the other way
// round), so that a key put at the wrong level is named as such.
func unknownKey(key string, known, other []string, otherHint string) string {
	msg := fmt.Sprintf("unknown key %q", key)
	for _, k := range other {
		if k == key {
			return msg + " " + otherHint
		}
	}
	if s := Closest(key, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg
}

// Closest returns the candidate nearest to key by edit distance
// (insertions, deletions, substitutions and transpositions, ignoring case),
// or "" when none is near enough to be a likely typo. It makes the "did you
// mean" of every configuration problem, the policy compiler's included.
func Closest(key string, candidates []string) string {
	key = strings.ToLower(key)
	limit := 1
	switch {
	case len(key) > 12:
		limit = 3
	case len(key) > 4:
		limit = 2
	}
	best, bestD := "", limit+1
	for _, c := range candidates {
		if d := editDistance(key, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b: a
// swap of two neighbours ("verfiy") counts as one edit.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Keys are short; a long one is no typo of a known key.
		return max(len(a), len(b))
	}
	// Rows i-2, i-1 and i of the dynamic-programming table.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// Messages flattens err, an errors.Join tree such as Load's, into one
// message per problem, for printing a line each; other errors are one
// message.
func Messages(err error) []string {
	var list []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if msg := strings.TrimSpace(err.Error()); msg != "" {
			list = append(list, msg)
		}
	}
	if err != nil {
		walk(err)
	}
	return list
}
