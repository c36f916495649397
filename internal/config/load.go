package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxReadSize bounds every file Load reads: the config file and those its
// *_file settings name, which hold keys, certificates and secrets. A path
// like /dev/zero must not exhaust memory.
const maxReadSize = 1 << 20

// Load reads the configuration: the YAML file at path (no file when path is
// ""), then the environment through lookupEnv (os.LookupEnv in the server;
// nil stands for an empty environment), over Defaults.
//
// The environment wins over the file, setting by setting. X and X_FILE (x
// and x_file in the file) are two spellings of one setting: giving both in
// the same place is a problem, and either one in the environment overrides
// both in the file. A variable set to the empty string counts as unset, as
// does a null or empty value in the file. A relative path (a *_file key,
// idp_users_file) in the config file is relative to the config file's
// directory; in the environment, to the working directory.
//
// Routes from POLICY (or the file's policy:) come first, then those from
// ROUTES (routes:); the route defaults are then applied and the result is
// checked as Options.Check checks it.
//
// checks are run after config's own validation (see Check): the server
// passes its own, so that Load refuses everything a start would.
//
// On any problem Load returns nil and an error joining every Problem
// found, decoding, validation and checks alike (see Problems), those of
// the file in line order. Missing COOKIE_SECRET and SHARED_SECRET are not
// a problem: see GenerateMissingSecrets. What is only worth a warning is
// in the Options' Warnings.
func Load(path string, lookupEnv func(string) (string, bool), checks ...Check) (*Options, error) {
	return load(path, lookupEnv, readBounded, checks...)
}

// load is Load with every file read, the config file's included, done by
// readFile (readBounded when nil), so that tests and fuzzing can give the
// files' contents.
func load(path string, lookupEnv func(string) (string, bool), readFile func(string) ([]byte, error), checks ...Check) (*Options, error) {
	l := newLoader(lookupEnv, readFile)
	l.checks = checks
	if path != "" {
		data, err := l.readFile(path)
		if err != nil {
			msg := "cannot read the config file: " + osError(err)
			if errors.Is(err, errTooLarge) {
				msg += ", which is too large for a configuration"
			}
			l.problem(where{source: path}, msg)
		} else {
			l.parseFile(path, data)
		}
	}
	return l.finish()
}

// errTooLarge is readBounded's error for a file over maxReadSize.
var errTooLarge = fmt.Errorf("larger than %d bytes", maxReadSize)

// readBounded reads the file at path, refusing files over maxReadSize.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxReadSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxReadSize {
		return nil, errTooLarge
	}
	return data, nil
}

// osError is err without the operation and path that *fs.PathError adds:
// messages quote the path themselves.
func osError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// loader holds the state of one Load.
type loader struct {
	lookupEnv func(string) (string, bool)
	readFile  func(string) ([]byte, error)
	checks    []Check // run after validation (see Load)
	// files are the paths read, in order (Options.Files).
	files []string

	// top holds the config file's top-level keys by name.
	top   map[string]entry
	found []found
	loc   locations
	// nodes counts the YAML nodes walked, aliases expanded, against
	// maxNodes; mergeDeep is set once merge keys nest too deep.
	nodes     int
	mergeDeep bool
}

// maxNodes bounds the YAML nodes walked in one Load, anchors and aliases
// expanded: a few lines of them can stand for billions of nodes.
const maxNodes = 200_000

// count adds one node to those walked, reporting (once) when there are too
// many; callers stop walking on false.
func (l *loader) count(d *doc, n *yaml.Node, key string) bool {
	l.nodes++
	if l.nodes == maxNodes+1 {
		l.problem(d.at(n, key), fmt.Sprintf("the configuration is too large: more than %d YAML nodes once anchors and aliases are expanded", maxNodes))
	}
	return l.nodes <= maxNodes
}

// found is a Problem and where to sort it.
type found struct {
	p    *Problem
	d    *doc // the YAML text it is in, if any
	line int
}

