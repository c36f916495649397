// Command portcullis-cli is the Portcullis client: the kubectl
// exec-credential plugin and the commands that set kubectl up.
package main

import (
	"context"
	"errors"
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

// errNotImplemented marks commands whose behaviour is not built yet; they
// say so rather than pretend.
var errNotImplemented = errors.New("not implemented yet")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "portcullis-cli",
		Short:         "Sign in to Kubernetes clusters behind Portcullis",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newVersionCommand(), newK8sCommand(), newLoginCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "portcullis-cli", version)
			return nil
		},
	}
}

func notImplemented(use, short string, args cobra.PositionalArgs) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short + " (not implemented yet)",
		Args:  args,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("%s: %w", cmd.CommandPath(), errNotImplemented)
		},
	}
}

func newK8sCommand() *cobra.Command {
	k8s := &cobra.Command{Use: "k8s", Short: "Commands for kubectl"}
	k8s.AddCommand(
		notImplemented("exec-credential URL", "Print a kubectl ExecCredential for the Portcullis route at URL", cobra.ExactArgs(1)),
		notImplemented("flush-credentials [URL]", "Forget cached credentials", cobra.MaximumNArgs(1)),
		notImplemented("setup URL", "Add a cluster, user and context for URL to your kubeconfig", cobra.ExactArgs(1)),
	)
	return k8s
}

func newLoginCommand() *cobra.Command {
	return notImplemented("login URL", "Sign in and print a token for scripts", cobra.ExactArgs(1))
}
