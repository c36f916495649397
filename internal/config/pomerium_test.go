package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPomeriumKeysTable checks the table of Pomerium's keys against the
// keys Portcullis implements: a key Portcullis implements must not be in
// it, and every entry says what to do.
func TestPomeriumKeysTable(t *testing.T) {
	top, route := topKeys(), routeKeys()
	for i, k := range pomeriumKeys {
		if k.name == "" || k.name != strings.ToLower(k.name) {
			t.Errorf("entry %d: name %q: want a lower-case key", i, k.name)
		}
		if k.at == 0 {
			t.Errorf("%s: no place", k.name)
		}
		if k.at&global != 0 && slices.Contains(top, k.name) {
			t.Errorf("%s: Portcullis implements it as a top-level setting: remove its entry", k.name)
		}
		if k.at&inRoute != 0 && slices.Contains(route, k.name) {
			t.Errorf("%s: Portcullis implements it as a route key: remove its entry", k.name)
		}
		if k.prefix && (k.at != atTop || !strings.HasSuffix(k.name, "_")) {
			t.Errorf("%s: a prefix entry is for top-level keys of the file only, and ends with _", k.name)
		}
		switch k.use {
		case described:
			if k.todo != "" || k.at != inRoute {
				t.Errorf("%s: a presentation key is a route key and has nothing to do", k.name)
			}
		default:
			if k.todo == "" || strings.HasSuffix(k.todo, ".") || strings.Contains(k.todo, "not supported") {
				t.Errorf("%s: todo %q: want what to do, without a final period (the message already says it is not supported)", k.name, k.todo)
			}
		}
		for j, other := range pomeriumKeys[:i] {
			if other.name == k.name && other.prefix == k.prefix && other.at&k.at != 0 {
				t.Errorf("%s: listed twice for the same place (entries %d and %d)", k.name, j, i)
			}
		}
	}
}

