package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// builtinStack is a real kube-apiserver and the real portcullis binary
// with its built-in identity provider (IDP_PROVIDER=builtin), a
// Kubernetes route open to anyone signed in, the route on
// https://127.0.0.1:PORT and sign-in on https://localhost:PORT.
type builtinStack struct {
	cluster  *testenv.Cluster
	ca       *testenv.CA // signed certPEM
	certPEM  []byte      // Portcullis's serving certificate
	routeURL string
	authURL  string
	srv      *testenv.Process
}

// startBuiltinStack starts the stack with the users file at usersFile;
// extraEnv adds to or overrides Portcullis's environment.
func startBuiltinStack(t *testing.T, ctx context.Context, usersFile string, extraEnv ...string) *builtinStack {
	t.Helper()
	s := &builtinStack{cluster: testenv.NewCluster(t)}
	saToken := installPortcullisRBAC(t, ctx, s.cluster)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s.routeURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	s.authURL = fmt.Sprintf("https://localhost:%d", port)
	if s.ca, err = testenv.NewCA("portcullis-e2e"); err != nil {
		t.Fatal(err)
	}
	var key []byte
	if s.certPEM, key, err = s.ca.Issue("portcullis", "127.0.0.1", "localhost"); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf("- from: %s\n  to: %s\n  tls_custom_ca: %s\n  allow_any_authenticated_user: true\n  kubernetes_service_account_token: %q\n",
		s.routeURL, s.cluster.URL, b64(s.cluster.CA.CertPEM), saToken)
	env := append([]string{
		"ADDRESS=127.0.0.1:" + strconv.Itoa(port),
		"AUTHENTICATE_SERVICE_URL=" + s.authURL,
		"CERTIFICATE=" + b64(s.certPEM),
		"CERTIFICATE_KEY=" + b64(key),
		"COOKIE_SECRET=" + b64(random(32)),
		"SHARED_SECRET=" + b64(random(32)),
		"IDP_PROVIDER=builtin",
		"IDP_USERS_FILE=" + usersFile,
		"POLICY=" + b64([]byte(policy)),
	}, extraEnv...)
	dir := t.TempDir()
	bin, err := testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/cmd/portcullis", dir)
	if err != nil {
		t.Fatal(err)
	}
	s.srv = testenv.StartServer(t, "portcullis", bin, dir, nil, env, s.routeURL+"/.pomerium/healthz", s.ca.ClientTLS())
	return s
}

// builtinUsersFile writes a users file for the built-in provider with one
// person, in groups, whose password is password, and returns its path.
func builtinUsersFile(t *testing.T, email, password string, groups ...string) string {
	t.Helper()
	hash, err := builtin.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, users, fmt.Sprintf("- email: %s\n  groups: [%s]\n  password_hash: %q\n", email, strings.Join(groups, ", "), hash))
	return users
}
