package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// stack is a real kube-apiserver with a kwok node, and the real portcullis
// binary in front of it configured as the guide configures it, with its
// service-account token in a file (so tests can rotate it).
type stack struct {
	cluster    *testenv.Cluster
	kwok       *testenv.KwokNode
	fake       *testenv.FakeNode
	ca         *testenv.CA // signed Portcullis's serving certificate
	certPEM    []byte      // Portcullis's serving certificate
	keyPEM     []byte
	keys       *session.Keys
	routeURL   string // https://127.0.0.1:PORT
	audience   string // the route's host, the audience of its tokens
	authURL    string // the sign-in service, https://localhost:PORT
	dir        string
	tokenFile  string
	env        []string
	bin        string
	portcullis *testenv.Process
	// A reloadable stack's (stackOptions.reloadable): the config volume,
	// the certificate files, the metrics listener.
	config            *testenv.ProjectedVolume
	certFile, keyFile string
	metricsURL        string
}

// startStack brings everything up for one test (and its subtests); a kwok
// node too if the test runs pods.
func startStack(t *testing.T, ctx context.Context, withKwok bool) *stack {
	t.Helper()
	return startStackWith(t, ctx, stackOptions{kwok: withKwok})
}

// startStackWithPolicy is startStack with the route's `policy:` list
// (indented to sit under the route key).
func startStackWithPolicy(t *testing.T, ctx context.Context, withKwok bool, policyYAML string) *stack {
	t.Helper()
	return startStackWith(t, ctx, stackOptions{kwok: withKwok, policy: policyYAML})
}

// stackOptions choose what startStackWith starts.
type stackOptions struct {
	kwok     bool // a kwok node
	fakeNode bool // a fake node (testenv.FakeNode)
	// policy is the route's `policy:` list (indented to sit under the
	// route key); "" lets in anyone signed in.
	policy string
	// apiserverArgs are added to kube-apiserver's flags.
	apiserverArgs []string
	// builtinUsers, if set, is the users file of the built-in provider
	// (IDP_PROVIDER=builtin), so that people can sign in with a browser.
	builtinUsers string
	// reloadable puts the routes in a config file (--config) in a
	// ConfigMap-style volume (stack.config), the serving certificate in
	// files (stack.certFile, stack.keyFile), and serves metrics and the
	// admin API (stack.metricsURL, ADMIN_TOKEN adminToken), so that a
	// test can change them under the running server.
	reloadable bool
	// env is added to Portcullis's environment.
	env []string
}

// adminToken is the ADMIN_TOKEN of a reloadable stack.
const adminToken = "e2e-admin-token-0123456789abcdefghijklmnop"

// routeYAML is the route of a stack, under a config file's `routes:` or
// base64 in POLICY, with policyYAML as its `policy:` list.
func (s *stack) routeYAML(policyYAML string) string {
	return fmt.Sprintf(`- from: %s
  to: %s
  tls_custom_ca: %s
  policy:
%s  kubernetes_service_account_token_file: %s
`, s.routeURL, s.cluster.URL, b64(s.cluster.CA.CertPEM), policyYAML, s.tokenFile)
}

// writeConfig replaces the config file of a reloadable stack, as the
// kubelet updates a ConfigMap volume: a new version of every file, then
// one rename of the ..data link. routes are the file's `routes:` list.
func (s *stack) writeConfig(t *testing.T, routes string) {
	t.Helper()
	body := "routes:\n" + indent(routes, "  ")
	if err := s.config.Update(map[string][]byte{"portcullis.yaml": []byte(body)}); err != nil {
		t.Fatal(err)
	}
}

