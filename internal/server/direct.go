package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/portcullis-proxy/portcullis/internal/authenticate"
	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/direct"
	"github.com/portcullis-proxy/portcullis/internal/kube"
	"github.com/portcullis-proxy/portcullis/internal/policy"
	"github.com/portcullis-proxy/portcullis/internal/respond"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// Direct mode: kube-apiserver validates Portcullis tokens itself (a JWT
// authenticator of its structured authentication configuration, reading
// the issuer's discovery document and keys on the authenticate host), and
// asks Portcullis's authorization webhook, on the route's host, about
// every request of a person signed in with Portcullis. No request goes
// through the proxy; the route's policy still decides, and a session that
// ended ends the person's access. DirectConfig writes the apiserver's
// files (package direct).

// pathReview is a Kubernetes route's authorization webhook: kube-apiserver
// POSTs a SubjectAccessReview (authorization.k8s.io/v1) and gets it back
// with its status.
const pathReview = "/.pomerium/api/v1/kubernetes/subjectaccessreview"

// maxReviewBody bounds a review's body. A review is the person's name,
// groups and extra and the request's attributes: a few KiB even with
// hundreds of groups.
const maxReviewBody = 256 << 10

// systemAuthenticated is the group kube-apiserver adds to every
// authenticated user; no token carries it.
const systemAuthenticated = "system:authenticated"

// kubernetesIdentity is authenticate's Options.KubernetesIdentity: the
// person of sess as the Kubernetes route of audience maps them, checked as
// the proxy checks what it impersonates, but never with system: names
// (kube-apiserver's authentication configuration refuses them too). The
// groups are nil when the mapping leaves the provider's as they are.
func (s *Server) kubernetesIdentity(audience string, sess *session.Session) (string, []string, bool) {
	rs := s.current().routes[config.CanonicalHost(audience)]
	if rs == nil || !rs.route.IsKubernetes() {
		return "", nil, false
	}
	user, groups, err := rs.mapping.Map(authenticate.SessionIdentity(sess))
	if err != nil || (kube.Impersonator{}).Check(user, groups) != nil {
		return "", nil, false
	}
	if !rs.mapping.ChangesGroups() {
		groups = nil
	}
	return user, groups, true
}

// webhookToken is the bearer token kube-apiserver presents to a route's
// authorization webhook: an HMAC of the route under SHARED_SECRET, so
// every replica accepts it and each route has its own.
func webhookToken(sharedSecret []byte, route *config.Route) string {
	m := hmac.New(sha256.New, sharedSecret)
	m.Write([]byte("portcullis authorization webhook\n" + route.From.String()))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// serveReview answers the authorization webhook of route rs, whose
// bearer credential is want. Only kube-apiserver holds the token; anyone
// else is refused before the body is read. Every failure to decide is an
// HTTP error, which kube-apiserver does not cache and settles by the
// failure policy (Deny).
func (s *Server) serveReview(rs *routeState, want string, decisions *decisionCounters, w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		respond.Error(w, r, respond.Problem{Code: http.StatusMethodNotAllowed, Message: "portcullis: the authorization webhook takes a SubjectAccessReview by POST"})
		return
	}
	if got := r.Header.Get("Authorization"); subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		respond.Error(w, r, respond.Problem{Code: http.StatusUnauthorized,
			Message: "portcullis: the authorization webhook is for kube-apiserver, with the token of the kubeconfig `portcullis direct-config` writes"})
		return
	}
	var sar authorizationv1.SubjectAccessReview
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxReviewBody))
	if err := dec.Decode(&sar); err != nil || sar.APIVersion != "authorization.k8s.io/v1" || sar.Kind != "SubjectAccessReview" {
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest,
			Message: "portcullis: the body is not a SubjectAccessReview of authorization.k8s.io/v1 (of at most 256 KiB): set subjectAccessReviewVersion: v1"})
		return
	}
	status, d, err := s.review(r.Context(), rs, &sar.Spec)
	if err != nil {
		s.logger.Error("the authorization webhook could not decide", "request_id", RequestID(r.Context()), "route", rs.route.From.String(), "error", err)
		authenticate.RefuseStoreUnavailable(w, r)
		return
	}
	if d != nil {
		decisions.inc(*d)
	}
	if status.Denied {
		s.logger.Info("review denied", "request_id", RequestID(r.Context()), "route", rs.route.From.String(),
			"user", sar.Spec.User, "reason", status.Reason)
	}
	out := authorizationv1.SubjectAccessReview{Status: status}
	out.APIVersion, out.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// noOpinion is a review's answer that leaves the decision to the next
