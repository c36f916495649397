package kubeconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ExecAPIVersion is the ExecCredential version the exec stanza asks for.
const ExecAPIVersion = "client.authentication.k8s.io/v1"

// InstallHint is what kubectl prints when the command is missing.
const InstallHint = "portcullis-cli signs you in to this cluster through Portcullis. Install it, then run `portcullis-cli k8s setup URL` again."

// Options say what Setup writes.
type Options struct {
	// Path is the kubeconfig file (see Path).
	Path string
	// Name names the cluster, the user and the context.
	Name string
	// Server is the route's URL.
	Server string
	// CAData is the PEM of the CA that signed the route's certificate,
	// for kubectl to verify it (none: the system's roots).
	CAData []byte
	// InsecureSkipTLSVerify makes kubectl accept any certificate.
	InsecureSkipTLSVerify bool
	// Command is the absolute path of portcullis-cli, Args its arguments
	// (k8s exec-credential URL and flags).
	Command string
	Args    []string
}

// Path returns the kubeconfig file kubectl would use: explicit (a
// --kubeconfig flag) if set, else the first file in $KUBECONFIG, else
// ~/.kube/config. kubectl merges every $KUBECONFIG file and the first to
// set a name wins, so entries written to the first file are the ones
// kubectl sees.
func Path(explicit, envKubeconfig, home string) (string, error) {
	if explicit != "" {
		return filepath.Abs(explicit)
	}
	for _, p := range filepath.SplitList(envKubeconfig) {
		if p != "" {
			return filepath.Abs(p)
		}
	}
	if home == "" {
		return "", errors.New("finding the kubeconfig: no --kubeconfig, no $KUBECONFIG and no home directory")
	}
	return filepath.Join(home, clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName), nil
}

// DefaultName derives a name from the route's URL: "portcullis-" and the
// host, with a port joined by "-" (names appear on command lines, where a
// colon is awkward).
func DefaultName(server *url.URL) string {
	host := strings.NewReplacer(":", "-", "[", "", "]", "").Replace(server.Host)
	return "portcullis-" + host
}

// Setup adds or updates the cluster, user and context named opts.Name in
// the kubeconfig at opts.Path, creating the file if needed. It reports
// whether the file changed.
func Setup(opts Options) (changed bool, err error) {
	if opts.Name == "" || opts.Server == "" || opts.Command == "" || opts.Path == "" {
		return false, errors.New("writing kubeconfig: name, server, command and path are required")
	}
	cfg, err := clientcmd.LoadFromFile(opts.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cfg = clientcmdapi.NewConfig()
	case err != nil:
		return false, fmt.Errorf("reading kubeconfig %s: %w", opts.Path, err)
	}

	cluster := clientcmdapi.NewCluster()
	cluster.Server = opts.Server
	cluster.CertificateAuthorityData = opts.CAData
	cluster.InsecureSkipTLSVerify = opts.InsecureSkipTLSVerify

	user := clientcmdapi.NewAuthInfo()
	user.Exec = &clientcmdapi.ExecConfig{
		APIVersion: ExecAPIVersion,
		Command:    opts.Command,
		Args:       opts.Args,
		// Sign-in happens in a browser, not on the terminal, so the
		// plugin runs with or without one; kubectl 1.37 requires the
		// field.
		InteractiveMode: clientcmdapi.IfAvailableExecInteractiveMode,
		// The plugin knows its server from its arguments; cluster info
		// would only put the CA in its environment.
		ProvideClusterInfo: false,
		InstallHint:        InstallHint,
	}

	kctx := clientcmdapi.NewContext()
	kctx.Cluster = opts.Name
	kctx.AuthInfo = opts.Name
	if old := cfg.Contexts[opts.Name]; old != nil {
		kctx.Namespace = old.Namespace // a namespace the person chose stays
	}

	// Compared as written, so that what is not written (where an entry
	// was read from) or written alike (nil and empty lists) counts as same.
	before, err := clientcmd.Write(*cfg)
	if err != nil {
		return false, fmt.Errorf("reading kubeconfig %s: %w", opts.Path, err)
	}
	cfg.Clusters[opts.Name] = cluster
	cfg.AuthInfos[opts.Name] = user
	cfg.Contexts[opts.Name] = kctx
	after, err := clientcmd.Write(*cfg)
	if err != nil {
		return false, fmt.Errorf("writing kubeconfig %s: %w", opts.Path, err)
	}
	if bytes.Equal(before, after) {
		return false, nil
	}
	// Only what Setup writes is validated: another entry's trouble (a
	// certificate file gone missing) is not this command's to judge.
	own := clientcmdapi.NewConfig()
	own.Clusters[opts.Name], own.AuthInfos[opts.Name], own.Contexts[opts.Name] = cluster, user, kctx
	if err := clientcmd.Validate(*own); err != nil {
		return false, fmt.Errorf("writing kubeconfig %s: the result would not be valid: %w", opts.Path, err)
	}
	// clientcmd.WriteToFile writes as kubectl does: in place (a symlinked
	// kubeconfig stays a symlink), mode 0600 for a new file.
	if err := clientcmd.WriteToFile(*cfg, opts.Path); err != nil {
		return false, fmt.Errorf("writing kubeconfig %s: %w", opts.Path, err)
	}
	return true, nil
}
