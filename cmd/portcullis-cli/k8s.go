package main

import "github.com/spf13/cobra"

func newK8sCommand() *cobra.Command {
	k8s := &cobra.Command{
		Use:   "k8s",
		Short: "Commands for kubectl",
		Args:  cobra.NoArgs,
	}
	k8s.AddCommand(newExecCredentialCommand(), newFlushCredentialsCommand(), newSetupCommand())
	return k8s
}