// authorizer (RBAC).
var noOpinion = authorizationv1.SubjectAccessReviewStatus{}

// denied is a review's answer that no later authorizer can overturn.
func denied(msg string) authorizationv1.SubjectAccessReviewStatus {
	return authorizationv1.SubjectAccessReviewStatus{Denied: true, Reason: "portcullis: " + msg}
}

// review decides one review for route rs: the person is the live session
// the review's extra names, and must be who the review says, with no group
// the session no longer gives; then the route's policy decides on the
// review's attributes. A policy denial is denied, with the rule; what the
// policy allows has no opinion here, so RBAC decides it. d is the policy's
// decision, when it was asked; err is only a session store that cannot
// say.
func (s *Server) review(ctx context.Context, rs *routeState, spec *authorizationv1.SubjectAccessReviewSpec) (_ authorizationv1.SubjectAccessReviewStatus, d *policy.Decision, _ error) {
	refs := spec.Extra[direct.ExtraSession]
	switch {
	case len(refs) == 0:
		// Not a person signed in with Portcullis (the authorization
		// configuration sends none): not ours to decide.
		return noOpinion, nil, nil
	case len(refs) > 1:
		return denied("the user names more than one Portcullis session"), nil, nil
	}
	sess, err := s.auth.ReviewedSession(ctx, refs[0])
	switch {
	case errors.Is(err, authenticate.ErrStoreUnavailable):
		return noOpinion, nil, err
	case errors.Is(err, authenticate.ErrSessionEnded):
		return denied("your session ended (signed out, expired or revoked by an administrator): run portcullis-cli k8s flush-credentials " +
			rs.route.From.String() + " and sign in again"), nil, nil
	case err != nil:
		return denied(err.Error()), nil, nil
	}
	id := authenticate.SessionIdentity(sess)
	user, groups, err := rs.mapping.Map(id)
	if err != nil {
		return denied("your identity has no Kubernetes user name on this route: " + err.Error()), nil, nil
	}
	// The token the apiserver authenticated was issued for this session;
	// a review of someone else with it (an impersonation that copied the
	// extra) is not the person's.
	if spec.User != user {
		return denied(fmt.Sprintf("the session is %s's, not %s's", user, spec.User)), nil, nil
	}
	for _, g := range spec.Groups {
		if g != systemAuthenticated && !slices.Contains(groups, g) {
			// The token's groups are the provider's at issue time; the
			// session's are the provider's now.
			return denied(fmt.Sprintf("you are no longer in the group %q at the identity provider: run portcullis-cli k8s flush-credentials %s for a token with your groups of now",
				g, rs.route.From.String())), nil, nil
		}
	}
	method, path, attrs := reviewedRequest(spec)
	req := policy.Request{Method: method, Path: path, Time: time.Now(), Kubernetes: attrs}
	setPerson(&req, id)
	dec := rs.policy.Evaluate(&req)
	if !dec.Allow {
		return denied(dec.Message()), &dec, nil
	}
	return noOpinion, &dec, nil
}

// reviewedRequest is the request a review asks about, as the policy sees a
// proxied one: the Kubernetes attributes as they are, and the HTTP method
// and path that ask for them. The verbs that are no HTTP request
// (impersonate, bind, escalate, use, approve, …) have no method.
func reviewedRequest(spec *authorizationv1.SubjectAccessReviewSpec) (method, path string, k policy.Kubernetes) {
	if na := spec.NonResourceAttributes; na != nil {
		return strings.ToUpper(na.Verb), na.Path, policy.Kubernetes{Verb: na.Verb}
	}
	ra := spec.ResourceAttributes
	if ra == nil {
		return "", "", policy.Kubernetes{}
	}
	k = policy.Kubernetes{Verb: ra.Verb, APIGroup: ra.Group, Resource: ra.Resource, Subresource: ra.Subresource,
		Namespace: ra.Namespace, Name: ra.Name}
	method = verbMethods[ra.Verb]
	p := "/api/" + ra.Version
	if ra.Group != "" {
		p = "/apis/" + ra.Group + "/" + ra.Version
	}
	if ra.Namespace != "" && ra.Resource != "namespaces" {
		p += "/namespaces/" + ra.Namespace
	}
	p += "/" + ra.Resource
	if ra.Name != "" {
		p += "/" + ra.Name
	}
	if ra.Subresource != "" {
		p += "/" + ra.Subresource
	}
	return method, p, k
}

