package server

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/kube"
	"github.com/portcullis-proxy/portcullis/internal/proxy"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// routeHandler is the request path of one route, read top to bottom:
//
//  1. the token endpoints every route host serves (/.well-known/pomerium);
//  2. authenticate: a Portcullis token for this route → an Identity;
//  3. authorize: the route's policy (not enforced yet: see README);
//  4. proxy: credentials out, service-account token and Impersonate-* in,
//     forward, stream.
func (s *Server) routeHandler(route *config.Route) (http.Handler, error) {
	p, err := proxy.New(route, proxy.Options{CookieName: s.opts.CookieName, Logger: s.logger})
	if err != nil {
		return nil, err
	}
	s.proxies = append(s.proxies, p)
	next := http.Handler(p)
	if !route.AllowPublicUnauthenticatedAccess {
		next = s.authenticate(route, next)
	}
	wellKnown := s.keys.WellKnownHandler(s.opts.AuthenticateServiceURL)
	jwks := s.keys.JWKSHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/pomerium":
			wellKnown.ServeHTTP(w, r)
		case "/.well-known/pomerium/jwks.json":
			jwks.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	}), nil
}

// authenticate resolves the request's Portcullis token into an Identity
// for the rest of the path, or answers 401. The token must have been
// issued for this route: its audience is the route's host, so a token for
// one cluster does not open another.
func (s *Server) authenticate(route *config.Route, next http.Handler) http.Handler {
	audience := route.From.Host
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok, err := session.TokenFromRequest(r.Header)
		switch {
		case err != nil:
			s.logger.Info("refused request credentials", "request_id", RequestID(r.Context()), "error", err)
			kube.Unauthenticated(w, err.Error())
			return
		case !ok:
			kube.Unauthenticated(w, "the request has no Portcullis token")
			return
		}
		claims, err := s.keys.Verify(token, audience, time.Now())
		if err != nil {
			s.logger.Info("refused token", "request_id", RequestID(r.Context()), "error", err)
			if errors.Is(err, session.ErrExpired) {
				kube.SessionExpired(w)
			} else {
				kube.Unauthenticated(w, err.Error())
			}
			return
		}
		id := &identity.Identity{
			User:      claims.Subject,
			Email:     claims.Email,
			Name:      claims.Name,
			Groups:    claims.Groups,
			SessionID: claims.SessionID,
			Expiry:    claims.Expiry,
		}
		next.ServeHTTP(w, r.WithContext(identity.NewContext(r.Context(), id)))
	})
}

// tokenIssuer is the "iss" of the tokens this server issues and accepts:
// the authenticate service URL, as Pomerium uses it.
func tokenIssuer(opts *config.Options) string {
	if opts.AuthenticateServiceURL != nil {
		return opts.AuthenticateServiceURL.String()
	}
	// Without a sign-in service no token can be issued here; a fixed
	// name still lets replicas sharing SHARED_SECRET verify each other's.
	return "portcullis"
}

func newKeys(opts *config.Options) (*session.Keys, error) {
	keys, err := session.NewKeys(opts.SigningKey, opts.SharedSecret, tokenIssuer(opts))
	if err != nil {
		return nil, fmt.Errorf("creating token keys (SIGNING_KEY or SHARED_SECRET): %w", err)
	}
	return keys, nil
}