func newLoader(lookupEnv func(string) (string, bool), readFile func(string) ([]byte, error)) *loader {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	if readFile == nil {
		readFile = readBounded
	}
	l := &loader{
		lookupEnv: lookupEnv,
		top:       map[string]entry{},
		loc:       locations{top: map[string]where{}, failed: map[string]bool{}},
	}
	// Every file read is recorded, for Options.Files.
	l.readFile = func(path string) ([]byte, error) {
		l.files = append(l.files, path)
		return readFile(path)
	}
	return l
}

func (l *loader) problem(at where, msg string) {
	l.found = append(l.found, found{
		p:    &Problem{Source: at.source, Key: at.key, Message: msg},
		d:    at.d,
		line: at.line,
	})
}

// fail reports a problem with v and returns false, for decoders.
func (l *loader) fail(v value, format string, args ...any) bool {
	l.problem(v.at, fmt.Sprintf(format, args...))
	return false
}

// getenv returns a variable that is set and not empty.
func (l *loader) getenv(name string) (string, bool) {
	v, ok := l.lookupEnv(name)
	return v, ok && v != ""
}

// finish decodes every setting, applies route defaults and validates.
func (l *loader) finish() (*Options, error) {
	o := Defaults()
	l.pomeriumEnv()
	for _, s := range topSettings() {
		v, ok := l.pick(s)
		if !ok {
			continue
		}
		l.loc.top[s.key] = v.at
		if !s.decode(l, v, &o) {
			l.loc.failed[s.key] = true
		}
	}
	for i := range o.Routes {
		l.resolveInCluster(&o.Routes[i], &l.loc.routes[i])
		o.Routes[i].applyDefaults(l.loc.routes[i].set)
		o.Routes[i].inheritMapping(&o, l.loc.routes[i].set)
	}
	found, warnings := o.check(&l.loc, l.checks)
	l.found = append(l.found, found...)
	if len(l.found) == 0 {
		o.loc, o.warnings = &l.loc, warnings
		slices.Sort(l.files)
		o.files = slices.Compact(l.files)
		return &o, nil
	}
	return nil, joinSorted(l.found)
}

// joinSorted joins the Problems found, those of the config file first in
// line order; then the others in the order found, except that the
// problems of one decoded value are kept together in line order.
func joinSorted(problems []found) error {
	type item struct {
		f           found
		group, line int
	}
	items := make([]item, len(problems))
	first := map[*doc]int{}
	for i, f := range problems {
		it := item{f: f, group: i + 1}
		switch {
		case f.d != nil && f.d.sorted:
			it.group, it.line = 0, f.line
		case f.d != nil:
			if g, ok := first[f.d]; ok {
				it.group = g
			} else {
				first[f.d] = it.group
			}
			it.line = f.line
		}
		items[i] = it
	}
	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.group != b.group {
			return a.group < b.group
		}
		return a.line < b.line
	})
	errs := make([]error, len(items))
	for i, it := range items {
		errs[i] = it.f.p
	}
	return errors.Join(errs...)
}

// A doc is a YAML text: the config file, or a base64 value once decoded.
type doc struct {
	// source names a line for Problem.Source; line 0 names the whole text.
	source func(line int) string
	// sorted marks the config file, whose Problems are listed in line order.
	sorted bool
}

func fileDoc(path string) *doc {
	return &doc{
		sorted: true,
		source: func(line int) string {
			if line == 0 {
				return path
			}
			return fmt.Sprintf("%s:%d", path, line)
		},
	}
}

// decodedDoc names the lines of a base64 value once decoded; name is
// "POLICY" or, for a base64 string in the file, "config.yaml:5: policy".
func decodedDoc(name string) *doc {
	return &doc{
		source: func(line int) string {
			if line == 0 {
				return name + " (decoded)"
			}
			return fmt.Sprintf("%s (decoded) line %d", name, line)
		},
	}
}

