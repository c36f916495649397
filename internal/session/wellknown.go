package session

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// Paths of the discovery endpoints, the same as Pomerium's, served on every
// route host.
const (
	WellKnownPath = "/.well-known/pomerium"
	JWKSPath      = "/.well-known/pomerium/jwks.json"
	// OpenIDConfigurationPath is OpenID Connect Discovery 1.0's document,
	// served on the authenticate host, whose URL is the tokens' issuer:
	// what a kube-apiserver that validates Portcullis tokens itself
	// (direct mode) reads to find the keys.
	OpenIDConfigurationPath = "/.well-known/openid-configuration"
)

// discoveryMaxAge is how long clients and shared caches may keep the
// discovery documents. The key only changes with a restart under new
// configuration; five minutes bounds how long a verifier keeps an old key
// after that without making every verifier refetch on every token.
const discoveryMaxAge = 5 * time.Minute

// JWKSHandler serves JWKS at JWKSPath, with Cache-Control and an ETag so
// that a verifier's If-None-Match gets 304 Not Modified.
func (k *Keys) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveDiscovery(w, r, k.jwks, k.jwksETag)
	})
}

// WellKnownHandler serves the discovery document at WellKnownPath, as
// Pomerium does:
//
//	{
//	  "issuer": "<Keys.Issuer>",
//	  "jwks_uri": "https://<host>/.well-known/pomerium/jwks.json",
//	  "authentication_callback_endpoint": "<authenticateURL>/oauth2/callback",
//	  "frontchannel_logout_uri": "https://<host>/.pomerium/sign_out"
//	}
//
// <host> is the request's Host; the scheme is always https, as behind a
// TLS-terminating load balancer the request itself may be plain HTTP.
// Unlike Pomerium, which reports the route's own URL, "issuer" is the
// value tokens really carry in "iss". A nil authenticateURL stands for
// the request's own host.
func (k *Keys) WellKnownHandler(authenticateURL *url.URL) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !validHost(r.Host) {
			respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Message: "portcullis: the Host header is not a host name"})
			return
		}
		here := &url.URL{Scheme: "https", Host: r.Host}
		auth := authenticateURL
		if auth == nil {
			auth = here
		}
		doc := struct {
			Issuer                 string `json:"issuer"`
			JWKSURI                string `json:"jwks_uri"`                         // RFC 7517
			AuthenticationCallback string `json:"authentication_callback_endpoint"` // RFC 6749
			FrontchannelLogoutURI  string `json:"frontchannel_logout_uri"`          // OpenID Connect Front-Channel Logout 1.0
		}{
			Issuer:                 k.issuer,
			JWKSURI:                here.ResolveReference(&url.URL{Path: JWKSPath}).String(),
			AuthenticationCallback: auth.ResolveReference(&url.URL{Path: "/oauth2/callback"}).String(),
			FrontchannelLogoutURI:  here.ResolveReference(&url.URL{Path: "/.pomerium/sign_out"}).String(),
		}
		body, err := json.Marshal(doc)
		if err != nil { // a struct of strings always marshals
			respond.Error(w, r, respond.Problem{Code: http.StatusInternalServerError, Message: "portcullis: encoding the discovery document failed"})
			return
		}
		// The document depends on Host, so its ETag is computed per
		// request; hashing a few hundred bytes is cheap.
		serveDiscovery(w, r, body, etag(body))
	})
}

// OpenIDConfigurationHandler serves OpenIDConfigurationPath on the
// authenticate host: the issuer, as tokens carry it in "iss" (a verifier
// such as kube-apiserver's JWT authenticator requires the two to be the
// same string), and the JWKS on the same host. The OpenID Provider
// Metadata the discovery specification requires (section 3) are all
// present, though Portcullis is no provider for relying parties: its
// tokens are for its own routes and, in direct mode, their clusters.
func (k *Keys) OpenIDConfigurationHandler() http.Handler {
	base := strings.TrimSuffix(k.issuer, "/")
	doc := struct {
		Issuer                           string   `json:"issuer"`
		JWKSURI                          string   `json:"jwks_uri"`
		AuthorizationEndpoint            string   `json:"authorization_endpoint"`
		ResponseTypesSupported           []string `json:"response_types_supported"`
		SubjectTypesSupported            []string `json:"subject_types_supported"`
		IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
		ClaimsSupported                  []string `json:"claims_supported"`
	}{
		Issuer:                           k.issuer,
		JWKSURI:                          base + JWKSPath,
		AuthorizationEndpoint:            base + "/.pomerium/sign_in",
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: []string{string(k.alg)},
		ClaimsSupported: []string{"iss", "sub", "aud", "exp", "iat", "jti", "email", "name", "groups", "sid",
			"kubernetes_user", "kubernetes_groups", "kubernetes_session"},
	}
	body, err := json.Marshal(doc)
	if err != nil {
		panic("encoding the OpenID configuration: " + err.Error()) // strings only: cannot fail
	}
	tag := etag(body)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveDiscovery(w, r, body, tag)
	})
}

// serveDiscovery writes a public, cacheable JSON document. http.ServeContent
// does the conditional part (If-None-Match → 304, RFC 9110, section 13.1.2)
// and HEAD.
func serveDiscovery(w http.ResponseWriter, r *http.Request, body []byte, tag string) {
	h := w.Header()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, HEAD")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		respond.Error(w, r, respond.Problem{Code: http.StatusMethodNotAllowed, Message: "portcullis: " + r.Method + " is not allowed here; use GET, HEAD or OPTIONS"})
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "max-age="+strconv.Itoa(int(discoveryMaxAge/time.Second))+", public")
	h.Set("ETag", tag)
	// Public keys and URLs: any origin may read them, as with Pomerium.
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// etag returns a strong entity tag for body.
func etag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
}

// validHost reports whether a Host header is a plain host[:port] we may
// put into a URL: no userinfo, path, query or anything else a client could
// smuggle into the document.
func validHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._:[]", c) >= 0) {
			return false
		}
	}
	return true
}
