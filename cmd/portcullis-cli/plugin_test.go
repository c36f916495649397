package main

import (
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

func TestPluginName(t *testing.T) {
	for arg0, want := range map[string]string{
		"/home/me/.krew/bin/kubectl-portcullis": "kubectl portcullis",
		"kubectl-portcullis":                    "kubectl portcullis",
		"kubectl-portcullis.exe":                "kubectl portcullis",
		"kubectl-portcullis.EXE":                "kubectl portcullis",
		"kubectl-portcullis-cli":                "kubectl portcullis cli",
		"kubectl-portcullis_cli":                "kubectl portcullis-cli",
		"/usr/local/bin/portcullis-cli":         "",
		"portcullis-cli.exe":                    "",
		"kubectl-":                              "",
		"kubectl":                               "",
	} {
		if got := pluginName(arg0); got != want {
			t.Errorf("pluginName(%q) = %q, want %q", arg0, got, want)
		}
	}
}

// Run by kubectl as kubectl-portcullis, help speaks of `kubectl portcullis`.
func TestHelpAsKubectlPlugin(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"kubectl portcullis [command]", "Run `kubectl portcullis k8s setup https://ROUTE` once"}},
		{[]string{"k8s", "setup", "--help"}, []string{"kubectl portcullis k8s setup URL"}},
	} {
		var out, errb logbuf.Buffer
		root := newRootCommand(&out, &errb)
		asPlugin(root, "/home/me/.krew/bin/kubectl-portcullis")
		root.SetArgs(tt.args)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", tt.args, w, out.String())
			}
		}
		if strings.Contains(out.String(), "portcullis-cli k8s") {
			t.Errorf("%v: output names portcullis-cli:\n%s", tt.args, out.String())
		}
	}
}
