package policy

import (
	"crypto/x509"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Request is what a decision is made on: who is asking and what for. The
// server fills it from the verified identity and the HTTP request; it is
// read, never kept or modified.
type Request struct {
	// Authenticated is true when a verified identity came with the
	// request. Without one, every criterion on the person (email, domain,
	// user, groups, claim/…, authenticated_user) fails with
	// ReasonUserUnauthenticated, whatever its matcher, as in Pomerium.
	Authenticated bool
	// User is the stable subject at the identity provider (user).
	User string
	// Email is the person's email address (email, and domain: the part
	// after the first "@").
	Email string
	// Groups are matched by groups.
	Groups []string
	// Claims are the identity token's claims for claim/<name>, each as a
	// list of strings: a string claim is a list of one, nested objects
	// are flattened with "/" between the keys ("address/country").
	// Pomerium, too, holds every claim as a list. Only string values go
	// in: leave out a number or a boolean. Pomerium compares a claim with
	// its JSON type, so claim/level: "3" does not match the number 3
	// there, and text here cannot say which it was. (A policy's number or
	// boolean operand is refused at compile time for the same reason.)
	// Nil when the person has none.
	Claims Claims

	// Method is the HTTP method as sent (http_method).
	Method string
	// Path is the request's URL path, without the query (http_path).
	Path string
	// SourceIP is the client's address (source_ip); the zero Addr matches
	// no address.
	SourceIP netip.Addr
	// CORSPreflight is true for an OPTIONS request with Origin and
	// Access-Control-Request-Method headers (cors_preflight).
	CORSPreflight bool
	// ClientCertificate is the verified TLS client certificate, nil when
	// none was presented (client_certificate).
	ClientCertificate *x509.Certificate
	// Time is when the request arrived (date, day_of_week, time_of_day);
	// the zero Time stands for the time Evaluate is called.
	Time time.Time

	// Kubernetes holds the request's Kubernetes attributes for the
	// kubernetes_* criteria, as kube.ParseRequestInfo gives them; empty
	// for a request that is not to the Kubernetes API.
	Kubernetes Kubernetes
}

// Claims are a person's claims, as claim/<name> reads them: an interface
// so that the server can hand the policy the person it already holds,
// rather than copy every claim into a map for each request when most
// policies read none.
type Claims interface {
	// Claim returns the values of the claim name and whether the person
	// has it.
	Claim(name string) ([]string, bool)
}

// Kubernetes are the attributes kube-apiserver authorizes a request on
// (see kube.RequestInfo).
type Kubernetes struct {
	// Verb: get, list, watch, create, update, patch, delete,
	// deletecollection, proxy; the lower-case HTTP method for a
	// non-resource URL. kubectl exec, attach and port-forward are create
	// (SPDY) or get (WebSocket) on a subresource: match the subresource.
	Verb string
	// APIGroup is "" for the core group.
	APIGroup string
	// Resource is the plural resource name ("pods").
	Resource string
	// Subresource: "exec", "attach", "portforward", "log", "proxy",
	// "status", "scale", …
	Subresource string
	// Namespace is "" for cluster-scoped and all-namespace requests.
	Namespace string
	// Name is the object's name, "" for lists and creates.
	Name string
}

// Decision is the outcome of Evaluate.
type Decision struct {
	// Allow is true when at least one allow rule matched and no deny rule
	// did.
	Allow bool
	// Reasons are the constant reasons (Reason* constants) of the
	// criteria that decided, sorted: of the matching deny rules when one
	// matched; of the matching allow rules when the request is allowed;
	// otherwise of the allow rules, which all failed (say
	// "groups-unauthorized"). The slice is shared: do not modify it.
	Reasons []string
	// Rule is the first rule that decided: the first matching deny rule,
	// or the first matching allow rule; nil when no rule matched.
	Rule *Rule
}

// Rule names one rule of a compiled policy, for messages and logs.
type Rule struct {
	// Index is the rule's position in the compiled policy, from 0; the
	// rule built from legacy route keys, if any, comes first.
	Index int
	// Action is "allow" or "deny".
	Action string
	// Path names the rule within the route: "policy[1].deny.and", or the
	// legacy keys it was built from ("allowed_users, allowed_domains").
	Path string
	// Source is the file and line the rule was written on
	// ("config.yaml:12", "POLICY (decoded) line 3"), "" if unknown.
	Source string
}

// HasReason reports whether reason is among d.Reasons.
func (d Decision) HasReason(reason string) bool {
	return slices.Contains(d.Reasons, reason)
}

// SignInRequired reports whether the request was refused for want of a
// signed-in user: the caller should answer 401 or redirect to sign in
// rather than 403.
func (d Decision) SignInRequired() bool {
	return !d.Allow && d.HasReason(ReasonUserUnauthenticated)
}

// Message says what was decided and why, in words fit for the person who
// made the request (the Status message kubectl prints, the HTML error
// page): the rule and the reasons, which are constants; never other users'
// data nor where the configuration lives.
func (d Decision) Message() string {
	// Concatenated rather than formatted: the audit trail records the
	// message of every request.
	reasons := strings.Join(d.Reasons, ", ")
	switch {
	case d.Allow && d.Rule != nil:
		return "allowed by policy rule " + d.Rule.Path + " (" + reasons + ")"
	case d.Rule != nil:
		return "denied by policy rule " + d.Rule.Path + " (" + reasons + ")"
	case d.HasReason(ReasonNoPolicy):
		return "denied: the route has no policy, so nothing is allowed (" + ReasonNoPolicy + ")"
	case d.HasReason(ReasonNoAllowRule):
		return "denied: the route's policy has no allow rule (" + ReasonNoAllowRule + ")"
	default:
		return "denied: no policy rule allows this request (" + reasons + ")"
	}
}

// LogValue implements slog.LogValuer: the decision, the reasons and the
// deciding rule with the line it is written on.
func (d Decision) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Bool("allow", d.Allow),
		slog.Any("reasons", d.Reasons),
	}
	if d.Rule != nil {
		attrs = append(attrs, slog.String("rule", d.Rule.Path))
		if d.Rule.Source != "" {
			attrs = append(attrs, slog.String("rule_source", d.Rule.Source))
		}
	}
	return slog.GroupValue(attrs...)
}