// verbMethods are the HTTP methods of the verbs that are requests
// (kube-apiserver's request info, read backwards).
var verbMethods = map[string]string{
	"get": http.MethodGet, "list": http.MethodGet, "watch": http.MethodGet, "proxy": http.MethodGet,
	"create": http.MethodPost, "update": http.MethodPut, "patch": http.MethodPatch,
	"delete": http.MethodDelete, "deletecollection": http.MethodDelete,
}

// DirectConfig computes the files kube-apiserver needs to use the
// Kubernetes route routeURL of opts in direct mode (routeURL may be empty
// when there is one Kubernetes route). caPEM is the certificate authority
// the apiserver trusts for Portcullis's certificate (nil: its system
// roots); kubeconfigPath is where the apiserver will read the webhook's
// kubeconfig. opts must be loaded and checked; secrets it would generate
// at start are refused, since the files must outlive a restart.
func DirectConfig(opts *config.Options, routeURL string, caPEM []byte, kubeconfigPath string) (direct.Files, *config.Route, error) {
	route, err := directRoute(opts, routeURL)
	if err != nil {
		return nil, nil, err
	}
	switch au := opts.AuthenticateServiceURL; {
	case au == nil:
		return nil, nil, errors.New("direct mode needs AUTHENTICATE_SERVICE_URL: it is the tokens' issuer, which kube-apiserver reads the keys from")
	case au.Scheme != "https":
		return nil, nil, fmt.Errorf("direct mode needs an https AUTHENTICATE_SERVICE_URL, not %q: kube-apiserver reads the token keys over https only", au)
	case len(opts.SharedSecret) == 0:
		return nil, nil, errors.New("direct mode needs SHARED_SECRET set: the webhook's token is derived from it, and a secret generated at start would change at every restart")
	case opts.InsecureServer:
		return nil, nil, errors.New("direct mode needs Portcullis to serve TLS itself (no INSECURE_SERVER): kube-apiserver sends the webhook its token over https only")
	}
	pol, err := policy.Compile(route)
	if err != nil {
		return nil, nil, err
	}
	if names := pol.ConnectionCriteria(); len(names) > 0 {
		return nil, nil, fmt.Errorf("route %s: its policy uses %s, which read the client's connection; kube-apiserver does not pass the client's address or certificate to the webhook, "+
			"so direct mode cannot honour them: use the proxy for this route, or write the policy without them", route.From, strings.Join(names, ", "))
	}
	webhook := *route.From
	webhook.Path, webhook.RawQuery, webhook.Fragment = pathReview, "", ""
	files, err := direct.Generate(direct.Options{
		Issuer:                tokenIssuer(opts),
		Audience:              route.From.Host,
		CAPEM:                 caPEM,
		WebhookURL:            webhook.String(),
		WebhookToken:          webhookToken(opts.SharedSecret, route),
		WebhookKubeconfigPath: kubeconfigPath,
	})
	return files, route, err
}

// directRoute finds the Kubernetes route routeURL names.
func directRoute(opts *config.Options, routeURL string) (*config.Route, error) {
	var kube []*config.Route
	for i := range opts.Routes {
		if opts.Routes[i].IsKubernetes() {
			kube = append(kube, &opts.Routes[i])
		}
	}
	if routeURL == "" {
		if len(kube) != 1 {
			return nil, fmt.Errorf("there are %d Kubernetes routes: name one with --route URL (its from)", len(kube))
		}
		return kube[0], nil
	}
	u, err := url.Parse(routeURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--route %q is not a URL: give a route's from, such as https://k8s.example.com", routeURL)
	}
	host := config.CanonicalHost(u.Host)
	for i := range opts.Routes {
		r := &opts.Routes[i]
		if r.From != nil && r.From.Scheme == u.Scheme && slices.Contains(config.Hosts(r.From), host) {
			if !r.IsKubernetes() {
				return nil, fmt.Errorf("route %s is not a Kubernetes route: direct mode is for the Kubernetes API", r.From)
			}
			return r, nil
		}
	}
	return nil, fmt.Errorf("no route is from %s", routeURL)
}
