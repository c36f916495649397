package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"

	// time_of_day names a zone; OPA's time.clock loads it by name.
	_ "time/tzdata"
)

// decisionsFile is internal/policy's record of the bench requests and of
// what Portcullis decides on them (see internal/policy/
// bench_decisions_test.go), relative to this package's directory, where
// go test runs.
const decisionsFile = "../../internal/policy/testdata/bench-decisions.json"

// decisionsDoc is decisionsFile's content.
type decisionsDoc struct {
	Comment     string         `json:"comment"`
	RulesSHA256 string         `json:"rules_sha256"`
	DecidedAt   time.Time      `json:"decided_at"`
	Requests    []benchRequest `json:"requests"`
	Decisions   []decisionCase `json:"decisions"`
}

// benchRequest is a policy.Request as internal/policy writes it.
type benchRequest struct {
	Name          string              `json:"name"`
	Authenticated bool                `json:"authenticated"`
	User          string              `json:"user,omitempty"`
	Email         string              `json:"email,omitempty"`
	Groups        []string            `json:"groups,omitempty"`
	Claims        map[string][]string `json:"claims,omitempty"`
	Method        string              `json:"method"`
	Path          string              `json:"path"`
	SourceIP      string              `json:"source_ip"`
	// Time is "" for a request decided when it is evaluated.
	Time       string `json:"time,omitempty"`
	Kubernetes struct {
		Verb        string `json:"verb"`
		APIGroup    string `json:"api_group"`
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"kubernetes"`
}

type decisionCase struct {
	Rules   int      `json:"rules"`
	Request string   `json:"request"`
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
}

func loadDecisions() (*decisionsDoc, error) {
	data, err := os.ReadFile(decisionsFile)
	if err != nil {
		return nil, fmt.Errorf("reading the bench decisions: %w", err)
	}
	var doc decisionsDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("reading %s: %w", decisionsFile, err)
	}
	return &doc, nil
}

// at returns the request's time, or zero for one decided when it is
// evaluated.
func (r *benchRequest) at() (time.Time, error) {
	if r.Time == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, r.Time)
}

// policyInput is the input document, as Pomerium's authorize service
// passes it (evaluator.PolicyRequest: http, session,
// is_valid_client_certificate), with the Kubernetes attributes and the
// records Pomerium would read from its databroker (see rego.go).
type policyInput struct {
	HTTP                     inputHTTP                            `json:"http"`
	Session                  inputSession                         `json:"session"`
	IsValidClientCertificate bool                                 `json:"is_valid_client_certificate"`
	Kubernetes               inputKubernetes                      `json:"kubernetes"`
	Databroker               map[string]map[string]map[string]any `json:"databroker"`
}

type inputHTTP struct {
	Method            string            `json:"method"`
	Hostname          string            `json:"hostname"`
	Path              string            `json:"path"`
	URL               string            `json:"url"`
	Headers           map[string]string `json:"headers"`
	ClientCertificate struct {
		Presented bool   `json:"presented"`
		Leaf      string `json:"leaf"`
	} `json:"client_certificate"`
	IP string `json:"ip"`
}

type inputSession struct {
	ID string `json:"id"`
}

type inputKubernetes struct {
	Verb        string `json:"verb"`
	APIGroup    string `json:"api_group"`
	Resource    string `json:"resource"`
	Subresource string `json:"subresource"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
}

// input returns r's input document. An authenticated request has a
// session, its user and its directory user, with the claims on the
// session, as Pomerium stores them; an anonymous one has none.
func (r *benchRequest) input() *policyInput {
	const host = "k8s.example.com"
	in := &policyInput{
		HTTP: inputHTTP{
			Method:   r.Method,
			Hostname: host,
			Path:     r.Path,
			URL:      "https://" + host + r.Path,
			Headers: map[string]string{
				"Accept":     "application/json, */*",
				"User-Agent": "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0",
			},
			IP: r.SourceIP,
		},
		Kubernetes: inputKubernetes(r.Kubernetes),
		Databroker: map[string]map[string]map[string]any{},
	}
	if r.Authenticated {
		in.Session.ID = "session-" + r.User
		claims := map[string]any{}
		for k, v := range r.Claims {
			claims[k] = v
		}
		in.Databroker["type.googleapis.com/session.Session"] = map[string]map[string]any{
			in.Session.ID: {"id": in.Session.ID, "user_id": r.User, "claims": claims},
		}
		in.Databroker["type.googleapis.com/user.User"] = map[string]map[string]any{
			r.User: {"id": r.User, "email": r.Email},
		}
		in.Databroker["pomerium.io/DirectoryUser"] = map[string]map[string]any{
			r.User: {"id": r.User, "group_ids": r.Groups},
		}
	}
	return in
}

// The queries. pomeriumQuery is Pomerium's (authorize/evaluator
// NewPolicyEvaluator): the whole package document, every rule's value.
// leanQuery asks only for allow and deny.
const (
	pomeriumQuery = "result = data.pomerium.policy"
	leanQuery     = "allow = data.pomerium.policy.allow; deny = data.pomerium.policy.deny"
)

// prepare compiles the first n bench rules as Rego and prepares query on
// them.
func prepare(ctx context.Context, n int, query string) (rego.PreparedEvalQuery, error) {
	module, err := regoModule(benchRules(n))
	if err != nil {
		return rego.PreparedEvalQuery{}, err
	}
	q, err := rego.New(
		rego.Module("pomerium.policy", module),
		rego.Query(query),
	).PrepareForEval(ctx)
	if err != nil {
		return rego.PreparedEvalQuery{}, fmt.Errorf("preparing %d rules: %w", n, err)
	}
	return q, nil
}

// decision is what Portcullis's Decision holds of a decision: deny wins;
// the reasons are the deny rule's when it matched, else the allow rule's,
// whether it matched or not.
type decision struct {
	Allow   bool
	Reasons []string
}

// decide reads a decision from a result set of pomeriumQuery or
// leanQuery, as Pomerium's PolicyEvaluator.getRuleResult reads allow and
// deny: [value, reasons, additional data].
func decide(rs rego.ResultSet) (decision, error) {
	if len(rs) != 1 {
		return decision{}, fmt.Errorf("evaluating the policy: %d results, want 1", len(rs))
	}
	vars := rs[0].Bindings
	if doc, ok := vars["result"].(map[string]any); ok {
		vars = doc
	}
	allow, allowReasons, err := ruleResult(vars["allow"])
	if err != nil {
		return decision{}, fmt.Errorf("reading allow: %w", err)
	}
	deny, denyReasons, err := ruleResult(vars["deny"])
	if err != nil {
		return decision{}, fmt.Errorf("reading deny: %w", err)
	}
	if deny {
		return decision{Reasons: denyReasons}, nil
	}
	return decision{Allow: allow, Reasons: allowReasons}, nil
}

func ruleResult(v any) (bool, []string, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return false, nil, fmt.Errorf("got %v, want [value, reasons, …]", v)
	}
	value, ok := arr[0].(bool)
	if !ok {
		return false, nil, fmt.Errorf("value %v is not a boolean", arr[0])
	}
	set, _ := arr[1].([]any)
	reasons := make([]string, 0, len(set))
	for _, r := range set {
		s, ok := r.(string)
		if !ok {
			return false, nil, fmt.Errorf("reason %v is not a string", r)
		}
		reasons = append(reasons, s)
	}
	slices.Sort(reasons)
	return value, reasons, nil
}