// indent puts prefix before every line of text.
func indent(text, prefix string) string {
	lines := strings.SplitAfter(text, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

// startStackWith brings everything up for one test (and its subtests).
func startStackWith(t *testing.T, ctx context.Context, o stackOptions) *stack {
	t.Helper()
	if o.policy == "" {
		o.policy = "    - allow:\n        or:\n          - authenticated_user: true\n"
	}
	s := &stack{cluster: testenv.NewCluster(t, o.apiserverArgs...), dir: t.TempDir()}
	var err error
	if o.kwok {
		if s.kwok, err = s.cluster.StartKwok(ctx); err != nil {
			t.Fatalf("testenv: starting kwok: %v", err)
		}
	}
	if o.fakeNode {
		if s.fake, err = s.cluster.StartFakeNode(ctx); err != nil {
			t.Fatalf("testenv: starting a fake node: %v", err)
		}
	}
	saToken := installPortcullisRBAC(t, ctx, s.cluster)
	s.tokenFile = filepath.Join(s.dir, "sa-token")
	if err := os.WriteFile(s.tokenFile, []byte(saToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if s.ca, err = testenv.NewCA("portcullis-e2e"); err != nil {
		t.Fatal(err)
	}
	if s.certPEM, s.keyPEM, err = s.ca.Issue("portcullis", "127.0.0.1", "localhost"); err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s.routeURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	s.audience = fmt.Sprintf("127.0.0.1:%d", port)
	s.authURL = fmt.Sprintf("https://localhost:%d", port)
	secret := random(32)
	if s.keys, err = session.NewKeys(nil, secret, s.authURL); err != nil {
		t.Fatal(err)
	}
	s.env = []string{
		"ADDRESS=127.0.0.1:" + strconv.Itoa(port),
		"AUTHENTICATE_SERVICE_URL=" + s.authURL,
		"COOKIE_SECRET=" + b64(random(32)),
		"SHARED_SECRET=" + b64(secret),
		"LOG_LEVEL=debug",
	}
	var args []string
	if o.reloadable {
		if s.config, err = testenv.NewProjectedVolume(filepath.Join(s.dir, "config"), nil); err != nil {
			t.Fatal(err)
		}
		s.writeConfig(t, s.routeYAML(o.policy))
		s.certFile, s.keyFile = filepath.Join(s.dir, "tls.crt"), filepath.Join(s.dir, "tls.key")
		writeFile(t, s.certFile, string(s.certPEM))
		writeFile(t, s.keyFile, string(s.keyPEM))
		mport, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		s.metricsURL = fmt.Sprintf("http://127.0.0.1:%d", mport)
		s.env = append(s.env, "CERTIFICATE_FILE="+s.certFile, "CERTIFICATE_KEY_FILE="+s.keyFile,
			"METRICS_ADDRESS=127.0.0.1:"+strconv.Itoa(mport), "ADMIN_TOKEN="+adminToken)
		args = []string{"--config", filepath.Join(s.config.Dir, "portcullis.yaml")}
	} else {
		s.env = append(s.env, "CERTIFICATE="+b64(s.certPEM), "CERTIFICATE_KEY="+b64(s.keyPEM),
			"POLICY="+b64([]byte(s.routeYAML(o.policy))))
	}
	if o.builtinUsers != "" {
		s.env = append(s.env, "IDP_PROVIDER=builtin", "IDP_USERS_FILE="+o.builtinUsers)
	}
	s.env = append(s.env, o.env...)
	if s.bin, err = testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/cmd/portcullis", s.dir); err != nil {
		t.Fatal(err)
	}
	s.portcullis = testenv.StartServer(t, "portcullis", s.bin, s.dir, args, s.env, s.routeURL+"/.pomerium/healthz", s.ca.ClientTLS())
	return s
}

// installPortcullisRBAC applies deploy/kubernetes's service account, with
// its impersonation role, and the binding that makes signinEmail
// cluster-admin, as the guide has an operator do; and returns a token of
// the service account for an hour, from the TokenRequest API.
func installPortcullisRBAC(t *testing.T, ctx context.Context, c *testenv.Cluster) string {
	t.Helper()
	for _, f := range []string{"../deploy/kubernetes/service-account.yaml", "../deploy/kubernetes/user-binding.yaml"} {
		if _, _, err := c.Kubectl(ctx, nil, "apply", "-f", f); err != nil {
			t.Fatal(err)
		}
	}
	saToken, err := c.CreateToken(ctx, "default", "portcullis", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return saToken
}

// token mints a Portcullis token for the route, the way the sign-in
// service does: same issuer code, same shared secret.
func (s *stack) token(t *testing.T, email string, groups ...string) string {
	t.Helper()
	return s.tokenWith(t, session.Claims{Subject: "sub-" + email, Email: email, Groups: groups, Audience: s.audience, Expiry: time.Now().Add(time.Hour)})
}

func (s *stack) tokenWith(t *testing.T, c session.Claims) string {
	t.Helper()
	tok, err := s.keys.Issue(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// kubeconfig writes a kubeconfig whose user sends `Bearer Pomerium-<jwt>`
// to the route, as the exec-credential plugin makes kubectl do.
func (s *stack) kubeconfig(t *testing.T, jwt string) string {
	t.Helper()
	return writeKubeconfig(t, s.routeURL, s.ca.CertPEM, jwt)
}

// writeKubeconfig writes a kubeconfig for the route at routeURL, whose
// certificate caPEM signed, with a user that sends `Bearer Pomerium-<jwt>`.
func writeKubeconfig(t *testing.T, routeURL string, caPEM []byte, jwt string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["portcullis"] = &clientcmdapi.Cluster{Server: routeURL, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: "Pomerium-" + jwt}
	cfg.Contexts["portcullis"] = &clientcmdapi.Context{Cluster: "portcullis", AuthInfo: "user", Namespace: "default"}
	cfg.CurrentContext = "portcullis"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// as runs kubectl through Portcullis with a kubeconfig and returns stdout,
// stderr and the error.
func (s *stack) as(ctx context.Context, kubeconfig string, stdin string, args ...string) (string, string, error) {
	var in *strings.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	full := append([]string{"--kubeconfig", kubeconfig}, args...)
	if in == nil {
		return s.cluster.Kubectl(ctx, nil, full...)
	}
	return s.cluster.Kubectl(ctx, in, full...)
}

// whoami runs kubectl auth whoami through Portcullis with kubeconfig and
// returns the user and groups kube-apiserver saw.
func (s *stack) whoami(t *testing.T, ctx context.Context, kubeconfig string) (string, []string) {
	t.Helper()
	out, stderr, err := s.as(ctx, kubeconfig, "", "auth", "whoami", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl auth whoami: %v\n%s", err, stderr)
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string   `json:"username"`
				Groups   []string `json:"groups"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &review); err != nil {
		t.Fatalf("whoami output %q: %v", out, err)
	}
	return review.Status.UserInfo.Username, review.Status.UserInfo.Groups
}

// reloads is how many times a reloadable stack has reloaded its
// configuration successfully.
func (s *stack) reloads(t *testing.T) float64 {
	t.Helper()
	return metricValue(t, s.metricsURL+"/metrics", `portcullis_config_reloads_total{result="success"}`)
}

// reloaded waits until the successful reloads number more than before.
func (s *stack) reloaded(t *testing.T, ctx context.Context, before float64) {
	t.Helper()
	waitFor(t, ctx, 20*time.Second, "the configuration is reloaded", func() error {
		if got := s.reloads(t); got <= before {
			return fmt.Errorf("%v successful reloads; log:\n%s", got, s.portcullis.LogTail(10))
		}
		return nil
	})
}
