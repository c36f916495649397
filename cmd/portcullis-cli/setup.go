package main

import (
	"fmt"
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
	)
	cmd := &cobra.Command{
		Use:   "setup URL",
		Short: "Add a cluster, user and context for URL to your kubeconfig",
		Long: "setup writes a cluster (URL, and the CA of --ca-cert), a user that runs\n" +
			"`portcullis-cli k8s exec-credential URL` with the same flags, and a context joining\n" +
			"them, all named NAME, into the kubeconfig kubectl uses (--kubeconfig, else the first\n" +
			"file of $KUBECONFIG, else ~/.kube/config). Running it again changes nothing; the\n" +
			"current context is left alone.",
		Args: oneURL,
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := route.ParseURL(args[0])
			if err != nil {
				return err
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
			changed, err := kubeconfig.Setup(kubeconfig.Options{
				Path:                  path,
				Name:                  name,
				Server:                u.String(),
				CAData:                ca,
				InsecureSkipTLSVerify: f.tls.InsecureSkipVerify,
				Command:               self,
				Args:                  append([]string{"k8s", "exec-credential", u.String()}, flags...),
			})
			if err != nil {
				return err
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if f.tls.InsecureSkipVerify {
				fmt.Fprintln(stderr, "portcullis-cli: warning: --disable-tls-verification: kubectl will accept any certificate for", u)
			}
			verb := "Added"
			if !changed {
				verb = "Already set up:"
			}
			fmt.Fprintf(stdout, "%s context %s in %s\n", verb, name, path)
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
	cmd.MarkFlagFilename("kubeconfig")
	return cmd
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
