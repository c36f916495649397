package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Attributes is what the policy matches a request on: the Kubernetes
// request attributes kube-apiserver's audit policy checker reads.
type Attributes struct {
	// User is the user's name and Groups their groups.
	User   string
	Groups []string
	// Verb is the Kubernetes verb, or the lower-case HTTP method of a
	// non-resource request.
	Verb string
	// ResourceRequest says whether the request is for an API resource
	// (APIGroup, Resource, …) or a non-resource URL (Path).
	ResourceRequest bool
	// APIGroup ("" for the core group), Resource, Subresource, Namespace
	// ("" for a cluster-scoped object) and Name of a resource request.
	APIGroup, Resource, Subresource, Namespace, Name string
	// Path is the URL path of a non-resource request.
	Path string
}

// Policy says how much of each request to record: an audit.k8s.io/v1
// Policy, as kube-apiserver reads with --audit-policy-file. Its rules are
// tried in order; the first that matches decides. A Policy is immutable
// and safe for concurrent use.
type Policy struct {
	rules      []rule
	omitStages []Stage
}

// rule is one PolicyRule, its fields as in the file.
type rule struct {
	level           Level
	users           []string
	userGroups      []string
	verbs           []string
	resources       []groupResources
	namespaces      []string
	nonResourceURLs []string
	// omitStages is the rule's omitStages joined with the policy's.
	omitStages []Stage
}

// groupResources is one entry of a rule's resources.
type groupResources struct {
	group         string
	resources     []string
	resourceNames []string
}

// DefaultPolicy records every request at Metadata and every stage.
func DefaultPolicy() *Policy {
	return &Policy{rules: []rule{{level: LevelMetadata}}}
}

// Level returns the level at which to record a request with attributes a
// and the stages not to record: those of the first rule that matches, with
// the policy's own omitStages. When no rule matches, the level is
// LevelNone. Matching is kube-apiserver's
// (k8s.io/apiserver/pkg/audit/policy/checker.go). The stages are the
// policy's own, asked for on every request: the caller must not change
// them (appending to them copies).
func (p *Policy) Level(a Attributes) (Level, []Stage) {
	for i := range p.rules {
		if p.rules[i].matches(&a) {
			return p.rules[i].level, slices.Clip(p.rules[i].omitStages)
		}
	}
	return LevelNone, slices.Clip(p.omitStages)
}

// matches reports whether r applies to a request with attributes a. A rule
// field left empty matches anything; a rule that names namespaces or
// resources matches only resource requests, one that names
// nonResourceURLs only non-resource requests.
func (r *rule) matches(a *Attributes) bool {
	if len(r.users) > 0 && !slices.Contains(r.users, a.User) {
		return false
	}
	if len(r.userGroups) > 0 && !slices.ContainsFunc(a.Groups, func(g string) bool {
		return slices.Contains(r.userGroups, g)
	}) {
		return false
	}
	if len(r.verbs) > 0 && !slices.Contains(r.verbs, a.Verb) {
		return false
	}
	if len(r.namespaces) > 0 || len(r.resources) > 0 {
		return r.matchesResource(a)
	}
	if len(r.nonResourceURLs) > 0 {
		return !a.ResourceRequest && slices.ContainsFunc(r.nonResourceURLs, func(spec string) bool {
			return pathMatches(a.Path, spec)
		})
	}
	return true
}

