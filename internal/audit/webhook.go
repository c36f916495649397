package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxKubeconfigSize bounds the webhook's kubeconfig file; one with a
// cluster, a user and their certificates is a few kilobytes.
const maxKubeconfigSize = 1 << 20

// webhookBatchWait is how long a partial batch waits for a webhook, as
// kube-apiserver's --audit-webhook-batch-max-wait defaults to.
const webhookBatchWait = time.Second

// kubeconfig is the part of a kubeconfig file (clientcmd's v1 Config) the
// webhook sink reads. Other fields are ignored, as kube-apiserver's
// loader ignores what it does not use; the ways of authenticating that this
// sink cannot do are read only to be refused.
type kubeconfig struct {
	CurrentContext string              `yaml:"current-context"`
	Clusters       []kubeconfigCluster `yaml:"clusters"`
	Users          []kubeconfigUser    `yaml:"users"`
	Contexts       []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

// kubeconfigCluster is a named cluster of a kubeconfig: the webhook.
type kubeconfigCluster struct {
	Name    string `yaml:"name"`
	Cluster struct {
		Server                   string `yaml:"server"`
		TLSServerName            string `yaml:"tls-server-name"`
		CertificateAuthority     string `yaml:"certificate-authority"`
		CertificateAuthorityData string `yaml:"certificate-authority-data"`
		InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
	} `yaml:"cluster"`
}

// kubeconfigUser is a named user of a kubeconfig: how Portcullis
// authenticates to the webhook.
type kubeconfigUser struct {
	Name string `yaml:"name"`
	User struct {
		Token                 string    `yaml:"token"`
		TokenFile             string    `yaml:"tokenFile"`
		ClientCertificate     string    `yaml:"client-certificate"`
		ClientCertificateData string    `yaml:"client-certificate-data"`
		ClientKey             string    `yaml:"client-key"`
		ClientKeyData         string    `yaml:"client-key-data"`
		Username              string    `yaml:"username"`
		Exec                  yaml.Node `yaml:"exec"`
		AuthProvider          yaml.Node `yaml:"auth-provider"`
	} `yaml:"user"`
}

// webhookTarget is where and how the webhook sink posts: what a
// kubeconfig file says, resolved.
type webhookTarget struct {
	server    *url.URL
	tls       *tls.Config
	token     string // a bearer token given in the file
	tokenFile string // a file to read the bearer token from at each Write
}

// parseKubeconfig reads the webhook's kubeconfig: its current context's
// cluster and user, or the first cluster and the first user when it has no
// current context. Relative file names in it are relative to dir, as
// client-go reads them. Its errors never include a credential.
func parseKubeconfig(data []byte, dir string) (*webhookTarget, error) {
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("malformed YAML: %w", err)
	}
	if len(kc.Clusters) == 0 {
		return nil, errors.New("no clusters: want the webhook's server under clusters")
	}
	clusterName, userName := kc.Clusters[0].Name, ""
	if len(kc.Users) > 0 {
		userName = kc.Users[0].Name
	}
	if kc.CurrentContext != "" {
		found := false
		for _, c := range kc.Contexts {
			if c.Name == kc.CurrentContext {
				clusterName, userName, found = c.Context.Cluster, c.Context.User, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("current-context %q is not among contexts", kc.CurrentContext)
		}
	}
	idx := slices.IndexFunc(kc.Clusters, func(c kubeconfigCluster) bool { return c.Name == clusterName })
	if idx < 0 {
		return nil, fmt.Errorf("cluster %q is not among clusters", clusterName)
	}
	cl := kc.Clusters[idx].Cluster

	t := &webhookTarget{tls: &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cl.TLSServerName}}
	u, err := url.Parse(cl.Server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("cluster %q: server %q is not an http(s) URL", clusterName, cl.Server)
	}
	t.server = u

	// insecure-skip-tls-verify is the kubeconfig's own name for it; with
	// it the audit log can be read and altered by whoever is on the path.
	t.tls.InsecureSkipVerify = cl.InsecureSkipTLSVerify
	ca, err := fileOrData(cl.CertificateAuthority, cl.CertificateAuthorityData, dir)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: certificate-authority: %w", clusterName, err)
	}
	if ca != nil {
		t.tls.RootCAs = x509.NewCertPool()
		if !t.tls.RootCAs.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("cluster %q: certificate-authority: no PEM certificate in it", clusterName)
		}
	}

	if userName == "" && len(kc.Users) == 0 {
		return t, nil
	}
	idx = slices.IndexFunc(kc.Users, func(u kubeconfigUser) bool { return u.Name == userName })
	if idx < 0 {
		return nil, fmt.Errorf("user %q is not among users", userName)
	}
	us := kc.Users[idx].User
	if us.Username != "" || !us.Exec.IsZero() || !us.AuthProvider.IsZero() {
		return nil, fmt.Errorf("user %q: only token, tokenFile and client certificates are supported, not username, exec or auth-provider", userName)
	}
	t.token = us.Token
	if us.Token == "" && us.TokenFile != "" {
		t.tokenFile = inDir(us.TokenFile, dir)
	}
	cert, err := fileOrData(us.ClientCertificate, us.ClientCertificateData, dir)
	if err != nil {
		return nil, fmt.Errorf("user %q: client-certificate: %w", userName, err)
	}
	key, err := fileOrData(us.ClientKey, us.ClientKeyData, dir)
	if err != nil {
		return nil, fmt.Errorf("user %q: client-key: %w", userName, err)
	}
	if (cert == nil) != (key == nil) {
		return nil, fmt.Errorf("user %q: a client certificate needs its key and a key its certificate", userName)
	}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			// tls's errors describe the PEM blocks, never the key itself.
			return nil, fmt.Errorf("user %q: client certificate and key: %w", userName, err)
		}
		t.tls.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}

