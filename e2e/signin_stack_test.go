package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// The person the sign-in stack's provider knows.
const (
	signinEmail    = "someuser@example.com"
	signinPassword = "correct horse battery"
	// signinUnverifiedEmail is known too, with the same password, but the
	// provider says email_verified: false.
	signinUnverifiedEmail = "unverified@example.com"
	// signinOutsiderEmail is known too, with the same password; the
	// route's policy does not let them in.
	signinOutsiderEmail = "outsider@example.com"
)

// signinStack is the setup of TestSignIn as a helper: a real
// kube-apiserver, the real portcullis binary configured as the guide
// configures it, and a real OpenID provider (testenv's, zitadel's example
// OP) that knows signinEmail. The route is https://127.0.0.1:PORT and the
// authenticate service https://localhost:PORT, on one listener.
type signinStack struct {
	cluster  *testenv.Cluster
	ca       *testenv.CA // signed Portcullis's serving certificate
	idp      *testenv.OIDCProvider
	routeURL string
	authURL  string
	dir      string
	// secondRouteURL is the second route's, with startSigninStackWith.
	secondRouteURL string
	// bin and env are the portcullis binary and its environment; proc is
	// the running server.
	bin  string
	env  []string
	proc *testenv.Process
}

// signinPolicy is the sign-in stack's route policy, as the guide writes
// it.
var signinPolicy = "    - allow:\n        or:\n          - email:\n              is: " + signinEmail + "\n"

// startSigninStack starts the stack; extraEnv adds or overrides
// Portcullis's environment (e.g. COOKIE_EXPIRE).
func startSigninStack(t *testing.T, ctx context.Context, extraEnv ...string) *signinStack {
	t.Helper()
	return startSigninStackWithPolicy(t, ctx, signinPolicy, extraEnv...)
}

// startSigninStackWithPolicy is startSigninStack with the route's
// `policy:` list (indented to sit under the route key).
func startSigninStackWithPolicy(t *testing.T, ctx context.Context, policyYAML string, extraEnv ...string) *signinStack {
	t.Helper()
	return startSigninStackWith(t, ctx, policyYAML, false, extraEnv...)
}

// startSigninStackWith starts the stack; with secondRoute, Portcullis
// has a second route to the same cluster, at secondRouteURL: another
// port, which a TCP relay (an L4 load balancer) forwards to Portcullis's
// listener.
func startSigninStackWith(t *testing.T, ctx context.Context, policyYAML string, secondRoute bool, extraEnv ...string) *signinStack {
	t.Helper()
	s := &signinStack{cluster: testenv.NewCluster(t), dir: t.TempDir()}
	saToken := installPortcullisRBAC(t, ctx, s.cluster)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s.routeURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	s.authURL = fmt.Sprintf("https://localhost:%d", port)
	s.idp = testenv.NewOIDCProvider(t, []string{s.authURL + "/oauth2/callback"}, []testenv.OIDCUser{
		{Email: signinEmail, Password: signinPassword, FirstName: "Some", LastName: "User"},
		{Email: signinUnverifiedEmail, Password: signinPassword, FirstName: "Not", LastName: "Verified", EmailUnverified: true},
		{Email: signinOutsiderEmail, Password: signinPassword, FirstName: "Out", LastName: "Sider"},
	})
	if s.ca, err = testenv.NewCA("portcullis-e2e"); err != nil {
		t.Fatal(err)
	}
	cert, key, err := s.ca.Issue("portcullis", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	route := func(from string) string {
		return fmt.Sprintf("- from: %s\n  to: %s\n  tls_custom_ca: %s\n  policy:\n%s  kubernetes_service_account_token: %q\n",
			from, s.cluster.URL, b64(s.cluster.CA.CertPEM), policyYAML, saToken)
	}
	policy := route(s.routeURL)
	if secondRoute {
		relay := relayTo(t, "127.0.0.1:"+strconv.Itoa(port))
		s.secondRouteURL = "https://" + relay
		policy += route(s.secondRouteURL)
	}
	env := []string{
		"ADDRESS=127.0.0.1:" + strconv.Itoa(port),
		"AUTHENTICATE_SERVICE_URL=" + s.authURL,
		"CERTIFICATE=" + b64(cert),
		"CERTIFICATE_KEY=" + b64(key),
		"COOKIE_SECRET=" + b64(random(32)),
		"SHARED_SECRET=" + b64(random(32)),
		"IDP_PROVIDER=oidc",
		"IDP_PROVIDER_URL=" + s.idp.Issuer,
		"IDP_CLIENT_ID=" + s.idp.ClientID,
		"IDP_CLIENT_SECRET=" + s.idp.ClientSecret,
		"POLICY=" + b64([]byte(policy)),
		"LOG_LEVEL=debug",
	}
	env = append(env, extraEnv...)
	s.env = env
	if s.bin, err = testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/cmd/portcullis", s.dir); err != nil {
		t.Fatal(err)
	}
	s.proc = testenv.StartServer(t, "portcullis", s.bin, s.dir, nil, env, s.routeURL+"/.pomerium/healthz", s.ca.ClientTLS())
	return s
}

// relayTo listens on a free loopback port and relays every connection to
// target byte for byte, as an L4 load balancer does; it returns the
// address it listens on.
func relayTo(t *testing.T, target string) string {
	t.Helper()
	return serveLoopback(t, func(c net.Conn) {
		u, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer u.Close()
		done := make(chan struct{}, 2)
		go func() { io.Copy(u, c); done <- struct{}{} }()
		go func() { io.Copy(c, u); done <- struct{}{} }()
		<-done
	}).String()
}
