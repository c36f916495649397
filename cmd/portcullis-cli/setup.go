package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portcullis-proxy/portcullis/internal/cli/kubeconfig"
	"github.com/portcullis-proxy/portcullis/internal/cli/route"
)

func newSetupCommand() *cobra.Command {
	var (
		f        connFlags
		name     string
		kubePath string
		all      bool
		// Direct mode: the cluster is kube-apiserver itself, which
		// validates the Portcullis token.
		directServer, directCA string
	)
	cmd := &cobra.Command{
		Use:   "setup URL",
		Short: "Add a cluster, user and context for URL to your kubeconfig",
		Long: "setup writes a cluster (URL, and the CA of --ca-cert), a user that runs\n" +
			"`portcullis-cli k8s exec-credential URL` with the same flags, and a context joining\n" +
			"them, all named NAME, into the kubeconfig kubectl uses (--kubeconfig, else the first\n" +
			"file of $KUBECONFIG, else ~/.kube/config). Running it again changes nothing; the\n" +
			"current context is left alone.\n\n" +
			"With --all it signs in to URL (if not signed in already) and asks it for every\n" +
			"Kubernetes route of the same Portcullis that you may use, and adds each, named\n" +
			"portcullis-HOST. One sign-in serves them all.\n\n" +
			"With --direct-server the cluster is kube-apiserver itself, at that address (with the CA\n" +
			"of --direct-ca-cert), set up for direct mode by `portcullis direct-config`: kubectl talks\n" +
			"to it directly with the token Portcullis issues for URL, and no request goes through\n" +
			"Portcullis.",
		Args: oneURL,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := route.ParseURL(args[0])
			if err != nil {
				return err
			}
			if all && name != "" {
				return fmt.Errorf("--name names one route; with --all each route is named portcullis-HOST")
			}
			if all && directServer != "" {
				return fmt.Errorf("--direct-server is one cluster's apiserver; set up each route in direct mode on its own")
			}
			if directCA != "" && directServer == "" {
				return fmt.Errorf("--direct-ca-cert is the CA of the apiserver of --direct-server, which is not given")
			}
			if name == "" {
				name = kubeconfig.DefaultName(u)
			}
			home, _ := os.UserHomeDir()
			path, err := kubeconfig.Path(kubePath, os.Getenv("KUBECONFIG"), home)
			if err != nil {
				return err
			}
			ca, err := f.tls.CAPEM()
			if err != nil {
				return err
			}
			self, err := selfPath()
			if err != nil {
				return err
			}
			flags, err := f.args()
			if err != nil {
				return err
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			routes := []string{u.String()}
			if all {
				more, err := reachableRoutes(cmd.Context(), &f, u, stderr)
				if err != nil {
					return err
				}
				for _, r := range more {
					if r != u.String() {
						routes = append(routes, r)
					}
				}
			}
			for i, server := range routes {
				n := name
				if i > 0 {
					ru, _ := route.ParseURL(server) // canonical already
					n = kubeconfig.DefaultName(ru)
				}
				o := kubeconfig.Options{
					Path:                  path,
					Name:                  n,
					Server:                server,
					CAData:                ca,
					InsecureSkipTLSVerify: f.tls.InsecureSkipVerify,
					Command:               self,
					Args:                  append([]string{"k8s", "exec-credential", server}, flags...),
				}
				if directServer != "" {
					if o, err = directOptions(o, directServer, directCA); err != nil {
						return err
					}
				}
				changed, err := kubeconfig.Setup(o)
				if err != nil {
					return err
				}
				verb := "Added"
				if !changed {
					verb = "Already set up:"
				}
				if all {
					n += " (" + server + ")"
				}
				fmt.Fprintf(stdout, "%s context %s in %s\n", verb, n, path)
			}
			if f.tls.InsecureSkipVerify {
				fmt.Fprintln(stderr, "portcullis-cli: warning: --disable-tls-verification: kubectl will accept any certificate for", strings.Join(routes, ", "))
			}
			try := "kubectl --context " + shellQuote(name) + " get ns"
			if kubePath != "" {
				try = "kubectl --kubeconfig " + shellQuote(path) + " --context " + shellQuote(name) + " get ns"
			}
			fmt.Fprintf(stdout, "Try it:\n\n    %s\n", try)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&name, "name", "", "name of the cluster, user and context (default portcullis-HOST)")
	cmd.Flags().StringVar(&kubePath, "kubeconfig", "", "kubeconfig file to write (default: the first file of $KUBECONFIG, else ~/.kube/config)")
	cmd.Flags().StringVar(&directServer, "direct-server", "", "direct mode: kube-apiserver's `URL`, which validates Portcullis tokens itself (see portcullis direct-config)")
	cmd.Flags().StringVar(&directCA, "direct-ca-cert", "", "direct mode: PEM `file` of the CA of kube-apiserver's certificate (default: the system's roots)")
	cmd.MarkFlagFilename("direct-ca-cert")
	cmd.Flags().BoolVar(&all, "all", false, "also add every other Kubernetes route of this Portcullis you may use (signs in to URL if needed)")
	cmd.MarkFlagFilename("kubeconfig")
	return cmd
}

// directOptions turns o, the setup of a route, into the setup of the
// route's cluster in direct mode: the cluster is the apiserver at server
// (with the CA in the PEM file caFile, if given), and the user asks the
// route for a bare token.
func directOptions(o kubeconfig.Options, server, caFile string) (kubeconfig.Options, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return o, fmt.Errorf("--direct-server %q is not an https URL of kube-apiserver, such as https://10.0.0.1:6443", server)
	}
	o.Server = strings.TrimSuffix(u.String(), "/")
	o.CAData, o.InsecureSkipTLSVerify = nil, false
	if caFile != "" {
		if o.CAData, err = os.ReadFile(caFile); err != nil {
			return o, fmt.Errorf("reading --direct-ca-cert: %w", err)
		}
	}
	// The route's connection flags stay: the plugin still signs in there.
	o.Args = append(o.Args[:3:3], append([]string{"--direct"}, o.Args[3:]...)...)
	return o, nil
}

// reachableRoutes signs in to u as exec-credential would (a cached
// credential serves) and asks it which Kubernetes routes the person may
// use.
func reachableRoutes(ctx context.Context, f *connFlags, u *url.URL, stderr io.Writer) ([]string, error) {
	b, client, err := f.broker(u.String(), stderr)
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()
	tok, err := b.Token(ctx)
	if err != nil {
		return nil, err
	}
	return client.Routes(ctx, tok.Raw)
}

// selfPath is the absolute path kubectl should run: the command as it was
// found on PATH or given (so a symlink, such as a package manager's, is
// kept and survives upgrades), else the running executable.
func selfPath() (string, error) {
	arg0 := os.Args[0]
	if strings.ContainsRune(arg0, os.PathSeparator) {
		if p, err := filepath.Abs(arg0); err == nil {
			return p, nil
		}
	} else if p, err := exec.LookPath(arg0); err == nil {
		if p, err := filepath.Abs(p); err == nil {
			return p, nil
		}
	}
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the path of portcullis-cli for the kubeconfig: %w", err)
	}
	return p, nil
}

// shellQuote quotes s for a POSIX shell if it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@=+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
