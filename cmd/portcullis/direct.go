package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/direct"
	"github.com/portcullis-proxy/portcullis/internal/server"
)

// runDirectConfig is `portcullis direct-config`: it writes the three files
// kube-apiserver needs to use a Kubernetes route in direct mode, from the
// same configuration the server runs with, and says which flags to give
// the apiserver.
func runDirectConfig(args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) error {
	fs := flag.NewFlagSet("portcullis direct-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "read settings from this YAML `file`, as the server does; environment variables override it")
	routeURL := fs.String("route", "", "the Kubernetes route (its from `URL`); needed when there is more than one")
	caFile := fs.String("ca-cert", "", "PEM `file` of the certificate authority kube-apiserver trusts for Portcullis's certificate (default: the apiserver host's system roots)")
	out := fs.String("out", "", "write the files into this `directory` (created if missing)")
	kubeconfigPath := fs.String("webhook-kubeconfig-path", "", "the `path` kube-apiserver reads the webhook kubeconfig from (default: the file in --out)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: portcullis direct-config --out DIR [--route URL] [--ca-cert FILE] [--config FILE]\n\n"+
			"Writes %s, %s and %s:\n"+
			"what kube-apiserver needs to validate Portcullis tokens itself and ask Portcullis's\n"+
			"authorization webhook about every request of a person signed in with Portcullis (direct\n"+
			"mode: no request goes through the proxy). See docs/direct-mode.md.\n\n",
			direct.AuthenticationFile, direct.AuthorizationFile, direct.WebhookKubeconfigFile)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, "direct-config takes flags only"); err != nil {
		return err
	}
	if *out == "" {
		return &exitError{code: exitUsage, err: errors.New("direct-config: --out DIR is required: the webhook kubeconfig holds a secret and is written to a file only")}
	}
	opts, err := config.Load(*configFile, lookupEnv, server.Checks()...)
	if err != nil {
		return reportProblems(stderr, err)
	}
	var ca []byte
	if *caFile != "" {
		if ca, err = os.ReadFile(*caFile); err != nil {
			return fmt.Errorf("direct-config: reading --ca-cert: %w", err)
		}
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return fmt.Errorf("direct-config: %w", err)
	}
	if *kubeconfigPath == "" {
		*kubeconfigPath = filepath.Join(dir, direct.WebhookKubeconfigFile)
	}
	files, route, err := server.DirectConfig(opts, *routeURL, ca, *kubeconfigPath)
	if err != nil {
		return fmt.Errorf("direct-config: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("direct-config: %w", err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		// 0600: the webhook kubeconfig holds the webhook's token; the
		// others are the apiserver's configuration, read by it alone.
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o600); err != nil {
			return fmt.Errorf("direct-config: %w", err)
		}
	}
	fmt.Fprintf(stdout, "Wrote the direct-mode files for route %s into %s.\n\n"+
		"Give kube-apiserver these flags (and remove --authorization-mode and every --oidc-* flag, which they replace):\n\n"+
		"    --authentication-config=%s\n"+
		"    --authorization-config=%s\n\n"+
		"and make %s readable by it at %s.\n"+
		"Then set up kubectl: portcullis-cli k8s setup %s --direct-server https://APISERVER:6443 --direct-ca-cert CLUSTER-CA.pem\n",
		route.From, dir,
		filepath.Join(dir, direct.AuthenticationFile), filepath.Join(dir, direct.AuthorizationFile),
		direct.WebhookKubeconfigFile, *kubeconfigPath, route.From)
	return nil
}
