package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/portcullis-proxy/portcullis/internal/cli/credential"
)

func newExecCredentialCommand() *cobra.Command {
	var (
		f         connFlags
		directAPI bool
	)
	cmd := &cobra.Command{
		Use:   "exec-credential URL",
		Short: "Print a kubectl ExecCredential for the Portcullis route at URL",
		Long: "exec-credential is the kubectl exec-credential plugin: it prints an ExecCredential\n" +
			"(in the apiVersion kubectl asks for in KUBERNETES_EXEC_INFO) whose token is\n" +
			"\"Pomerium-<jwt>\" and whose expirationTimestamp is the token's expiry.\n\n" +
			"A cached token is used while it has more than a minute left and the server still\n" +
			"accepts it (asked on every run, with one request to URL/.pomerium/); otherwise it\n" +
			"signs in: through a browser on this machine, or, with --device (the default over SSH\n" +
			"and where there is no display), with a code approved in a browser on any device.\n" +
			"Concurrent runs share one sign-in.\n" +
			"With --direct the token is the bare JWT, for a kube-apiserver that validates\n" +
			"Portcullis tokens itself (direct mode; `portcullis-cli k8s setup --direct-server`).\n" +
			"Only the JSON goes to stdout; messages go to stderr.",
		Args: oneURL,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Read first: a kubeconfig asking for a version this command
			// cannot answer in fails before any browser opens.
			info, err := credential.ParseExecInfo(os.Getenv("KUBERNETES_EXEC_INFO"))
			if err != nil {
				return err
			}
			b, client, err := f.broker(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer client.CloseIdleConnections()
			tok, err := b.Token(cmd.Context())
			if err != nil {
				return err
			}
			marshal := credential.Marshal
			if directAPI {
				marshal = credential.MarshalDirect
			}
			out, err := marshal(info.APIVersion, tok.Raw, tok.Expiry)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&directAPI, "direct", false, "print the bare token, for a kube-apiserver that validates Portcullis tokens itself (direct mode)")
	return cmd
}
