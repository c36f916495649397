package server

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// builtinIDPPath is where the built-in provider lives on the authenticate
// host (IDP_PROVIDER=builtin): its issuer is AUTHENTICATE_SERVICE_URL plus
// this path.
const builtinIDPPath = "/.portcullis/idp"

// builtinIssuer is the built-in provider's issuer URL: the authenticate
// service URL authURL with builtinIDPPath.
func builtinIssuer(authURL *url.URL) url.URL {
	issuer := *authURL
	issuer.Path = strings.TrimSuffix(issuer.Path, "/") + builtinIDPPath
	return issuer
}

// newBuiltinIDP starts the built-in OpenID provider for IDP_PROVIDER=builtin
// and fills in the provider settings in opts (issuer, client) that point
// sign-in at it, as if the operator had set them. It returns
// the provider's handler, for the authenticate host, and an HTTP client
// that reaches that handler in process: the server need not trust its own
// certificate, nor be listening yet, to talk to its own provider.
func (s *Server) newBuiltinIDP(opts *config.Options) (http.Handler, *http.Client, error) {
	// The users file parsed when the configuration was checked
	// (checkIdentityProvider); it is read again here, as it may have
	// changed since.
	users, err := builtin.LoadUsers(opts.IDPUsersFile)
	if err != nil {
		return nil, nil, err
	}
	issuer := builtinIssuer(opts.AuthenticateServiceURL)
	callback := *opts.AuthenticateServiceURL
	callback.Path = strings.TrimSuffix(callback.Path, "/") + "/oauth2/callback"
	if opts.IDPClientID == "" {
		opts.IDPClientID = "portcullis"
	}
	if opts.IDPClientSecret == "" {
		// Both ends are this process; derive the secret rather than make
		// the operator invent one.
		sum := sha256.Sum256(append([]byte("portcullis builtin idp client\x00"), opts.SharedSecret...))
		opts.IDPClientSecret = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	p, err := builtin.New(builtin.Config{
		Issuer: issuer.String(),
		Users:  users,
		// Followed: removing a person from the file revokes them, and
		// Portcullis ends their sessions at the next refresh.
		UsersFile: opts.IDPUsersFile,
		Clients: []builtin.Client{{
			ID: opts.IDPClientID, Secret: opts.IDPClientSecret,
			RedirectURIs: []string{callback.String()},
		}},
		Logger: s.logger,
		// IDP_BUILTIN_TOKEN_TTL: how often sessions are refreshed, and so
		// how soon an edit of the users file reaches them.
		AccessTokenTTL: opts.IDPBuiltinTokenTTL,
		IDTokenTTL:     opts.IDPBuiltinTokenTTL,
		CryptoKey:      sha256.Sum256(append([]byte("portcullis builtin idp crypto\x00"), opts.SharedSecret...)),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("starting the built-in identity provider: %w", err)
	}
	opts.IDPProviderURL = issuer.String()
	client := &http.Client{Transport: inProcess{p.Handler()}}
	return p.Handler(), client, nil
}

// inProcess is an http.RoundTripper that serves requests with a handler
// in this process. The built-in provider's answers (discovery, JWKS, token,
// userinfo) are small and complete, so recording them whole is fine.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	in := r.Clone(r.Context())
	in.RequestURI = (&url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery}).RequestURI()
	in.Host = r.URL.Host
	if in.Body == nil {
		in.Body = http.NoBody
	}
	t.h.ServeHTTP(rec, in)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// authenticateHost is the handler of the authenticate host: sign-in, and
// the built-in provider builtinIDP when there is one (nil otherwise).
//
// The authenticate URL is the tokens' issuer, so its host also serves the
// OpenID discovery document and the keys, for a kube-apiserver that
// validates Portcullis tokens itself (direct mode, direct.go).
func (s *Server) authenticateHost(builtinIDP http.Handler) http.Handler {
	mux := http.NewServeMux()
	if builtinIDP != nil {
		mux.Handle(builtinIDPPath+"/", builtinIDP)
	}
	mux.Handle(session.OpenIDConfigurationPath, s.keys.OpenIDConfigurationHandler())
	mux.Handle(session.JWKSPath, s.keys.JWKSHandler())
	mux.Handle("/", s.auth.AuthenticateHandler())
	return s.boundSignInBody(mux)
}