// at says where node n of d is, for Problems about key.
func (d *doc) at(n *yaml.Node, key string) where {
	line := 0
	if n != nil {
		line = n.Line
	}
	return where{source: d.source(line), key: key, d: d, line: line}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses one YAML document. It returns nil for an empty
// document, and false after reporting malformed YAML.
func (l *loader) parseYAML(d *doc, data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if err == io.EOF {
			return nil, true
		}
		l.yamlProblem(d, err)
		return nil, false
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		l.yamlProblem(d, err)
		return nil, false
	default:
		l.problem(d.at(&next, ""), "a second YAML document (after ---): put every setting in one document")
		return nil, false
	}
	n := &root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil, true
		}
		n = n.Content[0]
	}
	if isNull(n) {
		return nil, true
	}
	return n, true
}

// yamlParserErrors are the messages of the YAML parser (as opposed to its
// scanner). yaml.v3 reports their line counting from 0 (parser.fail adds 1
// only for scanner errors, and leaves the line out when it is 0), and that
// line is where the broken construct starts: "routes:" when an item of
// the list under it is mis-indented.
var yamlParserErrors = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

func (l *loader) yamlProblem(d *doc, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if yamlParserErrors[msg] {
		line++
	}
	l.problem(where{source: d.source(line), d: d, line: line}, "malformed YAML: "+msg)
}

// parseFile reads the config file's top-level keys into l.top.
func (l *loader) parseFile(path string, data []byte) {
	l.loc.file = path
	d := fileDoc(path)
	root, ok := l.parseYAML(d, data)
	if !ok || root == nil {
		return
	}
	n := deref(root)
	if n.Kind != yaml.MappingNode {
		l.problem(d.at(root, ""), fmt.Sprintf(`want a mapping of settings such as address: ":443", got %s`, describe(n)))
		return
	}
	known := topKeys()
	for _, e := range l.entries(d, n, "") {
		if !slices.Contains(known, e.name) {
			if !l.pomeriumEntry(d, e, atTop, "", ".") {
				l.problem(d.at(e.key, ""), unknownKey(e.name, known, routeKeys(),
					"at the top level (it is a route key: put the route in a list under routes:)"))
			}
			continue
		}
		e.d = d
		l.top[e.name] = e
	}
}

// entry is one key of a YAML mapping.
type entry struct {
	name     string
	key, val *yaml.Node
	d        *doc
}

// maxMergeDepth bounds YAML merge keys (<<: *base) that merge mappings
// that merge mappings; an anchor merged into itself would never end.
const maxMergeDepth = 8

// entries lists mapping n's keys in order, reporting keys that are not
// strings or appear twice (key names the mapping in those Problems), and
// folding in YAML merge keys: "<<: *defaults" adds the keys of the mapping
// defaults that n does not set itself.
func (l *loader) entries(d *doc, n *yaml.Node, key string) []entry {
	var out []entry
	seen := map[string]*yaml.Node{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !l.count(d, k, key) {
			return out
		}
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			l.problem(d.at(k, key), fmt.Sprintf("a key is %s: want a string key", describe(deref(k))))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			l.problem(d.at(k, key), fmt.Sprintf("%q is set twice (first at line %d): keep one", k.Value, first.Line))
			continue
		}
		seen[k.Value] = k
		out = append(out, entry{name: k.Value, key: k, val: v})
	}
	for _, m := range merges {
		for _, e := range l.mergeEntries(d, m, key, 0) {
			if _, ok := seen[e.name]; !ok {
				seen[e.name] = e.key
				out = append(out, e)
			}
		}
	}
	return out
}

