package kube

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Requested is the impersonation a client asks for with kubectl --as and
// --as-group: the Impersonate-User and Impersonate-Group headers it sends
// (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#user-impersonation).
// Portcullis never forwards them as they are: with the service account's
// token they would act with the service account's right to impersonate,
// not the person's. It asks kube-apiserver whether the person may (see
// Reviews) and only then acts as the requested identity.
type Requested struct {
	User   string
	Groups []string
}

// ErrImpersonationUnsupported refuses the impersonation headers Portcullis
// does not forward: a UID (kubectl --as-uid) and extra fields. Its service
// account is not allowed to impersonate them, and Portcullis's own record
// of who impersonated is an extra field.
var ErrImpersonationUnsupported = errors.New("kubectl --as and --as-group are forwarded, not --as-uid or Impersonate-Extra- fields")

// RequestedImpersonation reads the impersonation the client's header h asks
// for, in any letter case; ok is false when it asks for none. As
// kube-apiserver does, groups without a user are refused, and so is more
// than one user. Every name must be a single line of printable text (as
// Impersonator.Set requires of what it sends); whether a name is allowed at
// all (system: names) is Impersonator.Check's to say.
func RequestedImpersonation(h http.Header) (req Requested, ok bool, err error) {
	var users []string
	for k, vv := range h {
		switch {
		case strings.EqualFold(k, headerImpersonateUser):
			users = append(users, vv...)
		case strings.EqualFold(k, headerImpersonateGroup):
			req.Groups = append(req.Groups, vv...)
		case hasPrefixFold(k, headerImpersonatePrefix):
			return Requested{}, true, ErrImpersonationUnsupported
		}
	}
	if len(users) == 0 && len(req.Groups) == 0 {
		return Requested{}, false, nil
	}
	switch {
	case len(users) == 0:
		return Requested{}, true, errors.New("impersonating groups needs a user to impersonate as well (kubectl --as with --as-group)")
	case len(users) > 1:
		return Requested{}, true, errors.New("more than one Impersonate-User header")
	case users[0] == "":
		return Requested{}, true, errors.New("an empty Impersonate-User header")
	}
	req.User = users[0]
	if err := checkHeaderValue(req.User); err != nil {
		return Requested{}, true, fmt.Errorf("the Impersonate-User header: %w", err)
	}
	for _, g := range req.Groups {
		if g == "" {
			return Requested{}, true, errors.New("an empty Impersonate-Group header")
		}
		if err := checkHeaderValue(g); err != nil {
			return Requested{}, true, fmt.Errorf("the Impersonate-Group header %q: %w", g, err)
		}
	}
	slices.Sort(req.Groups)
	req.Groups = slices.Compact(req.Groups)
	return req, true, nil
}

// ReviewAttributes are the resource attributes of one SubjectAccessReview
// (authorization.k8s.io/v1 ResourceAttributes).
type ReviewAttributes struct {
	Namespace string `json:"namespace,omitempty"`
	Verb      string `json:"verb"`
	Group     string `json:"group,omitempty"`
	Resource  string `json:"resource"`
	Name      string `json:"name"`
}

// Reviews are the questions kube-apiserver's own impersonation filter asks
// of a client that sends req's headers: may it impersonate the user (a
// service account's user name is checked as the service account), and each
// group. A person gets to act as req only if RBAC answers yes to every one
// of them for the person.
func (req Requested) Reviews() []ReviewAttributes {
	out := make([]ReviewAttributes, 0, 1+len(req.Groups))
	if ns, name, ok := serviceAccountName(req.User); ok {
		out = append(out, ReviewAttributes{Verb: "impersonate", Resource: "serviceaccounts", Namespace: ns, Name: name})
	} else {
		out = append(out, ReviewAttributes{Verb: "impersonate", Resource: "users", Name: req.User})
	}
	for _, g := range req.Groups {
		out = append(out, ReviewAttributes{Verb: "impersonate", Resource: "groups", Name: g})
	}
	return out
}

// serviceAccountName splits system:serviceaccount:<namespace>:<name>, the
// user name of a service account, which kube-apiserver checks against the
// serviceaccounts resource rather than users.
func serviceAccountName(user string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return ns, name, true
}

// ExtraImpersonator is the key of the extra field by which Portcullis
// tells kube-apiserver, and its audit log, which person acted as an
// impersonated user: Impersonate-Extra-<key>, the key percent-encoded as
// the header name requires.
const (
	ExtraImpersonator       = "portcullis.io/impersonator"
	HeaderExtraImpersonator = headerImpersonatePrefix + "Extra-Portcullis.io%2fimpersonator"
)

// SetAs is Set for a person who acts as req (kubectl --as), once
// kube-apiserver has said the person may: the requested user and groups,
// and the person's own name in the ExtraImpersonator field, so that the
// cluster's audit log records who acted (impersonatedUser.extra). The
// service account must be allowed to impersonate that field
// (userextras/portcullis.io/impersonator in authentication.k8s.io).
func (im Impersonator) SetAs(h http.Header, saToken string, req Requested, person string) error {
	if err := im.Set(h, saToken, req.User, req.Groups); err != nil {
		return err
	}
	if person == "" {
		clearImpersonation(h)
		return errors.New("impersonating: no person to record as the impersonator")
	}
	if err := checkHeaderValue(person); err != nil {
		clearImpersonation(h)
		return fmt.Errorf("impersonating: the impersonator %q: %w", person, err)
	}
	h[HeaderExtraImpersonator] = []string{person}
	return nil
}

// clearImpersonation removes every credential and impersonation header,
// as Set does on error.
func clearImpersonation(h http.Header) {
	for k := range h {
		if strings.EqualFold(k, headerAuthorization) || hasPrefixFold(k, headerImpersonatePrefix) {
			delete(h, k)
		}
	}
}
