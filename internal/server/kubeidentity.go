package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/idp"
	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// kubernetesIssuer is the identity provider's issuer URL, of which
// kube-apiserver's default user name prefix is made: the built-in
// provider's, on the authenticate host; the configured or preset one of
// any other; "" without sign-in.
func kubernetesIssuer(o *config.Options) string {
	if o.IDPProvider == "builtin" {
		if o.AuthenticateServiceURL == nil {
			return ""
		}
		u := builtinIssuer(o.AuthenticateServiceURL)
		return u.String()
	}
	return idp.Issuer(o.IDPProvider, o.IDPProviderURL)
}

// kubernetesMapping is the identity mapping of Kubernetes route r: who
// Kubernetes sees (nil: the email and the provider's groups).
func kubernetesMapping(o *config.Options, r *config.Route) (*identity.KubernetesMapping, error) {
	return identity.NewKubernetesMapping(identity.KubernetesOptions{
		UsernameClaim:  r.KubernetesUsernameClaim,
		UsernamePrefix: r.KubernetesUsernamePrefix,
		GroupsPrefix:   r.KubernetesGroupsPrefix,
		GroupsFilter:   r.KubernetesGroupsFilter,
		Issuer:         kubernetesIssuer(o),
	})
}

// checkKubernetesIdentity builds each Kubernetes route's identity mapping
// as the server will. config has checked each setting; what is left is a
// user name claim other than email, whose default prefix is the
// provider's issuer URL, with no provider (a provider that needs a URL and
// has none is checkIdentityProvider's to report).
func checkKubernetesIdentity(o *config.Options, r *config.Reporter) {
	if o.IDPProvider != "" {
		return
	}
	for i := range o.Routes {
		rt := &o.Routes[i]
		if !rt.IsKubernetes() || r.RouteFailed(i, "kubernetes_username_claim") || r.RouteFailed(i, "kubernetes_username_prefix") ||
			r.RouteFailed(i, "kubernetes_groups_filter") {
			continue
		}
		if _, err := kubernetesMapping(o, rt); err != nil {
			r.Route(i, o, "kubernetes_username_claim", "%v", err)
		}
	}
}

// mapKubernetesIdentity puts in the request's context, for the proxy,
// who Kubernetes sees: the person as m maps them (Identity.WithKubernetes).
// It runs after the policy, which decides on the provider's names and
// groups, and refuses with 403 a person m gives no user name, saying why:
// never forwarded without one. The proxy then checks the names as mapped
// (no system: names unless the route allows them).
func (s *Server) mapKubernetesIdentity(m *identity.KubernetesMapping, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := identity.FromContext(r.Context())
		if id == nil {
			next.ServeHTTP(w, r) // the proxy refuses a request without a person
			return
		}
		user, groups, err := m.Map(id)
		if err != nil {
			s.logger.Warn("refusing to impersonate", "request_id", RequestID(r.Context()), "email", id.Email, "error", err)
			msg := err.Error()
			if errors.Is(err, identity.ErrNoKubernetesUser) {
				msg = strings.TrimPrefix(msg, identity.ErrNoKubernetesUser.Error()+": ")
			}
			respond.Error(w, r, respond.Problem{Code: http.StatusForbidden,
				Message: "portcullis: your identity cannot be passed to Kubernetes, which would see no user name: " + msg +
					"; an administrator can change kubernetes_username_claim"})
			return
		}
		next.ServeHTTP(w, r.WithContext(identity.NewContext(r.Context(), id.WithKubernetes(user, groups))))
	})
}