// mergeEntries lists the entries a merge key's value brings in: a mapping
// or a list of mappings, earlier ones winning.
func (l *loader) mergeEntries(d *doc, m *yaml.Node, key string, depth int) []entry {
	if depth >= maxMergeDepth {
		if !l.mergeDeep {
			l.mergeDeep = true
			l.problem(d.at(m, key), fmt.Sprintf("merge keys (<<) nested more than %d deep (is an anchor merged into itself?): flatten them", maxMergeDepth))
		}
		return nil
	}
	if !l.count(d, m, key) {
		return nil
	}
	n := deref(m)
	switch n.Kind {
	case yaml.MappingNode:
		var out []entry
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if !l.count(d, k, key) {
				return out
			}
			if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
				for _, e := range l.mergeEntries(d, v, key, depth+1) {
					if !seen[e.name] {
						seen[e.name] = true
						out = append(out, e)
					}
				}
				continue
			}
			if k.Kind == yaml.ScalarNode && !seen[k.Value] {
				seen[k.Value] = true
				out = append(out, entry{name: k.Value, key: k, val: v})
			}
		}
		return out
	case yaml.SequenceNode:
		var out []entry
		seen := map[string]bool{}
		for _, item := range n.Content {
			for _, e := range l.mergeEntries(d, item, key, depth+1) {
				if !seen[e.name] {
					seen[e.name] = true
					out = append(out, e)
				}
			}
		}
		return out
	}
	l.problem(d.at(m, key), fmt.Sprintf("merge key (<<) takes a mapping or a list of mappings, got %s", describe(n)))
	return nil
}

// deref follows an alias (*name) to its anchored node.
func deref(n *yaml.Node) *yaml.Node {
	// An anchor cannot be put on an alias, so one step is enough; the bound
	// is defence in depth.
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 4; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is absent, null (~, null) or an empty string:
// all mean "not set".
func isNull(n *yaml.Node) bool {
	n = deref(n)
	if n == nil || n.Kind == 0 {
		return true
	}
	return n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!null" || strings.TrimSpace(n.Value) == "")
}

// describe names what a node is, for "want X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an alias"
}

// A value is one setting's raw value before decoding.
type value struct {
	at   where
	d    *doc       // the YAML text node is in; nil for text
	node *yaml.Node // the YAML value; nil for the environment and file contents
	text string     // an environment variable's value, or a file's contents
	path string     // the *_file path text was read from
}

// fileValue is the value of entry e, with key named as key in Problems.
func fileValue(e entry, key string) value {
	return value{at: e.d.at(e.val, key), d: e.d, node: e.val}
}

// path decodes v as a file path. A relative path written in the config
// file is relative to the config file's directory, so that a config and
// the files it names can move together; one in the environment (or in a
// base64 POLICY or ROUTES there) is relative to the working directory,
// as a shell would read it.
func (l *loader) path(v value) (string, bool) {
	p, ok := l.str(v)
	if !ok || p == "" || filepath.IsAbs(p) || v.d == nil || !v.d.sorted || l.loc.file == "" {
		return p, ok
	}
	return filepath.Join(filepath.Dir(l.loc.file), p), true
}

// read returns the contents of the file at path, reporting failure at at.
func (l *loader) read(at where, path string) (value, bool) {
	data, err := l.readFile(path)
	if err != nil {
		msg := fmt.Sprintf("cannot read %q: %s", path, osError(err))
		if errors.Is(err, errTooLarge) {
			msg += ", which is too large for a key, certificate or secret"
		}
		l.problem(at, msg)
		return value{}, false
	}
	return value{at: at, text: string(data), path: path}, true
}

// scalar returns v as trimmed text, or reports that v is a list or a
// mapping; want says what was expected ("a string").
func (l *loader) scalar(v value, want string) (string, bool) {
	if v.node == nil {
		return strings.TrimSpace(v.text), true
	}
	n := deref(v.node)
	if n.Kind != yaml.ScalarNode {
		return "", l.fail(v, "want %s, got %s", want, describe(n))
	}
	return strings.TrimSpace(n.Value), true
}

func (l *loader) str(v value) (string, bool) {
	return l.scalar(v, "a string")
}

func (l *loader) boolean(v value) (bool, bool) {
	s, ok := l.scalar(v, "true or false")
	if !ok {
		return false, false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, l.fail(v, "%q is not a boolean: want true or false", s)
	}
	return b, true
}

func (l *loader) duration(v value) (time.Duration, bool) {
	s, ok := l.scalar(v, "a duration such as 30s")
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, l.fail(v, "%q is not a duration: want a Go duration such as 30s, 5m or 1h30m", s)
	}
	return d, true
}

