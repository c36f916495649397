package policy

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/kube"
)

// routeFile is a config file with one route; routeKeys and policy are
// indented into it. policyLine is the line the policy's text starts on.
const (
	routeHeader = "routes:\n  - from: https://k8s.example.com\n    to: https://kubernetes.example.com\n"
)

// loadRoute loads a config file holding one route with the given extra
// route keys (YAML, one per line) and policy (YAML text, may be empty),
// as the server would, and returns the route. It returns the first line
// of the policy text in the file too, for tests of Problem.Source.
func loadRoute(t testing.TB, routeKeys, policyText string) (*config.Route, int, error) {
	t.Helper()
	var b strings.Builder
	b.WriteString(routeHeader)
	for line := range strings.SplitSeq(strings.TrimRight(routeKeys, "\n"), "\n") {
		if line != "" {
			b.WriteString("    " + line + "\n")
		}
	}
	first := strings.Count(b.String(), "\n") + 2
	if policyText != "" {
		b.WriteString("    policy:\n")
		for line := range strings.SplitSeq(strings.TrimRight(policyText, "\n"), "\n") {
			b.WriteString("      " + line + "\n")
		}
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := config.Load(path, nil)
	if err != nil {
		return nil, first, err
	}
	if len(opts.Routes) != 1 {
		t.Fatalf("loading %s: %d routes, want 1", b.String(), len(opts.Routes))
	}
	return &opts.Routes[0], first, nil
}

// compileText loads and compiles a route with policy text and route keys.
// A problem config.Load finds (it checks actions and operators itself) is
// returned as Compile's would be.
func compileText(t testing.TB, routeKeys, policyText string) (*Policy, error) {
	t.Helper()
	route, _, err := loadRoute(t, routeKeys, policyText)
	if err != nil {
		return nil, err
	}
	return Compile(route)
}

// problemKeys returns each Problem in err as "key: message".
func problemKeys(err error) []string {
	var out []string
	for _, p := range config.Problems(err) {
		out = append(out, p.Key+": "+p.Message)
	}
	return out
}

// testRequest is a request as the conformance cases write it.
type testRequest struct {
	// Authenticated defaults to true when an identity field is set.
	Authenticated *bool               `yaml:"authenticated"`
	User          string              `yaml:"user"`
	Email         string              `yaml:"email"`
	Groups        []string            `yaml:"groups"`
	Claims        map[string][]string `yaml:"claims"`

	Method string `yaml:"method"` // default GET
	Path   string `yaml:"path"`   // default /
	Query  string `yaml:"query"`
	// SourceIP defaults to 192.0.2.10.
	SourceIP      string `yaml:"source_ip"`
	CORSPreflight bool   `yaml:"cors_preflight"`
	// ClientCertificate names testdata/client-<name>.pem.
	ClientCertificate string `yaml:"client_certificate"`
	// Time defaults to 2025-06-04T10:00:00Z, a Wednesday.
	Time string `yaml:"time"`
	// Kubernetes overrides what kube.ParseRequestInfo gives for
	// Method, Path and Query.
	Kubernetes map[string]string `yaml:"kubernetes"`
}

var defaultTime = time.Date(2025, 6, 4, 10, 0, 0, 0, time.UTC)

func (tr *testRequest) build(t testing.TB) *Request {
	t.Helper()
	r := &Request{
		User: tr.User, Email: tr.Email, Groups: tr.Groups, Claims: ClaimMap(tr.Claims),
		Method: tr.Method, Path: tr.Path, CORSPreflight: tr.CORSPreflight, Time: defaultTime,
	}
	r.Authenticated = tr.User != "" || tr.Email != "" || len(tr.Groups) > 0 || len(tr.Claims) > 0
	if tr.Authenticated != nil {
		r.Authenticated = *tr.Authenticated
	}
	if r.Method == "" {
		r.Method = "GET"
	}
	if r.Path == "" {
		r.Path = "/"
	}
	ip := tr.SourceIP
	if ip == "" {
		ip = "192.0.2.10"
	}
	if ip != "none" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			t.Fatalf("source_ip: %v", err)
		}
		r.SourceIP = a
	}
	if tr.ClientCertificate != "" {
		r.ClientCertificate = testCert(t, tr.ClientCertificate)
	}
	if tr.Time != "" {
		tm, err := time.Parse(time.RFC3339, tr.Time)
		if err != nil {
			t.Fatalf("time: %v", err)
		}
		r.Time = tm
	}
	ri, err := kube.ParseRequestInfo(r.Method, r.Path, tr.Query)
	if err != nil {
		t.Fatalf("kube.ParseRequestInfo(%q, %q, %q): %v", r.Method, r.Path, tr.Query, err)
	}
	r.Kubernetes = Kubernetes{
		Verb: ri.Verb, APIGroup: ri.APIGroup, Resource: ri.Resource,
		Subresource: ri.Subresource, Namespace: ri.Namespace, Name: ri.Name,
	}
	for k, v := range tr.Kubernetes {
		switch k {
		case "verb":
			r.Kubernetes.Verb = v
		case "api_group":
			r.Kubernetes.APIGroup = v
		case "resource":
			r.Kubernetes.Resource = v
		case "subresource":
			r.Kubernetes.Subresource = v
		case "namespace":
			r.Kubernetes.Namespace = v
		case "name":
			r.Kubernetes.Name = v
		default:
			t.Fatalf("kubernetes: unknown attribute %q", k)
		}
	}
	return r
}

func testCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "client-"+name+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("client-%s.pem: no PEM block", name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// yamlText renders a node as YAML text, or "" for an absent node.
func yamlText(t testing.TB, n *yaml.Node) string {
	t.Helper()
	if n == nil || n.Kind == 0 {
		return ""
	}
	// A case may share a policy with an anchor: render what it names.
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	c := *n
	c.Anchor = ""
	out, err := yaml.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// routeKeysText renders a mapping of route keys one per line.
func routeKeysText(t testing.TB, n *yaml.Node) string {
	t.Helper()
	if n == nil || n.Kind == 0 {
		return ""
	}
	if n.Kind != yaml.MappingNode {
		t.Fatalf("route: want a mapping of route keys")
	}
	var b strings.Builder
	for i := 0; i+1 < len(n.Content); i += 2 {
		v, err := yaml.Marshal(n.Content[i+1])
		if err != nil {
			t.Fatal(err)
		}
		// Flow style keeps each key on one line.
		fmt.Fprintf(&b, "%s: %s\n", n.Content[i].Value, strings.TrimSpace(flow(string(v))))
	}
	return b.String()
}

// flow turns a block list rendered by yaml.Marshal into a flow list.
func flow(s string) string {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "- ") {
		return s
	}
	var items []string
	for line := range strings.SplitSeq(s, "\n") {
		items = append(items, strings.TrimPrefix(line, "- "))
	}
	return "[" + strings.Join(items, ", ") + "]"
}

// ClaimMap is Claims held in a map, for tests.
type ClaimMap map[string][]string

// Claim returns m[name].
func (m ClaimMap) Claim(name string) ([]string, bool) {
	v, ok := m[name]
	return v, ok
}
