package route

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// maxRoutes bounds how many routes a server's list may name: the list
// becomes kubeconfig entries, and a server is not trusted to fill the
// file.
const maxRoutes = 1000

// Routes asks the route which Kubernetes routes jwt's person may use
// (GET /.pomerium/api/v1/routes), each in canonical form (ParseURL). It
// returns ErrRejected if the server refuses the token.
func (c *Client) Routes(ctx context.Context, jwt string) ([]string, error) {
	doing := fmt.Sprintf("asking %s for the routes you may use", c.URL)
	resp, body, err := c.getJSON(ctx, "/.pomerium/api/v1/routes", jwt, 1<<20, doing)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("%s: %w: %s", doing, ErrRejected, serverMessage(body))
	case http.StatusNotFound:
		return nil, fmt.Errorf("%s: this Portcullis does not list routes (it may be older than this portcullis-cli); set up each route with its own `portcullis-cli k8s setup URL`", doing)
	default:
		return nil, fmt.Errorf("%s: the server answered %s: %s", doing, resp.Status, serverMessage(body))
	}
	urls, err := parseRouteList(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	return urls, nil
}

// parseRouteList reads the server's list of routes: each in canonical
// form (ParseURL), once, and at most maxRoutes.
func parseRouteList(body []byte) ([]string, error) {
	var list struct {
		Routes []struct {
			URL string `json:"url"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("the answer is not a list of routes: %w", err)
	}
	if len(list.Routes) > maxRoutes {
		return nil, fmt.Errorf("the server named %d routes, more than the %d this command sets up", len(list.Routes), maxRoutes)
	}
	var urls []string
	seen := map[string]bool{}
	for _, r := range list.Routes {
		u, err := ParseURL(r.URL)
		if err != nil {
			return nil, fmt.Errorf("the server named a route that is not a web address: %s", printable([]byte(r.URL)))
		}
		if s := u.String(); !seen[s] {
			seen[s] = true
			urls = append(urls, s)
		}
	}
	return urls, nil
}
