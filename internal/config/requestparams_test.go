package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/idp"
)

func TestIDPRequestParams(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  env
		want map[string]string
	}{
		{
			name: "env JSON object, as Pomerium takes it",
			env:  env{"IDP_REQUEST_PARAMS": `{"prompt":"select_account","login_hint":"someone@example.com"}`},
			want: map[string]string{"prompt": "select_account", "login_hint": "someone@example.com"},
		},
		{
			name: "env JSON object with spaces and escapes",
			env:  env{"IDP_REQUEST_PARAMS": ` { "prompt" : "select_account consent", "ui_locales": "fr\u002dCA" } `},
			want: map[string]string{"prompt": "select_account consent", "ui_locales": "fr-CA"},
		},
		{
			name: "env comma list",
			env:  env{"IDP_REQUEST_PARAMS": "prompt=select_account consent, hd=example.com,,"},
			want: map[string]string{"prompt": "select_account consent", "hd": "example.com"},
		},
		{
			name: "env comma list value with =",
			env:  env{"IDP_REQUEST_PARAMS": "acr_values=urn:a=b"},
			want: map[string]string{"acr_values": "urn:a=b"},
		},
		{
			name: "file mapping",
			file: "idp_request_params:\n  prompt: login\n  max_age: 3600\n",
			want: map[string]string{"prompt": "login", "max_age": "3600"},
		},
		{
			name: "file JSON string",
			file: `idp_request_params: '{"prompt":"login"}'` + "\n",
			want: map[string]string{"prompt": "login"},
		},
		{
			name: "file comma string",
			file: "idp_request_params: prompt=login,domain_hint=example.com\n",
			want: map[string]string{"prompt": "login", "domain_hint": "example.com"},
		},
		{
			name: "env wins over the file, as a whole",
			file: "idp_request_params:\n  prompt: login\n  hd: example.com\n",
			env:  env{"IDP_REQUEST_PARAMS": "prompt=consent"},
			want: map[string]string{"prompt": "consent"},
		},
		{name: "empty JSON object", env: env{"IDP_REQUEST_PARAMS": "{}"}, want: nil},
		{name: "empty mapping", file: "idp_request_params: {}\n", want: nil},
		{name: "unset", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := loadYAML(t, tc.file, tc.env)
			if diff := cmp.Diff(tc.want, o.IDPRequestParams); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestIDPRequestParamsProblems(t *testing.T) {
	const hint = `want a JSON object of strings such as {"prompt":"select_account"}, or a comma list such as prompt=select_account,login_hint=someone@example.com`
	tests := []struct {
		name string
		file string
		env  env
		want []string
	}{
		{
			name: "state is the sign-in's own",
			env:  env{"IDP_REQUEST_PARAMS": `{"state":"x"}`},
			want: []string{`IDP_REQUEST_PARAMS: "state" cannot be set: Portcullis sets it itself, to bind the sign-in to the browser that started it`},
		},
		{
			name: "scope goes in IDP_SCOPES",
			env:  env{"IDP_REQUEST_PARAMS": "scope=openid groups"},
			want: []string{`IDP_REQUEST_PARAMS: "scope" cannot be set here: set IDP_SCOPES instead`},
		},
		{
			name: "file problems name the line and the parameter",
			file: "idp_request_params:\n  prompt: login\n  redirect_uri: https://evil.example\n  scope: openid\n",
			want: []string{
				`config.yaml:3: idp_request_params.redirect_uri: "redirect_uri" cannot be set: Portcullis sets it itself, to bind the sign-in to the browser that started it`,
				`config.yaml:4: idp_request_params.scope: "scope" cannot be set here: set idp_scopes instead`,
			},
		},
		{
			name: "not key=value",
			env:  env{"IDP_REQUEST_PARAMS": "prompt"},
			want: []string{`IDP_REQUEST_PARAMS: "prompt" is not key=value: ` + hint},
		},
		{
			name: "a JSON number",
			env:  env{"IDP_REQUEST_PARAMS": `{"max_age":3600}`},
			want: []string{`IDP_REQUEST_PARAMS: not a JSON object of strings (the value of "max_age" is not a string): ` + hint},
		},
		{
			name: "malformed JSON",
			env:  env{"IDP_REQUEST_PARAMS": `{"prompt":"login"`},
			want: []string{`IDP_REQUEST_PARAMS: not a JSON object of strings (it ends before its closing }): ` + hint},
		},
		{
			name: "JSON name twice",
			env:  env{"IDP_REQUEST_PARAMS": `{"prompt":"login","prompt":"none"}`},
			want: []string{`IDP_REQUEST_PARAMS: not a JSON object of strings ("prompt" is set twice): ` + hint},
		},
		{
			name: "comma list name twice",
			env:  env{"IDP_REQUEST_PARAMS": "prompt=login,prompt=none"},
			want: []string{`IDP_REQUEST_PARAMS: "prompt" is set twice: keep one`},
		},
		{
			name: "no name",
			env:  env{"IDP_REQUEST_PARAMS": "=login"},
			want: []string{`IDP_REQUEST_PARAMS: a parameter has no name: ` + hint},
		},
		{
			name: "a name with a space",
			env:  env{"IDP_REQUEST_PARAMS": `{"login hint":"a"}`},
			want: []string{`IDP_REQUEST_PARAMS: "login hint" is not a parameter name: want a name such as prompt`},
		},
		{
			name: "file value is a list",
			file: "idp_request_params:\n  prompt: [login]\n",
			want: []string{`config.yaml:2: idp_request_params.prompt: want a string, got a list`},
		},
		{
			name: "file value is null",
			file: "idp_request_params:\n  prompt:\n",
			want: []string{`config.yaml:2: idp_request_params.prompt: no value: give prompt a value, or leave it out`},
		},
		{
			name: "file value is a list of params",
			file: "idp_request_params: [prompt=login]\n",
			want: []string{`config.yaml:1: idp_request_params: want a mapping of parameter names to values, got a list`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = "config.yaml"
			}
			o, err := load(path, tc.env.lookup, configFile(path, tc.file))
			if err == nil {
				t.Fatalf("Load succeeded with %v, want problems:\n%s", o.IDPRequestParams, strings.Join(tc.want, "\n"))
			}
			if diff := cmp.Diff(tc.want, messages(err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReservedRequestParamsMatchIDP: the parameters config refuses are
// those the idp package refuses, so that a bad IDP_REQUEST_PARAMS is
// reported with its line when the config is loaded, not only when the
// server builds its provider.
func TestReservedRequestParamsMatchIDP(t *testing.T) {
	// The authorization request parameters of OAuth 2.0 and OpenID Connect
	// (IANA "OAuth Parameters"), and those of well-known providers.
	candidates := append([]string{
		"prompt", "login_hint", "max_age", "ui_locales", "acr_values", "display", "claims", "claims_locales",
		"id_token_hint", "registration", "access_type", "include_granted_scopes", "hd", "domain_hint",
		"audience", "resource", "organization", "connection", "allow_signup", "login", "code_verifier",
		"grant_type", "authorization_details", "dpop_jkt",
	}, reservedRequestParams...)
	for _, name := range candidates {
		_, idpErr := idp.New(idp.Options{Provider: "google", ClientID: "c", ClientSecret: "s", RequestParams: map[string]string{name: "x"}})
		_, loadErr := load("", env{"IDP_REQUEST_PARAMS": name + "=x"}.lookup, nil)
		if (idpErr != nil) != (loadErr != nil) {
			t.Errorf("%s: idp.New says %v, Load says %v: want both to refuse it or both to take it", name, idpErr, loadErr)
		}
	}
}