// fileOrData returns the contents of the file name (relative to dir) or,
// when name is empty, the base64 data, as a kubeconfig's "x" and "x-data"
// fields. It returns nil when both are empty; the -data field wins, as in
// client-go.
func fileOrData(name, data, dir string) ([]byte, error) {
	if data != "" {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, errors.New("the -data field is not base64")
		}
		return b, nil
	}
	if name == "" {
		return nil, nil
	}
	return readBounded(inDir(name, dir))
}

// inDir makes a relative name relative to dir.
func inDir(name, dir string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

// readBounded reads a file of at most maxKubeconfigSize bytes.
func readBounded(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKubeconfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKubeconfigSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxKubeconfigSize)
	}
	return b, nil
}

// webhookSink posts events to an audit webhook.
type webhookSink struct {
	target *webhookTarget
	client *http.Client
}

// NewWebhookSink returns a Sink that posts events to the webhook named by
// the kubeconfig-format file at kubeconfigPath, as kube-apiserver's
// --audit-webhook-config-file: the current context's cluster (or the first
// cluster) gives the server URL, certificate-authority(-data),
// insecure-skip-tls-verify and tls-server-name; its user (or the first
// user) gives token or tokenFile (read at each Write, so a rotated token is
// followed) and client-certificate(-data) with client-key(-data). Each
// Write is one POST of an audit.k8s.io/v1 EventList, given at most
// timeout; anything but a 2xx answer is an error.
func NewWebhookSink(kubeconfigPath string, timeout time.Duration) (Sink, error) {
	data, err := readBounded(kubeconfigPath)
	if err != nil {
		return nil, fmt.Errorf("loading audit webhook config: %w", err)
	}
	t, err := parseKubeconfig(data, filepath.Dir(kubeconfigPath))
	if err != nil {
		return nil, fmt.Errorf("loading audit webhook config %s: %w", kubeconfigPath, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = t.tls
	return &webhookSink{target: t, client: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// Warnings name the settings of the webhook's kubeconfig that let whoever
// is on the network path read or alter the audit trail; the server logs
// them at start, as it does every dangerous switch.
func (s *webhookSink) Warnings() []string {
	var w []string
	if s.target.tls.InsecureSkipVerify {
		w = append(w, "the audit webhook's kubeconfig sets insecure-skip-tls-verify: the webhook's certificate is not checked, so "+
			"whoever is on the path can read and alter the audit trail; give its CA in certificate-authority instead")
	}
	if s.target.server.Scheme == "http" {
		w = append(w, "the audit webhook's server is plain http ("+s.target.server.Redacted()+"): the audit trail, and any token, "+
			"cross the network unencrypted; use https")
	}
	return w
}

// defaultBatchWait tells a Backend how long a partial batch waits.
func (s *webhookSink) defaultBatchWait() time.Duration { return webhookBatchWait }

// Write posts events as one audit.k8s.io/v1 EventList.
func (s *webhookSink) Write(ctx context.Context, events []*Event) error {
	body := appendEventList(nil, events)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.target.server.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("posting audit events: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	token := s.target.token
	if s.target.tokenFile != "" {
		b, err := readBounded(s.target.tokenFile)
		if err != nil {
			return fmt.Errorf("posting audit events: reading the token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("posting audit events to %s: %w", s.target.server.Redacted(), err)
	}
	defer resp.Body.Close()
	// Read a little of the answer: enough to say why it failed, and so
	// that the connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("posting audit events to %s: %s: %q", s.target.server.Redacted(), resp.Status, bytes.TrimSpace(snippet))
	}
	return nil
}

// Close closes idle connections to the webhook.
func (s *webhookSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
