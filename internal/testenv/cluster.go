package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// A Cluster is a real etcd and kube-apiserver on loopback.
type Cluster struct {
	// Dir holds every file of the cluster (certificates, keys, logs,
	// kubeconfig); it is removed by Stop.
	Dir string
	// URL is the API server's address, https://127.0.0.1:PORT.
	URL string
	// CA signed the API server's serving certificate.
	CA *CA
	// AdminToken authenticates as a member of system:masters.
	AdminToken string
	// Kubeconfig is the path of an admin kubeconfig for kubectl.
	Kubeconfig string
	// AuditLogPath receives kube-apiserver's audit log (Metadata level): it
	// records the authenticated user and the impersonated user of each request.
	AuditLogPath string

	RESTConfig *rest.Config
	Client     kubernetes.Interface
	// KubectlPath is the pinned kubectl binary, the same version as the server.
	KubectlPath string

	etcd, apiserver *Process
	apiserverArgs   []string   // ClusterOptions.APIServerArgs
	extra           []*Process // started against the cluster (kwok), stopped first
	etcdURL         string
	apiPort         int
	apiserverBin    string
}

// ClusterOptions tunes StartCluster.
type ClusterOptions struct {
	// Progress receives build and start-up messages (may be nil).
	Progress io.Writer
	// APIServerArgs are added to kube-apiserver's flags, after testenv's
	// own: e.g. --disable-http2-serving, to stand for an HTTP/1.1 load
	// balancer in front of the API server.
	APIServerArgs []string
}

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

// StartCluster builds (once) and starts etcd and kube-apiserver. The caller
// must call Stop, which also removes every file.
func StartCluster(ctx context.Context, opts ClusterOptions) (_ *Cluster, err error) {
	bins := map[string]string{}
	for _, name := range []string{Etcd, KubeAPIServer, Kubectl} {
		if bins[name], err = Tool(ctx, name, opts.Progress); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "portcullis-testenv-")
	if err != nil {
		return nil, fmt.Errorf("starting cluster: %w", err)
	}
	c := &Cluster{Dir: dir, KubectlPath: bins[Kubectl], apiserverArgs: opts.APIServerArgs}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.writeFiles(); err != nil {
		return nil, err
	}
	// Ports are picked free, then handed to the components; another process
	// may take one in between, so a start that fails is tried again.
	for attempt := 1; ; attempt++ {
		err = c.start(ctx, bins)
		if err == nil || attempt == 3 || ctx.Err() != nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		c.stopProcesses()
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) writeFiles() error {
	ca, err := NewCA("portcullis-testenv-kubernetes-ca")
	if err != nil {
		return err
	}
	c.CA = ca
	cert, key, err := ca.Issue("kube-apiserver", "127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "10.96.0.1")
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("creating service-account key: %w", err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	tok := make([]byte, 24)
	rand.Read(tok)
	c.AdminToken = hex.EncodeToString(tok)
	c.AuditLogPath = filepath.Join(c.Dir, "audit.log")
	files := map[string][]byte{
		"ca.crt":            ca.CertPEM,
		"apiserver.crt":     cert,
		"apiserver.key":     key,
		"sa.key":            pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		"sa.pub":            pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		"tokens.csv":        []byte(c.AdminToken + `,admin,admin-uid,"system:masters"` + "\n"),
		"audit-policy.yaml": []byte(auditPolicy),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, name), b, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

func (c *Cluster) start(ctx context.Context, bins map[string]string) error {
	ports, err := FreePorts(3)
	if err != nil {
		return err
	}
	clientURL := "http://" + hostPort(ports[0])
	peerURL := "http://" + hostPort(ports[1])
	etcdData := filepath.Join(c.Dir, "etcd")
	os.RemoveAll(etcdData)
	c.etcd, err = StartProcess("etcd", c.Dir, bins[Etcd], []string{
		"--name", "default",
		"--data-dir", etcdData,
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default=" + peerURL,
		"--unsafe-no-fsync", "--log-level", "warn",
	}, nil)
	if err != nil {
		return err
	}
	if err := c.etcd.waitFor(ctx, 30*time.Second, "etcd answers /health", func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, clientURL+"/health", "", `"health":"true"`)
	}); err != nil {
		return err
	}

	c.URL = "https://" + hostPort(ports[2])
	c.etcdURL, c.apiPort, c.apiserverBin = clientURL, ports[2], bins[KubeAPIServer]
	if err := c.StartAPIServer(ctx); err != nil {
		return err
	}
	return c.writeKubeconfig()
}

func (c *Cluster) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.CA.CertPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: c.AdminToken}
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "testenv"
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, c.Kubeconfig); err != nil {
		return fmt.Errorf("writing admin kubeconfig: %w", err)
	}
	c.RESTConfig = &rest.Config{
		Host:            c.URL,
		BearerToken:     c.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CA.CertPEM},
	}
	client, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	c.Client = client
	return nil
}

