package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kubeRoute is a Kubernetes route of a config file's routes: list, with
// extra keys (indented as its other keys).
func kubeRoute(host, extra string) string {
	return "  - from: https://" + host + ".example.com\n    to: https://10.0.0.1:6443\n    kubernetes_service_account_token: token\n" + extra
}

// TestMappingInherited: each route takes the top-level identity mapping
// settings it does not set itself, from the file or (winning over it)
// the environment; a route's own keys win; a route that is not a
// Kubernetes route takes none.
func TestMappingInherited(t *testing.T) {
	file := `kubernetes_username_claim: sub
kubernetes_username_prefix: "acme:"
kubernetes_groups_prefix: "oidc:"
kubernetes_groups_filter: ["team-*", "cn=ops,dc=example,dc=com"]
routes:
` + kubeRoute("inherits", "") + kubeRoute("own", `    kubernetes_username_claim: preferred_username
    kubernetes_username_prefix: "-"
    kubernetes_groups_prefix: "-"
    kubernetes_groups_filter: ["*"]
`) + kubeRoute("empty", `    kubernetes_username_prefix: ""
    kubernetes_groups_prefix: ~
`) + "  - from: https://app.example.com\n    to: https://10.0.0.2\n    allow_any_authenticated_user: true\n"

	type mapping struct {
		Claim, UserPrefix, GroupsPrefix string
		Filter                          []string
	}
	got := func(o *Options) []mapping {
		var out []mapping
		for _, r := range o.Routes {
			out = append(out, mapping{r.KubernetesUsernameClaim, r.KubernetesUsernamePrefix, r.KubernetesGroupsPrefix, r.KubernetesGroupsFilter})
		}
		return out
	}
	o, err := load("config.yaml", nil, configFile("config.yaml", file))
	if err != nil {
		t.Fatal(err)
	}
	top := mapping{"sub", "acme:", "oidc:", []string{"team-*", "cn=ops,dc=example,dc=com"}}
	want := []mapping{
		top,
		{"preferred_username", "-", "-", []string{"*"}},
		top, // an empty value counts as not set
		{},  // not a Kubernetes route
	}
	if diff := cmp.Diff(want, got(o)); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}

	// The environment wins over the file, and its filter is a comma list
	// or, for names with commas, a JSON list.
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"team-*, sre ,,", []string{"team-*", "sre"}},
		{`["cn=ops,dc=example,dc=com", "*-admins"]`, []string{"cn=ops,dc=example,dc=com", "*-admins"}},
	} {
		e := env{"KUBERNETES_USERNAME_CLAIM": "upn", "KUBERNETES_USERNAME_PREFIX": "-", "KUBERNETES_GROUPS_PREFIX": "k:", "KUBERNETES_GROUPS_FILTER": tc.filter}
		o, err := load("config.yaml", e.lookup, configFile("config.yaml", file))
		if err != nil {
			t.Fatal(err)
		}
		envTop := mapping{"upn", "-", "k:", tc.want}
		if diff := cmp.Diff([]mapping{envTop, want[1], envTop, {}}, got(o)); diff != "" {
			t.Errorf("KUBERNETES_GROUPS_FILTER=%s: routes (-want +got):\n%s", tc.filter, diff)
		}
	}

	// Nothing set: email, no prefix, every group.
	o, err = load("config.yaml", nil, configFile("config.yaml", "routes:\n"+kubeRoute("k8s", "")))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]mapping{{Claim: "email"}}, got(o)); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	// They change on reload, without a restart.
	changed := *o
	changed.KubernetesGroupsPrefix, changed.KubernetesUsernameClaim = "x:", "sub"
	if names := RestartRequired(o, &changed); len(names) != 0 {
		t.Errorf("RestartRequired = %v, want none", names)
	}
}