// matchesResource is kube-apiserver's ruleMatchesResource: the namespace
// ("" for cluster-scoped objects) must be listed, and the resource must be
// named as "pods", "pods/log", "*", "*/log" or "pods/*" in an entry of the
// request's group (or group "*"), whose resourceNames, if any, include the
// object's name.
func (r *rule) matchesResource(a *Attributes) bool {
	if !a.ResourceRequest {
		return false
	}
	if len(r.namespaces) > 0 && !slices.Contains(r.namespaces, a.Namespace) {
		return false
	}
	if len(r.resources) == 0 {
		return true
	}
	combined := a.Resource
	if a.Subresource != "" {
		combined = a.Resource + "/" + a.Subresource
	}
	for _, gr := range r.resources {
		if gr.group != a.APIGroup && gr.group != "*" {
			continue
		}
		if len(gr.resources) == 0 {
			return true
		}
		if len(gr.resourceNames) > 0 && !slices.Contains(gr.resourceNames, a.Name) {
			continue
		}
		for _, res := range gr.resources {
			switch {
			case res == combined || res == "*":
				return true
			case a.Subresource != "" && strings.HasPrefix(res, "*/") && res[2:] == a.Subresource:
				return true
			case strings.HasSuffix(res, "/*") && res[:len(res)-2] == a.Resource:
				return true
			}
		}
	}
	return false
}

// pathMatches is kube-apiserver's pathMatches: spec is "*", the path
// itself, or a prefix ending in "*".
func pathMatches(path, spec string) bool {
	if spec == "*" || spec == path {
		return true
	}
	return strings.HasSuffix(spec, "*") && strings.HasPrefix(path, strings.TrimRight(spec, "*"))
}

// maxPolicySize bounds the policy file LoadPolicy reads: real policies are
// a few kilobytes (GKE's, one of the longest published, is under 10 KiB).
const maxPolicySize = 1 << 20

// LoadPolicy reads and parses the audit policy file at path.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading audit policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("loading audit policy: %w", err)
	}
	if len(data) > maxPolicySize {
		return nil, fmt.Errorf("loading audit policy: %s is larger than %d bytes", path, maxPolicySize)
	}
	return ParsePolicy(data, path)
}

// The policy file, as decoded. Scalars that are checked after decoding are
// posStrings so that a problem can name their line.
type (
	policyFile struct {
		APIVersion        posString   `yaml:"apiVersion"`
		Kind              posString   `yaml:"kind"`
		Metadata          yaml.Node   `yaml:"metadata"` // ObjectMeta: accepted, unused
		Rules             []ruleFile  `yaml:"rules"`
		OmitStages        []posString `yaml:"omitStages"`
		OmitManagedFields bool        `yaml:"omitManagedFields"` // no bodies are recorded
	}
	ruleFile struct {
		Level             posString            `yaml:"level"`
		Users             []string             `yaml:"users"`
		UserGroups        []string             `yaml:"userGroups"`
		Verbs             []string             `yaml:"verbs"`
		Resources         []groupResourcesFile `yaml:"resources"`
		Namespaces        []string             `yaml:"namespaces"`
		NonResourceURLs   []posString          `yaml:"nonResourceURLs"`
		OmitStages        []posString          `yaml:"omitStages"`
		OmitManagedFields *bool                `yaml:"omitManagedFields"`
	}
	groupResourcesFile struct {
		Group         posString `yaml:"group"`
		Resources     []string  `yaml:"resources"`
		ResourceNames []string  `yaml:"resourceNames"`
	}
)

// posString is a YAML string and the line it is on (0 when absent).
type posString struct {
	value string
	line  int
}

// UnmarshalYAML records n's value and line. A non-string is a
// *yaml.TypeError, which the decoder collects and goes on.
func (s *posString) UnmarshalYAML(n *yaml.Node) error {
	s.line = n.Line
	return n.Decode(&s.value)
}

// yamlTypeNames turn yaml.v3's "not found in type audit.ruleFile" into
// words a policy's author knows.
var yamlTypeNames = strings.NewReplacer(
	"audit.policyFile", "the Policy",
	"audit.ruleFile", "a rule",
	"audit.groupResourcesFile", "a rule's resources",
	"audit.posString", "string",
)

// yamlUnknownField is yaml.v3's message for a field KnownFields refuses.
var yamlUnknownField = regexp.MustCompile(`^field (.*) not found in type (.*)$`)