// KubectlCmd returns a kubectl command for long-running uses (port-forward,
// logs -f, get -w); the caller starts and ends it.
func (c *Cluster) KubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.KubectlPath, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig, "HOME="+c.Dir)
	return cmd
}

// StartAPIServer starts kube-apiserver on the cluster's port (again, after
// StopAPIServer) and waits until it is ready. etcd keeps the data.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	f := func(n string) string { return filepath.Join(c.Dir, n) }
	var err error
	c.apiserver, err = StartProcess("kube-apiserver", c.Dir, c.apiserverBin, append([]string{
		"--etcd-servers", c.etcdURL,
		"--secure-port", strconv.Itoa(c.apiPort),
		"--bind-address", "127.0.0.1",
		// A loopback advertise address is refused unless the endpoint
		// reconciler is off.
		"--advertise-address", "127.0.0.1",
		"--endpoint-reconciler-type", "none",
		"--tls-cert-file", f("apiserver.crt"), "--tls-private-key-file", f("apiserver.key"),
		"--cert-dir", f("certs"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", f("sa.pub"),
		"--service-account-signing-key-file", f("sa.key"),
		"--token-auth-file", f("tokens.csv"),
		"--service-cluster-ip-range", "10.96.0.0/12",
		"--audit-log-path", c.AuditLogPath, "--audit-policy-file", f("audit-policy.yaml"),
		// kwok nodes have only an InternalIP.
		"--kubelet-preferred-address-types", "InternalIP",
		"--allow-privileged",
		"--profiling=false",
	}, c.authorizationArgs()...), nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: c.CA.ClientTLS()}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	if err := c.apiserver.waitFor(ctx, 90*time.Second, "kube-apiserver is ready", func(ctx context.Context) error {
		return httpOK(ctx, client, c.URL+"/readyz", c.AdminToken, "ok")
	}); err != nil {
		return err
	}
	return nil
}

// authorizationArgs are the extra kube-apiserver flags, after RBAC as the
// authorization mode unless they give an --authorization-config, which
// kube-apiserver refuses together with --authorization-mode.
func (c *Cluster) authorizationArgs() []string {
	for _, a := range c.apiserverArgs {
		if a == "--authorization-config" || strings.HasPrefix(a, "--authorization-config=") {
			return c.apiserverArgs
		}
	}
	return append([]string{"--authorization-mode", "RBAC"}, c.apiserverArgs...)
}

// RestartAPIServer stops kube-apiserver and starts it again on the same
// address and etcd with args as its extra flags instead of those it was
// started with: e.g. an authentication and authorization configuration
// written for a server that was already running.
func (c *Cluster) RestartAPIServer(ctx context.Context, args ...string) error {
	c.StopAPIServer()
	c.apiserverArgs = args
	return c.StartAPIServer(ctx)
}

// StopAPIServer stops kube-apiserver, as an outage or an upgrade would;
// StartAPIServer brings it back on the same address.
func (c *Cluster) StopAPIServer() {
	c.apiserver.Stop(10 * time.Second)
	c.apiserver = nil
}

// Kubectl runs the pinned kubectl as cluster admin (unless args choose
// another --kubeconfig or --token) and returns its stdout and stderr.
func (c *Cluster) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	cmd := c.KubectlCmd(ctx, args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), errb.String(), err
}

// CreateToken asks the TokenRequest API for a token of a service account,
// as `kubectl create token` does.
func (c *Cluster) CreateToken(ctx context.Context, namespace, serviceAccount string, ttl time.Duration) (string, error) {
	secs := int64(ttl.Seconds())
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for service account %s/%s: %w", namespace, serviceAccount, err)
	}
	return tr.Status.Token, nil
}

// Stop ends kube-apiserver and etcd and removes the cluster's files.
func (c *Cluster) Stop() {
	c.stopProcesses()
	if c.Dir != "" && os.Getenv("PORTCULLIS_TESTENV_KEEP") == "" {
		os.RemoveAll(c.Dir)
	}
}

func (c *Cluster) stopProcesses() {
	for _, p := range c.extra {
		p.Stop(10 * time.Second)
	}
	c.extra = nil
	c.apiserver.Stop(10 * time.Second)
	c.etcd.Stop(10 * time.Second)
	c.apiserver, c.etcd = nil, nil
}

// APIServerLogTail returns the end of kube-apiserver's log, for failures.
func (c *Cluster) APIServerLogTail(n int) string { return c.apiserver.LogTail(n) }

func httpOK(ctx context.Context, client *http.Client, url, token, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
