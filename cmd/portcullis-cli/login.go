package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newLoginCommand() *cobra.Command {
	var f connFlags
	cmd := &cobra.Command{
		Use:   "login URL",
		Short: "Sign in and print a token for scripts",
		Long: "login signs in (through the browser, or with a code on any device: --device) and\n" +
			"prints the raw token (a JWT) on stdout, for\n" +
			"scripts: send it as `Authorization: Bearer Pomerium-<token>`. It always signs in anew,\n" +
			"and caches the token for kubectl as exec-credential would.",
		Args: oneURL,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, client, err := f.broker(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer client.CloseIdleConnections()
			tok, err := b.SignIn(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok.Raw)
			return err
		},
	}
	f.register(cmd)
	return cmd
}
