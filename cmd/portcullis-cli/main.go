// Command portcullis-cli is the Portcullis client: the kubectl
// exec-credential plugin and the commands that set kubectl up. Each
// command is in a file of its own; the work is done in internal/cli/...
//
// stdout carries only what a program reads (the ExecCredential JSON, a
// token, completion scripts); everything for a person goes to stderr.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "portcullis-cli:", err)
		os.Exit(1)
	}
}

// run is the whole command, with its streams passed in so tests can call
// it. The environment (KUBERNETES_EXEC_INFO, BROWSER, KUBECONFIG, HOME,
// XDG_CACHE_HOME) is read from the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCommand(stdout, stderr)
	asPlugin(root, os.Args[0])
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "portcullis-cli",
		Short: "Sign in to Kubernetes clusters behind Portcullis",
		Long: "portcullis-cli signs you in to Kubernetes clusters behind Portcullis.\n\n" +
			"Run `portcullis-cli k8s setup https://ROUTE` once; from then on kubectl runs\n" +
			"`portcullis-cli k8s exec-credential` itself and opens your browser when you need to sign in.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Shell completion is cobra's: `portcullis-cli completion bash|zsh|fish|powershell`.
	root.AddCommand(newVersionCommand(), newK8sCommand(), newLoginCommand())
	return root
}
