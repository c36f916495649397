package main

import (
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// pluginName is what kubectl calls the command whose executable is arg0,
// if that is a kubectl plugin's name: kubectl runs kubectl-portcullis for
// `kubectl portcullis` (krew installs the CLI under that name), reading a
// dash of the file name as a space and an underscore as a dash. It is ""
// for any other name, such as portcullis-cli.
func pluginName(arg0 string) string {
	base := filepath.Base(arg0)
	if ext := filepath.Ext(base); strings.EqualFold(ext, ".exe") {
		base = strings.TrimSuffix(base, ext)
	}
	rest, ok := strings.CutPrefix(base, "kubectl-")
	if !ok || rest == "" {
		return ""
	}
	return "kubectl " + strings.ReplaceAll(strings.ReplaceAll(rest, "-", " "), "_", "-")
}

// asPlugin makes help and usage name the command as the person typed it
// when kubectl runs it as a plugin ("kubectl portcullis k8s setup URL").
// Nothing else depends on the name: k8s setup writes the executable's own
// path into the kubeconfig, whichever name it has.
func asPlugin(root *cobra.Command, arg0 string) {
	name := pluginName(arg0)
	if name == "" {
		return
	}
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations[cobra.CommandDisplayNameAnnotation] = name
	renameIn(root, "`"+root.Name()+" ", "`"+name+" ")
}

// renameIn rewrites the commands quoted in the long help of cmd and its
// subcommands.
func renameIn(cmd *cobra.Command, old, new string) {
	cmd.Long = strings.ReplaceAll(cmd.Long, old, new)
	for _, c := range cmd.Commands() {
		renameIn(c, old, new)
	}
}
