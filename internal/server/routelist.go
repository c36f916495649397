package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/portcullis-proxy/portcullis/internal/authenticate"
	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/kube"
	"github.com/portcullis-proxy/portcullis/internal/policy"
	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// pathRoutes lists, on every route host, the Kubernetes routes the
// signed-in person may use, so that `portcullis-cli k8s setup --all`
// can add them all to the kubeconfig with one sign-in.
const pathRoutes = "/.pomerium/api/v1/routes"

// discovery is the request a route must allow for a person to use it:
// kubectl's first call, the API discovery (GET /api). A policy that
// denies it leaves kubectl unable to do anything on the route, whatever
// else it allows; one that allows it lets kubectl start, and decides
// each later request on its own.
var discovery = func() policy.Kubernetes {
	info, err := kube.ParseRequestInfo(http.MethodGet, "/api", "")
	if err != nil {
		panic("parsing the discovery request: " + err.Error())
	}
	return policy.Kubernetes{Verb: info.Verb, APIGroup: info.APIGroup, Resource: info.Resource,
		Subresource: info.Subresource, Namespace: info.Namespace, Name: info.Name}
}()

// routeList is pathRoutes's answer.
type routeList struct {
	Routes []listedRoute `json:"routes"`
}

type listedRoute struct {
	// URL is the route's address, as `portcullis-cli k8s setup` takes it.
	URL string `json:"url"`
}

// listRoutes answers pathRoutes on the route host audience of g: the
// person its token (or, for a browser, its cookie) names, and for each
// Kubernetes route of g whether its policy allows them the discovery
// request from where they are now. Only what the person may use is
// listed: the list reveals no route they could not reach anyway.
func (s *Server) listRoutes(g *generation, w http.ResponseWriter, r *http.Request, audience string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		respond.Error(w, r, respond.Problem{Code: http.StatusMethodNotAllowed, Message: "portcullis: list the routes with GET " + pathRoutes})
		return
	}
	id, _, err := s.auth.Identify(r, audience, authenticate.Token|authenticate.Cookie)
	switch {
	case errors.Is(err, authenticate.ErrStoreUnavailable):
		authenticate.RefuseStoreUnavailable(w, r)
		return
	case err != nil:
		respond.Error(w, r, respond.Unauthenticated(err.Error()))
		return
	}
	req := policyRequest(r, id)
	req.Method, req.Path, req.CORSPreflight, req.Kubernetes = http.MethodGet, "/api", false, discovery
	list := routeList{Routes: []listedRoute{}}
	for i := range g.opts.Routes {
		route := &g.opts.Routes[i]
		hosts := config.Hosts(route.From)
		if !route.IsKubernetes() || len(hosts) == 0 || g.routes[hosts[0]] == nil {
			continue
		}
		if g.routes[hosts[0]].policy.Evaluate(&req).Allow {
			list.Routes = append(list.Routes, listedRoute{URL: route.From.String()})
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	json.NewEncoder(w).Encode(list)
}