// Policy is a route's compiled policy. It is immutable and safe for
// concurrent use.
type Policy struct {
	// rules lists every rule, in order.
	rules []*Rule
	allow []compiledRule
	deny  []compiledRule
	// clock is true when a criterion reads the time.
	clock bool
	// connection names the criteria that read the client's connection.
	connection []string
}

// ConnectionCriteria names the criteria of the policy that read the
// client's connection (source_ip, client_certificate, cors_preflight), in
// the order first written. A decision made without the connection, as
// Portcullis's authorization webhook makes them for kube-apiserver in
// direct mode, cannot honour them.
func (p *Policy) ConnectionCriteria() []string { return p.connection }

type compiledRule struct {
	info *Rule
	root node
}

// Evaluate decides on r. Deny rules are evaluated first and win; then
// allow rules; a request no allow rule matches is refused. It does not
// allocate (the Reasons slices are cached per set of reasons) except for
// a client_certificate san_uri matcher.
//
// A nil Policy denies everything, like a route without a policy.
func (p *Policy) Evaluate(r *Request) Decision {
	if p == nil || len(p.allow) == 0 && len(p.deny) == 0 {
		return Decision{Reasons: reasonStrings(rNoPolicy.mask())}
	}
	e := env{r: r, now: r.Time}
	if p.clock && e.now.IsZero() {
		e.now = time.Now()
	}

	// Every rule is evaluated, not just up to the first match, so that the
	// reasons are those Pomerium gives: the union over the rules that
	// decided.
	var denied uint64
	var denyRule *Rule
	for i := range p.deny {
		if ok, m := p.deny[i].root.eval(&e); ok {
			denied |= m
			if denyRule == nil {
				denyRule = p.deny[i].info
			}
		}
	}
	if denyRule != nil {
		return Decision{Reasons: reasonStrings(denied), Rule: denyRule}
	}

	var allowed, failed uint64
	var allowRule *Rule
	for i := range p.allow {
		if ok, m := p.allow[i].root.eval(&e); ok {
			allowed |= m
			if allowRule == nil {
				allowRule = p.allow[i].info
			}
		} else {
			failed |= m
		}
	}
	if allowRule != nil {
		return Decision{Allow: true, Reasons: reasonStrings(allowed), Rule: allowRule}
	}
	if len(p.allow) == 0 {
		failed = rNoAllowRule.mask()
	}
	return Decision{Reasons: reasonStrings(failed)}
}

// env is what evaluation reads: the request and the time it is decided at.
type env struct {
	r   *Request
	now time.Time
}

// op is what a node does.
type op uint8

const (
	opCriterion op = iota
	opAnd          // all children hold
	opOr           // at least one holds
	opNot          // none holds (Pomerium's not: ¬A ∧ ¬B)
	opNor          // not all hold (Pomerium's nor: ¬A ∨ ¬B)
)

// node is an operator over children, or a criterion.
type node struct {
	op   op
	kids []node
	crit *criterion
}

// eval returns whether n holds and its reasons, merged as Pomerium's
// merge_with_and and merge_with_or do: a result that holds carries the
// reasons of the children that decided it, one that fails those of the
// children that made it fail. not and nor invert each child's result
// first, keeping its reasons.
func (n *node) eval(e *env) (bool, uint64) {
	if n.op == opCriterion {
		ok, r := n.crit.eval(e)
		return ok, r.mask()
	}
	invert := n.op == opNot || n.op == opNor
	var held, notHeld uint64
	all, any := true, false
	for i := range n.kids {
		ok, m := n.kids[i].eval(e)
		if ok != invert {
			held |= m
			any = true
		} else {
			notHeld |= m
			all = false
		}
	}
	switch n.op {
	case opAnd, opNot:
		if all {
			return true, held
		}
		return false, notHeld
	default: // opOr, opNor
		if any {
			return true, held
		}
		return false, notHeld
	}
}
