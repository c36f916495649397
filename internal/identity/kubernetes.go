package identity

import (
	"errors"
	"fmt"
)

// The identity Kubernetes sees (Impersonate-User and Impersonate-Group) is
// the person as a route maps them: which claim is the user name, what
// prefixes the user and the groups get, and which groups pass. The
// settings are named after kube-apiserver's own OpenID Connect flags
// (--oidc-username-claim, --oidc-username-prefix, --oidc-groups-prefix) and
// behave as they do, so that RBAC written for a cluster that authenticates
// people with OIDC itself works unchanged behind Portcullis, and the
// reverse.

// ClaimEmail is the default user name claim: the email address the
// identity provider verified (Identity.Email).
const ClaimEmail = "email"

// NoPrefix, as a prefix, means none: kube-apiserver's value for turning
// off the issuer prefix of --oidc-username-prefix. Portcullis takes it for
// the groups prefix as well, so that a route can turn off a prefix it
// would inherit from the top-level setting.
const NoPrefix = "-"

// KubernetesOptions are a route's identity mapping settings as configured
// (kubernetes_username_claim, kubernetes_username_prefix,
// kubernetes_groups_prefix, kubernetes_groups_filter), and the identity
// provider's issuer URL, which the default user name prefix may need.
type KubernetesOptions struct {
	UsernameClaim  string   // "" is ClaimEmail
	UsernamePrefix string   // "" when not given; NoPrefix for none
	GroupsPrefix   string   // "" or NoPrefix for none
	GroupsFilter   []string // patterns (GroupFilter); none keep every group
	Issuer         string   // the provider's issuer URL (IDP_PROVIDER_URL, or the preset's)
}

// A KubernetesMapping turns a person into the user and groups Kubernetes
// sees on one route. The nil mapping is the default: the email address and
// the provider's groups, unchanged.
type KubernetesMapping struct {
	claim        string
	userPrefix   string
	groupsPrefix string
	filter       *GroupFilter
}

// NewKubernetesMapping builds the mapping o configures. The user name
// prefix follows kube-apiserver's rule for --oidc-username-prefix, from
// pkg/kubeapiserver/options/authentication.go, which documents the flag as
// "If provided, all usernames will be prefixed with this value. If not
// provided, username claims other than 'email' are prefixed by the issuer
// URL to avoid clashes. To skip any prefixing, provide the value '-'.":
//
//	usernamePrefix := o.OIDC.UsernamePrefix
//	if o.OIDC.UsernamePrefix == "" && o.OIDC.UsernameClaim != "email" {
//		usernamePrefix = o.OIDC.IssuerURL + "#"
//	}
//	if o.OIDC.UsernamePrefix == "-" {
//		usernamePrefix = ""
//	}
//
// (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#using-flags:
// "If this flag isn't provided and --oidc-username-claim is a value other
// than email the prefix defaults to ( Issuer URL )# … The value - can be
// used to disable all prefixing.") A sub of 1234 from
// https://accounts.example.com is so the user
// https://accounts.example.com#1234, never the same name as a person or a
// service whose name is 1234. The one difference is the default claim:
// kube-apiserver's is sub, Portcullis's email, as it always was.
//
// Without an issuer, a claim other than email needs a prefix: the error
// says so.
func NewKubernetesMapping(o KubernetesOptions) (*KubernetesMapping, error) {
	m := &KubernetesMapping{claim: o.UsernameClaim, userPrefix: o.UsernamePrefix, groupsPrefix: o.GroupsPrefix}
	if m.claim == "" {
		m.claim = ClaimEmail
	}
	if m.userPrefix == "" && m.claim != ClaimEmail {
		if o.Issuer == "" {
			return nil, fmt.Errorf("the user name claim is %q, which kube-apiserver's rule prefixes with the identity provider's issuer URL and \"#\", "+
				"and there is no identity provider: give a user name prefix, or %q for none", m.claim, NoPrefix)
		}
		m.userPrefix = o.Issuer + "#"
	}
	if m.userPrefix == NoPrefix {
		m.userPrefix = ""
	}
	if m.groupsPrefix == NoPrefix {
		m.groupsPrefix = ""
	}
	var err error
	if m.filter, err = ParseGroupFilter(o.GroupsFilter); err != nil {
		return nil, err
	}
	if m.claim == ClaimEmail && m.userPrefix == "" && m.groupsPrefix == "" && m.filter == nil {
		return nil, nil // the default
	}
	return m, nil
}

// ChangesGroups reports whether Map gives other groups than the
// provider's: a groups prefix or filter is set.
func (m *KubernetesMapping) ChangesGroups() bool {
	return m != nil && (m.filter != nil || m.groupsPrefix != "")
}

// ErrNoKubernetesUser is the refusal of a person whose mapping gives no
// user name: forwarded without one, a request would act with the service
// account's own rights.
var ErrNoKubernetesUser = errors.New("no Kubernetes user name")

// Map returns the user and groups Kubernetes sees for id.
//
// The user name is the claim's value with the prefix before it. email,
// sub and name are the person as authentication established them (a
// refresh may have changed them since sign-in); any other claim is one of
// the provider's text claims kept in the session (Identity.Claims): a
// string, or a list of one string. A claim that is missing, empty, a list
// of another length, or was not kept (a number, a boolean, an object, or
// a value over the session's bounds) gives no user name, and an error
// that says which claim and why, wrapping ErrNoKubernetesUser. Whether the
// name is one Kubernetes may be asked for (printable, not system:…) is the
// impersonation's to check, on the name as mapped: a prefix can make a
// name system:… that was not.
//
// The groups are the provider's that the filter keeps, in their order,
// each with the groups prefix before it. The filter is matched against
// the provider's names, before the prefix.
func (m *KubernetesMapping) Map(id *Identity) (user string, groups []string, err error) {
	if m == nil {
		return id.Email, id.Groups, nil
	}
	var vals []string
	switch m.claim {
	case ClaimEmail:
		vals = []string{id.Email}
	case "sub":
		vals = []string{id.User}
	case "name":
		vals = []string{id.Name}
	default:
		var ok bool
		if vals, ok = id.Claims[m.claim]; !ok {
			return "", nil, fmt.Errorf("%w: the identity provider gave no %q claim that Portcullis keeps (a string, at most 1 KiB), "+
				"and it is the claim this route takes the Kubernetes user name from (kubernetes_username_claim)", ErrNoKubernetesUser, m.claim)
		}
	}
	switch {
	case len(vals) != 1:
		return "", nil, fmt.Errorf("%w: the %q claim holds %d values, and a Kubernetes user name is one", ErrNoKubernetesUser, m.claim, len(vals))
	case vals[0] == "":
		return "", nil, fmt.Errorf("%w: the %q claim is empty", ErrNoKubernetesUser, m.claim)
	}
	user = m.userPrefix + vals[0]
	if m.filter == nil && m.groupsPrefix == "" {
		return user, id.Groups, nil
	}
	groups = make([]string, 0, len(id.Groups))
	for _, g := range id.Groups {
		if m.filter.Keep(g) {
			groups = append(groups, m.groupsPrefix+g)
		}
	}
	return user, groups, nil
}