// TestMappingProblems: what is wrong with an identity mapping setting is
// reported where it was written: a route's own key, or the top-level
// setting a route took.
func TestMappingProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		env  env
		want []string
	}{
		{
			name: "on a route that impersonates no one",
			file: "routes:\n  - from: https://app.example.com\n    to: https://10.0.0.2\n    allow_any_authenticated_user: true\n" +
				"    kubernetes_groups_prefix: \"oidc:\"\n    kubernetes_groups_filter: [a]\n",
			want: []string{
				"config.yaml:5: routes[0].kubernetes_groups_prefix: set on a route that is not a Kubernetes route (no kubernetes_service_account_token): it only decides who Kubernetes sees; remove it",
				"config.yaml:6: routes[0].kubernetes_groups_filter: set on a route that is not a Kubernetes route (no kubernetes_service_account_token): it only decides who Kubernetes sees; remove it",
			},
		},
		{
			name: "bad patterns",
			file: "kubernetes_groups_filter: [ok, \"a\\tb\"]\nroutes:\n" + kubeRoute("k8s", "    kubernetes_groups_filter: [\"*\", \"x\\u200b\", \"\"]\n"),
			want: []string{
				`config.yaml:1: kubernetes_groups_filter[1]: pattern "a\tb" holds a character that is not printable`,
				`config.yaml:6: routes[0].kubernetes_groups_filter[1]: pattern "x\u200b" holds a character that is not printable`,
			},
		},
		{
			name: "an empty list",
			file: "routes:\n" + kubeRoute("k8s", "    kubernetes_groups_filter: []\n"),
			want: []string{`config.yaml:5: routes[0].kubernetes_groups_filter: an empty list: leave the key out for the default, or give ["*"] to let every group through`},
		},
		{
			name: "a JSON list that is not one",
			env:  env{"KUBERNETES_GROUPS_FILTER": `["a", 1]`},
			want: []string{`KUBERNETES_GROUPS_FILTER: item 2 of the JSON list is not a string: want one such as ["team-*","cn=ops,dc=example,dc=com"], or a comma list such as team-*,sre`},
		},
		{
			name: "a claim that is not a name",
			env:  env{"KUBERNETES_USERNAME_CLAIM": "preferred username"},
			want: []string{`KUBERNETES_USERNAME_CLAIM: "preferred username" is not a claim name: want one such as email, sub or preferred_username`},
		},
		{
			name: "a claim no provider's claims would keep",
			file: "routes:\n" + kubeRoute("k8s", "    kubernetes_username_claim: "+strings.Repeat("c", 129)+"\n"),
			want: []string{"config.yaml:5: routes[0].kubernetes_username_claim: a claim name of 129 bytes: the identity provider's claims with names over 128 bytes are not kept, so no one would have it"},
		},
		{
			name: "a prefix that makes every name system:",
			file: "routes:\n" + kubeRoute("k8s", "    kubernetes_groups_prefix: \"System:\"\n") +
				kubeRoute("allowed", "    kubernetes_groups_prefix: \"system:\"\n    kubernetes_allow_system_names: true\n"),
			want: []string{`config.yaml:5: routes[0].kubernetes_groups_prefix: "System:" begins with "system:", so every name Kubernetes saw on routes[0] (config.yaml:2) would be one Kubernetes keeps for its own identities, which Portcullis refuses to impersonate: choose another prefix, such as oidc:`},
		},
		{
			name: "a top-level prefix that does so on a route that takes it",
			file: "kubernetes_username_prefix: \"system:\"\nroutes:\n" + kubeRoute("k8s", "") +
				kubeRoute("own", "    kubernetes_username_prefix: \"oidc:\"\n") +
				kubeRoute("allowed", "    kubernetes_allow_system_names: true\n"),
			want: []string{`config.yaml:1: kubernetes_username_prefix: "system:" begins with "system:", so every name Kubernetes saw on routes[0] (config.yaml:3) would be one Kubernetes keeps for its own identities, which Portcullis refuses to impersonate: choose another prefix, such as oidc:`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, loadProblems(tc.file, tc.env)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}

	// Options built in code are checked too.
	o := Defaults()
	o.InsecureServer = true
	o.Routes = []Route{{KubernetesServiceAccountToken: "token", KubernetesUsernamePrefix: "bad\nprefix", KubernetesGroupsFilter: []string{""}}}
	got := messages(o.Check())
	for _, want := range []string{`routes[0].kubernetes_username_prefix: "bad\nprefix" is not a prefix`, "routes[0].kubernetes_groups_filter: an empty pattern"} {
		if !slices.ContainsFunc(got, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("Check: got %q, want a problem saying %q", got, want)
		}
	}
}

// TestMappingSummary: --check-config shows who Kubernetes sees on each
// Kubernetes route.
func TestMappingSummary(t *testing.T) {
	file := "idp_provider: oidc\nidp_provider_url: https://accounts.example.com\nkubernetes_username_claim: sub\n" +
		"kubernetes_groups_filter: [\"team-*\", sre]\nkubernetes_groups_prefix: \"oidc:\"\nroutes:\n" +
		kubeRoute("inherits", "") + kubeRoute("own", "    kubernetes_username_claim: email\n    kubernetes_username_prefix: \"corp:\"\n    kubernetes_groups_filter: [\"*\"]\n") +
		kubeRoute("none", "    kubernetes_username_prefix: \"-\"\n    kubernetes_groups_prefix: \"-\"\n")
	o, err := load("config.yaml", nil, configFile("config.yaml", file))
	if err != nil {
		t.Fatal(err)
	}
	s := o.Summary()
	for _, want := range []string{
		`kubernetes sees: user "https://accounts.example.com#" + sub; groups those matching team-*, sre, prefixed "oidc:"`,
		`kubernetes sees: user "corp:" + email; groups those matching *, prefixed "oidc:"`,
		`kubernetes sees: user sub; groups those matching team-*, sre` + "\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("the summary does not say %q:\n%s", want, s)
		}
	}
}