// TestPomeriumKeys: each kind of Pomerium key is refused, wherever it is
// written, with what to do; the presentation keys are accepted.
func TestPomeriumKeys(t *testing.T) {
	const route = "routes:\n  - from: https://app.example.com\n    to: https://upstream.example.com\n"
	for _, tc := range []struct {
		name string
		file string
		env  env
		want []string // nil: Load succeeds
	}{
		{
			name: "a setting Portcullis always has: cookie_secure is no typo of cookie_secret",
			file: "cookie_secure: false\n",
			want: []string{`config.yaml:1: Pomerium's "cookie_secure" is not supported by Portcullis: Portcullis cookies are always Secure (unless authenticate_service_url is plain http, a development setup): remove it`},
		},
		{
			name: "access written as a policy, from the value given",
			file: route + "    allowed_groups: [admins, sre]\n    allowed_idp_claims: {department: [eng, ops]}\n    cors_allow_preflight: true\n",
			want: []string{
				`config.yaml:4: routes[0]: Pomerium's "allowed_groups" is not supported by Portcullis: add this rule to the route's policy: - allow: {or: [{groups: {has: "admins"}}, {groups: {has: "sre"}}]}`,
				`config.yaml:5: routes[0]: Pomerium's "allowed_idp_claims" is not supported by Portcullis: add this rule to the route's policy: - allow: {or: [{claim/department: "eng"}, {claim/department: "ops"}]}`,
				`config.yaml:6: routes[0]: Pomerium's "cors_allow_preflight" is not supported by Portcullis: add this rule to the route's policy: - allow: {or: [{cors_preflight: true}]}`,
			},
		},
		{
			name: "access written as a policy, from an example when the value is not plain",
			file: route + "    allowed_groups: {admins: true}\n    cors_allow_preflight: false\n",
			want: []string{
				`config.yaml:4: routes[0]: Pomerium's "allowed_groups" is not supported by Portcullis: write it as a rule of the route's policy, such as - allow: {or: [{groups: {has: admins}}]}`,
				`config.yaml:5: routes[0]: Pomerium's "cors_allow_preflight" is not supported by Portcullis: false is Portcullis's default: remove it`,
			},
		},
		{
			name: "routing by path",
			file: route + "    prefix: /api\n    regex_rewrite_pattern: ^/api/(.*)$\n",
			want: []string{
				`config.yaml:4: routes[0]: Pomerium's "prefix" is not supported by Portcullis: Portcullis routes by host only: give the route a host of its own`,
				`config.yaml:5: routes[0]: Pomerium's "regex_rewrite_pattern" is not supported by Portcullis: Portcullis forwards the request path as sent, after the path of to if it has one (to: https://upstream/base): remove it`,
			},
		},
		{
			name: "headers",
			file: route + "    set_request_headers: {X-Team: platform}\n",
			want: []string{`config.yaml:4: routes[0]: Pomerium's "set_request_headers" is not supported by Portcullis: Portcullis sets only its own upstream headers (X-Forwarded-*, and on Kubernetes routes Authorization and Impersonate-*); set the others in the upstream, and remove it`},
		},
		{
			name: "a filter whose removal widens access says so",
			file: "jwt_groups_filter: [sre]\n",
			want: []string{`config.yaml:1: Pomerium's "jwt_groups_filter" is not supported by Portcullis: Portcullis passes every group the identity provider gives, as Impersonate-Group on Kubernetes routes, unless kubernetes_groups_filter (names and patterns such as team-*, top-level or per route) keeps fewer, so RBAC bound to a group you filtered out would apply: move the list to kubernetes_groups_filter, then remove it`},
		},
		{
			name: "Pomerium's services",
			file: "services: authorize\ngrpc_address: \":5443\"\n",
			want: []string{
				`config.yaml:1: Pomerium's "services" is not supported by Portcullis: Portcullis runs proxy, authenticate and authorize in one process, with no services between them: remove it`,
				`config.yaml:2: Pomerium's "grpc_address" is not supported by Portcullis: Portcullis runs proxy, authenticate and authorize in one process, with no services between them: remove it`,
			},
		},
		{
			name: "a family by its prefix",
			file: "otel_traces_sampler: always_on\ntracing_future_option: x\n",
			want: []string{
				`config.yaml:1: Pomerium's "otel_traces_sampler" is not supported by Portcullis: Portcullis does not export traces: remove it`,
				`config.yaml:2: Pomerium's "tracing_future_option" is not supported by Portcullis: Portcullis does not export traces: remove it`,
			},
		},
		{
			name: "a Pomerium route key that is a top-level setting here",
			file: route + "    idp_client_id: app-client\n",
			want: []string{`config.yaml:4: routes[0]: Pomerium's "idp_client_id" is not supported by Portcullis: Portcullis signs everyone in with one identity-provider client: set idp_client_id at the top level only`},
		},
		{
			name: "a global default that is a route key here",
			file: "pass_identity_headers: true\n",
			want: []string{`config.yaml:1: Pomerium's "pass_identity_headers" is not supported by Portcullis: Portcullis sets pass_identity_headers per route: set it on each route that needs the headers`},
		},
		{
			name: "at the other level, still Pomerium's",
			file: "prefix: /api\n" + route + "    cookie_secure: true\n",
			want: []string{
				`config.yaml:1: Pomerium's "prefix" is not supported by Portcullis: Portcullis routes by host only: give the route a host of its own`,
				`config.yaml:5: routes[0]: Pomerium's "cookie_secure" is not supported by Portcullis: Portcullis cookies are always Secure (unless authenticate_service_url is plain http, a development setup): remove it`,
			},
		},
		{
			name: "whatever the case, as Pomerium reads keys",
			file: "Cookie_Same_Site: lax\n",
			want: []string{`config.yaml:1: Pomerium's "Cookie_Same_Site" is not supported by Portcullis: Portcullis cookies are always SameSite=Lax, which the identity provider's redirect back needs: remove it`},
		},
		{
			name: "in a base64 route list",
			env:  env{"POLICY": b64("- from: https://app.example.com\n  to: https://upstream.example.com\n  path: /index.html\n")},
			want: []string{`POLICY (decoded) line 3: route 1 ("https://app.example.com"): Pomerium's "path" is not supported by Portcullis: Portcullis routes by host only: give the route a host of its own`},
		},
		{
			name: "in the environment: unset it",
			env:  env{"COOKIE_SECURE": "false", "IDP_QPS": "1.0", "HEADERS": "X-Frame-Options:DENY", "PASS_IDENTITY_HEADERS": "false"},
			want: []string{
				`COOKIE_SECURE: Pomerium's "COOKIE_SECURE" is not supported by Portcullis: Portcullis cookies are always Secure (unless authenticate_service_url is plain http, a development setup): unset it`,
				`IDP_QPS: Pomerium's "IDP_QPS" is not supported by Portcullis: Portcullis takes groups from the identity provider's token (idp_groups_claim), not from a directory sync: unset it`,
				`PASS_IDENTITY_HEADERS: Pomerium's "PASS_IDENTITY_HEADERS" is not supported by Portcullis: false is Portcullis's default, and Portcullis sets pass_identity_headers per route: unset it`,
				`HEADERS: Pomerium's "HEADERS" is not supported by Portcullis: Portcullis passes the upstream's response headers unchanged; set them in the upstream, and unset it`,
			},
		},
		{
			name: "OpenTelemetry's own variables are not Pomerium's",
			env:  env{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_TRACES_EXPORTER": "otlp"},
		},
		{
			name: "not set: nothing asked, nothing ignored",
			file: "cookie_domain:\nautocert: \"\"\n" + route + "    prefix: ~\n",
			env:  env{"COOKIE_DOMAIN": ""},
		},
		{
			name: "presentation keys are accepted",
			file: route + "    name: App\n    description: The team's application\n    logo_url: https://app.example.com/logo.svg\n",
		},
		{
			name: "presentation keys must be text, spelled as Portcullis spells keys",
			file: route + "    name: {first: App}\n    Description: x\n",
			want: []string{
				`config.yaml:4: routes[0].name: want a string, got a mapping`,
				`config.yaml:5: routes[0]: unknown key "Description" (did you mean "description"?)`,
			},
		},
		{
			name: "presentation keys at the top level are no route's",
			file: "description: x\nlogo_url: https://example.com/logo.svg\n",
			want: []string{
				`config.yaml:1: unknown key "description"`,
				`config.yaml:2: Pomerium's "logo_url" is not supported by Portcullis: Portcullis's own pages (sign-in errors, the user page) cannot be branded: remove it`,
			},
		},
		{
			name: "a typo of a Pomerium key is still a typo",
			file: "cookie_secre: x\n",
			want: []string{`config.yaml:1: unknown key "cookie_secre" (did you mean "cookie_secret"?)`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, loadProblems(tc.file, tc.env)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPomeriumMigration loads a Pomerium configuration that uses every
// key of the table: each is refused with what to do, the guide's own
// settings and the presentation keys pass, and no key is "unknown".
func TestPomeriumMigration(t *testing.T) {
	const path = "testdata/pomerium-migration.yaml"
	_, err := Load(path, nil)
	problems := Problems(err)
	var lines []string
	for _, p := range problems {
		lines = append(lines, p.Error())
		if strings.Contains(p.Message, "unknown key") || strings.Contains(p.Message, "did you mean") {
			t.Errorf("%s: want Pomerium's key named, and what to do", p)
		}
		if strings.HasPrefix(p.Key, "policy[0]") {
			t.Errorf("%s: the guide's own route must load", p)
		}
	}
	golden(t, "testdata/pomerium-migration.golden", []byte(strings.Join(lines, "\n")+"\n"))

	// Every key of the table is in the file, at each level of the file
	// Pomerium has it.
	refused := map[place]map[string]bool{atTop: {}, inRoute: {}}
	for _, p := range problems {
		name, _, ok := strings.Cut(strings.TrimPrefix(p.Message, `Pomerium's "`), `"`)
		if !ok {
			continue
		}
		switch {
		case p.Key == "" && !strings.Contains(p.Source, "(decoded)"):
			refused[atTop][name] = true
		case strings.HasPrefix(p.Key, "policy[1]"):
			refused[inRoute][name] = true
		}
	}
	for _, k := range pomeriumKeys {
		if k.prefix || k.use == described {
			continue
		}
		for _, p := range []place{atTop, inRoute} {
			if k.at&p != 0 && !refused[p][k.name] {
				t.Errorf("%s: not refused at %s in %s: add it to the file", k.name, map[place]string{atTop: "the top level", inRoute: "policy[1]"}[p], path)
			}
		}
	}
}

// TestPomeriumEnvironment sets every variable of the table over the
// guide's environment: each is refused, the guide's settings are not.
func TestPomeriumEnvironment(t *testing.T) {
	e := readEnvFile(t, "testdata/guide.env")
	var want []string
	for _, k := range pomeriumKeys {
		if k.at&inEnv != 0 && !k.prefix {
			name := strings.ToUpper(k.name)
			e[name] = "x"
			want = append(want, name)
		}
	}
	_, err := Load("", e.lookup)
	var got []string
	for _, p := range Problems(err) {
		if !strings.HasPrefix(p.Message, `Pomerium's "`+p.Source+`" is not supported`) {
			t.Errorf("%s: want Pomerium's variable named", p)
		}
		got = append(got, p.Source)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refused variables (-want +got):\n%s", diff)
	}
}