// list decodes a YAML list of strings or a single string; with comma, a
// string (and an environment value) is a comma-separated list. Empty
// items are dropped.
func (l *loader) list(v value, comma bool) ([]string, bool) {
	split := func(s string) []string {
		parts := []string{s}
		if comma {
			parts = strings.Split(s, ",")
		}
		var out []string
		for _, p := range parts {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	if v.node == nil {
		return split(v.text), true
	}
	n := deref(v.node)
	switch n.Kind {
	case yaml.ScalarNode:
		return split(n.Value), true
	case yaml.SequenceNode:
		var out []string
		ok := true
		for i, item := range n.Content {
			iv := value{at: v.d.at(item, fmt.Sprintf("%s[%d]", v.at.key, i)), d: v.d, node: item}
			if !l.count(v.d, item, iv.at.key) {
				return nil, false
			}
			s, good := l.str(iv)
			ok = ok && good
			if good && s != "" {
				out = append(out, s)
			}
		}
		return out, ok
	}
	return nil, l.fail(v, "want a list of strings, got %s", describe(n))
}

// decodeBase64 decodes standard or URL-safe base64, padded or not,
// ignoring white space (base64 wraps its output at 76 columns).
func decodeBase64(s string) ([]byte, error) {
	s = strings.Join(strings.Fields(s), "")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	_, err := base64.StdEncoding.DecodeString(s)
	return nil, err
}

// fileKind says what a *_file setting's file holds.
type fileKind int

const (
	noFile   fileKind = iota // the setting has no *_file variant
	textFile                 // the same text as the inline value (base64, a client secret)
	pemFile                  // PEM, whose base64 is the inline value
)

// bytes decodes a base64 value, or returns a PEM file's contents as they
// are; hint says what a valid value looks like.
func (l *loader) bytes(v value, kind fileKind, hint string) ([]byte, bool) {
	if v.path != "" && kind == pemFile {
		return []byte(v.text), true
	}
	s, ok := l.scalar(v, "a base64 string")
	if !ok {
		return nil, false
	}
	b, err := decodeBase64(s)
	if err != nil {
		if strings.HasPrefix(s, "-----BEGIN") {
			return nil, l.fail(v, "holds PEM text, not its base64: %s", hint)
		}
		return nil, l.fail(v, "not valid base64 (%v): %s", err, hint)
	}
	return b, true
}

// urlUse says which URLs a setting accepts.
type urlUse int

const (
	hostURL     urlUse = iota // scheme, host and port only: from, authenticate_service_url
	upstreamURL               // a path is allowed: to, idp_provider_url
)

func (l *loader) url(v value, use urlUse) (*url.URL, bool) {
	s, ok := l.scalar(v, "a URL such as https://host[:port]")
	if !ok {
		return nil, false
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, l.fail(v, "%q is not a URL (%v): want https://host[:port]", s, err)
	}
	if msg := checkURL(s, u, use); msg != "" {
		return nil, l.fail(v, "%s", msg)
	}
	return u, true
}

// checkURL says what is wrong with u, parsed from raw, or returns "".
func checkURL(raw string, u *url.URL, use urlUse) string {
	if u.Scheme == "" || u.Hostname() == "" {
		return fmt.Sprintf("%q is not an absolute URL: want https://host[:port]", raw)
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return fmt.Sprintf("%q has scheme %q: want http or https, as in https://host[:port]", raw, u.Scheme)
	}
	if u.User != nil {
		// Not quoted: the URL holds a password.
		return "the URL holds a user name or password: want https://host[:port] with no credentials"
	}
	if use == hostURL {
		if u.Path != "" && u.Path != "/" {
			return fmt.Sprintf("%q has a path: want only scheme, host and port, as in https://host[:port]", raw)
		}
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			return fmt.Sprintf("%q has a query or fragment: want only scheme, host and port, as in https://host[:port]", raw)
		}
	} else if u.Fragment != "" {
		return fmt.Sprintf("%q has a fragment: want https://host[:port][/path]", raw)
	}
	return ""
}
