package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/portcullis-proxy/portcullis/internal/cli/cache"
	"github.com/portcullis-proxy/portcullis/internal/cli/route"
)

func newFlushCredentialsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "flush-credentials [URL]",
		Short: "Forget cached credentials (for URL, or all)",
		Long: "flush-credentials removes the cached credential for URL, or every cached credential,\n" +
			"so that the next kubectl command signs in again. It does not sign out on the server.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := cache.DefaultDir()
			if err != nil {
				return err
			}
			c := cache.New(dir)
			stderr := cmd.ErrOrStderr()
			if len(args) == 0 {
				n, err := c.DeleteAll()
				if err != nil {
					return err
				}
				fmt.Fprintf(stderr, "Removed %d cached credential(s) from %s.\n", n, dir)
				return nil
			}
			u, err := route.ParseURL(args[0])
			if err != nil {
				return err
			}
			e, loadErr := c.Load(u.String())
			if err := c.Delete(u.String()); err != nil {
				return err
			}
			if e == nil && loadErr == nil {
				fmt.Fprintf(stderr, "No cached credential for %s.\n", u)
				return nil
			}
			fmt.Fprintf(stderr, "Removed the cached credential for %s.\n", u)
			return nil
		},
	}
}