// yamlErrorLine splits "line N: message" off a yaml.v3 error.
var yamlErrorLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// policyProblems collects what is wrong with a policy file, each naming
// the file, the line and the field.
type policyProblems struct {
	source string
	errs   []error
}

func (p *policyProblems) add(line int, field, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	if line > 0 {
		p.errs = append(p.errs, fmt.Errorf("%s:%d: %s", p.source, line, msg))
		return
	}
	p.errs = append(p.errs, fmt.Errorf("%s: %s", p.source, msg))
}

// addYAML adds an error of the YAML decoder. yaml.v3 counts the lines of
// its parser's errors (as opposed to its scanner's) from 0, and those
// messages all start "did not find expected" or "found".
func (p *policyProblems) addYAML(err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, e := range te.Errors {
			p.addYAMLMessage(e, false)
		}
		return
	}
	p.addYAMLMessage(err.Error(), true)
}

func (p *policyProblems) addYAMLMessage(s string, syntax bool) {
	s = yamlTypeNames.Replace(s)
	m := yamlErrorLine.FindStringSubmatch(s)
	if m == nil {
		p.add(0, "", "%s", strings.TrimPrefix(s, "yaml: "))
		return
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	if syntax && (strings.HasPrefix(msg, "did not find expected") || strings.HasPrefix(msg, "found ")) {
		line++
	}
	if syntax {
		msg = "malformed YAML: " + msg
	}
	if u := yamlUnknownField.FindStringSubmatch(msg); u != nil {
		msg = fmt.Sprintf("unknown field %q in %s", u[1], u[2])
	}
	p.add(line, "", "%s", msg)
}

// ParsePolicy parses an audit.k8s.io/v1 Policy in YAML (or JSON), read
// from source, which its errors name. It refuses what kube-apiserver's
// validation refuses and, unlike kube-apiserver, unknown fields too, since
// a misspelt field there silently widens or narrows what is recorded. It
// reports every problem at once, as errors joined by errors.Join.
func ParsePolicy(data []byte, source string) (*Policy, error) {
	probs := &policyProblems{source: source}
	var f policyFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	switch err := dec.Decode(&f); {
	case err == io.EOF:
		probs.add(0, "", "empty audit policy: want apiVersion: %s, kind: Policy and rules", APIVersion)
		return nil, errors.Join(probs.errs...)
	case err != nil:
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			// Malformed YAML: nothing was decoded to check further.
			probs.addYAML(err)
			return nil, errors.Join(probs.errs...)
		}
		probs.addYAML(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		probs.add(next.Line, "", "a second YAML document (after ---): put the whole policy in one")
	}

	if f.APIVersion.value != APIVersion {
		probs.add(f.APIVersion.line, "apiVersion", "got %q, want %q", f.APIVersion.value, APIVersion)
	}
	if f.Kind.value != "Policy" {
		probs.add(f.Kind.line, "kind", "got %q, want %q", f.Kind.value, "Policy")
	}
	if len(f.Rules) == 0 {
		probs.add(0, "rules", "a policy needs at least one rule (kube-apiserver refuses one without)")
	}
	p := &Policy{omitStages: probs.stages(f.OmitStages, "omitStages")}
	ruleLines := ruleLines(data)
	for i, rf := range f.Rules {
		line := 0
		if i < len(ruleLines) {
			line = ruleLines[i]
		}
		p.rules = append(p.rules, probs.rule(rf, fmt.Sprintf("rules[%d]", i), line, p.omitStages))
	}
	if len(probs.errs) > 0 {
		return nil, errors.Join(probs.errs...)
	}
	return p, nil
}

// rule checks one rule as kube-apiserver's ValidatePolicy does and
// returns it; ruleLine is where it starts.
func (probs *policyProblems) rule(rf ruleFile, field string, ruleLine int, policyOmit []Stage) rule {
	r := rule{
		level:      Level(rf.Level.value),
		users:      rf.Users,
		userGroups: rf.UserGroups,
		verbs:      rf.Verbs,
		namespaces: rf.Namespaces,
	}
	switch r.level {
	case LevelNone, LevelMetadata, LevelRequest, LevelRequestResponse:
	case "":
		probs.add(ruleLine, field+".level", "required: want None, Metadata, Request or RequestResponse")
	default:
		probs.add(rf.Level.line, field+".level", "%q is not a level: want None, Metadata, Request or RequestResponse", rf.Level.value)
	}
	for i, u := range rf.NonResourceURLs {
		r.nonResourceURLs = append(r.nonResourceURLs, u.value)
		f := fmt.Sprintf("%s.nonResourceURLs[%d]", field, i)
		if u.value == "*" {
			continue
		}
		if !strings.HasPrefix(u.value, "/") {
			probs.add(u.line, f, "%q must begin with /", u.value)
		}
		if u.value != "" && strings.Contains(u.value[:len(u.value)-1], "*") {
			probs.add(u.line, f, "%q: a * may only be the last character", u.value)
		}
	}
	if len(rf.NonResourceURLs) > 0 && (len(rf.Resources) > 0 || len(rf.Namespaces) > 0) {
		probs.add(rf.NonResourceURLs[0].line, field+".nonResourceURLs",
			"a rule cannot apply to both resources (resources, namespaces) and non-resource URLs")
	}
	for i, gr := range rf.Resources {
		f := fmt.Sprintf("%s.resources[%d]", field, i)
		if g := gr.Group.value; g != "" && g != "*" && !isDNSSubdomain(g) {
			probs.add(gr.Group.line, f+".group", "%q is not an API group (a lower-case DNS subdomain such as apps or rbac.authorization.k8s.io, without a version)", g)
		}
		if len(gr.ResourceNames) > 0 && len(gr.Resources) == 0 {
			probs.add(gr.Group.line, f+".resourceNames", "resourceNames need at least one resource")
		}
		r.resources = append(r.resources, groupResources{group: gr.Group.value, resources: gr.Resources, resourceNames: gr.ResourceNames})
	}
	r.omitStages = unionStages(policyOmit, probs.stages(rf.OmitStages, field+".omitStages"))
	return r
}

// stages checks a list of omitStages.
func (probs *policyProblems) stages(list []posString, field string) []Stage {
	var out []Stage
	for i, s := range list {
		switch st := Stage(s.value); st {
		case StageRequestReceived, StageResponseStarted, StageResponseComplete, StagePanic:
			out = append(out, st)
		default:
			probs.add(s.line, fmt.Sprintf("%s[%d]", field, i), "%q is not a stage: want RequestReceived, ResponseStarted, ResponseComplete or Panic", s.value)
		}
	}
	return out
}

// unionStages joins lists of stages without repeats, in the order the
// stages come in a request, so that Level's answer is the same each time.
func unionStages(lists ...[]Stage) []Stage {
	var out []Stage
	for _, st := range []Stage{StageRequestReceived, StageResponseStarted, StageResponseComplete, StagePanic} {
		for _, l := range lists {
			if slices.Contains(l, st) {
				out = append(out, st)
				break
			}
		}
	}
	return out
}

// ruleLines returns the line on which each rule of a policy starts, for
// problems about a field that is missing. data has been decoded once
// already, so a failure here only costs the line numbers.
func ruleLines(data []byte) []int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "rules" {
			continue
		}
		seq := top.Content[i+1]
		if seq.Kind == yaml.AliasNode && seq.Alias != nil {
			seq = seq.Alias
		}
		var lines []int
		for _, n := range seq.Content {
			lines = append(lines, n.Line)
		}
		return lines
	}
	return nil
}

// isDNSSubdomain reports whether s is a lower-case RFC 1123 subdomain, as
// Kubernetes requires of an API group name.
func isDNSSubdomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}
