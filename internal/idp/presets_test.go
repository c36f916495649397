package idp

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestPresets checks the Options each preset produces from the settings a
// person gives: the defaults it fills in and the URL fixes it makes.
func TestPresets(t *testing.T) {
	const redirect = "https://auth.example.com/oauth2/callback"
	base := func(provider, url string) Options {
		return Options{Provider: provider, ProviderURL: url, ClientID: "client", ClientSecret: "secret", RedirectURL: redirect}
	}
	with := func(o Options, f func(*Options)) Options { f(&o); return o }
	tests := []struct {
		name string
		in   Options
		want Options
	}{
		{
			name: "oidc keeps the URL as written",
			in:   base("oidc", "http://127.0.0.1:5556/dex/"),
			want: with(base("oidc", "http://127.0.0.1:5556/dex/"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile", "offline_access"}
				o.GroupsClaim = "groups"
			}),
		},
		{
			name: "google: fixed issuer, offline access by auth params",
			in:   base("google", ""),
			want: with(base("google", "https://accounts.google.com"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile"}
				o.GroupsClaim = "groups"
				o.RequestParams = map[string]string{"access_type": "offline", "prompt": "select_account consent"}
			}),
		},
		{
			name: "google: request params override the preset's key by key",
			in: with(base("google", "https://accounts.google.com/"), func(o *Options) {
				o.RequestParams = map[string]string{"prompt": "consent", "hd": "example.com"}
			}),
			want: with(base("google", "https://accounts.google.com"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile"}
				o.GroupsClaim = "groups"
				o.RequestParams = map[string]string{"access_type": "offline", "prompt": "consent", "hd": "example.com"}
			}),
		},
		{
			name: "azure: tenant v2.0 URL, trailing slash dropped",
			in:   base("azure", "https://login.microsoftonline.com/0b1c2d3e-aaaa-bbbb-cccc-1234567890ab/v2.0/"),
			want: with(base("azure", "https://login.microsoftonline.com/0b1c2d3e-aaaa-bbbb-cccc-1234567890ab/v2.0"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile", "offline_access"}
				o.GroupsClaim = "groups"
				o.RequestParams = map[string]string{"prompt": "select_account"}
			}),
		},
		{
			name: "okta: authorization server URL",
			in:   base("okta", "https://example.okta.com/oauth2/default"),
			want: with(base("okta", "https://example.okta.com/oauth2/default"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile", "offline_access"}
				o.GroupsClaim = "groups"
			}),
		},
		{
			name: "auth0: issuer gets its trailing slash, groups in a namespaced claim",
			in:   base("auth0", "https://example.us.auth0.com"),
			want: with(base("auth0", "https://example.us.auth0.com/"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile", "offline_access"}
				o.GroupsClaim = "https://portcullis/groups"
			}),
		},
		{
			name: "gitlab: gitlab.com by default, no offline_access",
			in:   base("gitlab", ""),
			want: with(base("gitlab", "https://gitlab.com"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile"}
				o.GroupsClaim = "groups"
			}),
		},
		{
			name: "gitlab: self-managed",
			in:   base("gitlab", "https://gitlab.example.com/"),
			want: with(base("gitlab", "https://gitlab.example.com"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile"}
				o.GroupsClaim = "groups"
			}),
		},
		{
			name: "onelogin: the shared endpoint by default, with offline_access",
			in:   base("onelogin", ""),
			want: with(base("onelogin", "https://openid-connect.onelogin.com/oidc"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile", "groups", "offline_access"}
				o.GroupsClaim = "groups"
			}),
		},
		{
			name: "onelogin: version 2 knows no offline_access",
			in:   base("onelogin", "https://example.onelogin.com/oidc/2"),
			want: with(base("onelogin", "https://example.onelogin.com/oidc/2"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile", "groups"}
				o.GroupsClaim = "groups"
			}),
		},
		{
			name: "ping: PingOne environment",
			in:   base("ping", "https://auth.pingone.com/5f1c6a1e-0000-4000-8000-000000000000/as"),
			want: with(base("ping", "https://auth.pingone.com/5f1c6a1e-0000-4000-8000-000000000000/as"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile", "offline_access"}
				o.GroupsClaim = "groups"
			}),
		},
		{
			name: "cognito: groups in cognito:groups",
			in:   base("cognito", "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123/"),
			want: with(base("cognito", "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile"}
				o.GroupsClaim = "cognito:groups"
			}),
		},
		{
			name: "keycloak: realm URL, no offline token",
			in:   base("keycloak", "https://sso.example.com/realms/staff"),
			want: with(base("keycloak", "https://sso.example.com/realms/staff"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile"}
				o.GroupsClaim = "groups"
			}),
		},
		{
			name: "github: github.com, team scopes, no groups claim",
			in:   base("github", ""),
			want: with(base("github", "https://github.com"), func(o *Options) {
				o.Scopes = []string{"user:email", "read:org"}
			}),
		},
		{
			name: "builtin",
			in:   base("builtin", "https://auth.example.com/.portcullis/idp"),
			want: with(base("builtin", "https://auth.example.com/.portcullis/idp"), func(o *Options) {
				o.Scopes = []string{"openid", "email", "profile", "offline_access"}
				o.GroupsClaim = "groups"
			}),
		},
		{
			name: "the person's scopes and groups claim win",
			in: with(base("cognito", "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"), func(o *Options) {
				o.Scopes = []string{"openid", "email"}
				o.GroupsClaim = "custom:teams"
			}),
			want: with(base("cognito", "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"), func(o *Options) {
				o.Scopes = []string{"openid", "email"}
				o.GroupsClaim = "custom:teams"
			}),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolve(tc.in)
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			if got.HTTPClient == nil || got.HTTPClient.Timeout == 0 {
				t.Errorf("HTTPClient: got %v, want a client with a timeout", got.HTTPClient)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Options{}, "HTTPClient")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if _, err := New(tc.in); err != nil {
				t.Errorf("New: %v", err)
			}
		})
	}
}

// TestPresetsDoNotShareDefaults: a provider's defaults are copied, so one
// provider changing its Options cannot change another's.
func TestPresetsDoNotShareDefaults(t *testing.T) {
	a, err := resolve(Options{Provider: "google", ClientID: "c", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	a.Scopes[0], a.RequestParams["prompt"] = "changed", "changed"
	b, err := resolve(Options{Provider: "google", ClientID: "c", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Scopes[0] != "openid" || b.RequestParams["prompt"] != "select_account consent" {
		t.Errorf("got scopes %v, params %v: want the preset's defaults untouched", b.Scopes, b.RequestParams)
	}
}

func TestPresetErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      Options
		wantErr string
	}{
		{"unknown provider", Options{Provider: "facebook", ClientID: "c"}, `IDP_PROVIDER: "facebook" is not supported: want one of auth0, azure, builtin, cognito, github, gitlab, google, keycloak, oidc, okta, onelogin, ping`},
		{"oidc needs a URL", Options{Provider: "oidc", ClientID: "c"}, `IDP_PROVIDER_URL: not set, and identity provider "oidc" needs it: the issuer URL`},
		{"azure needs a tenant", Options{Provider: "azure", ClientID: "c", ClientSecret: "s"}, "IDP_PROVIDER_URL: not set, and identity provider \"azure\" needs it: https://login.microsoftonline.com/{tenant-id}/v2.0"},
		{"azure common", Options{Provider: "azure", ProviderURL: "https://login.microsoftonline.com/common/v2.0", ClientID: "c", ClientSecret: "s"}, `"common" accepts accounts of any tenant`},
		{"azure organizations", Options{Provider: "azure", ProviderURL: "https://login.microsoftonline.com/Organizations/v2.0", ClientID: "c", ClientSecret: "s"}, "accepts accounts of any tenant"},
		{"azure v1", Options{Provider: "azure", ProviderURL: "https://login.microsoftonline.com/0b1c2d3e-aaaa-bbbb-cccc-1234567890ab", ClientID: "c", ClientSecret: "s"}, "want https://login.microsoftonline.com/{tenant-id}/v2.0"},
		{"azure domain", Options{Provider: "azure", ProviderURL: "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0", ClientID: "c", ClientSecret: "s"}, "is a domain name: use the tenant ID"},
		{"cognito needs a pool", Options{Provider: "cognito", ClientID: "c"}, "https://cognito-idp.{region}.amazonaws.com/{user-pool-id}"},
		{"not a URL", Options{Provider: "okta", ProviderURL: "example.okta.com", ClientID: "c"}, `IDP_PROVIDER_URL: "example.okta.com" is not an http(s) URL`},
		{"no client ID", Options{Provider: "google", ClientSecret: "s"}, "IDP_CLIENT_ID: not set"},
		{"google needs a client secret", Options{Provider: "google", ClientID: "c"}, `IDP_CLIENT_SECRET: not set, and identity provider "google" refuses a sign-in without`},
		{"github needs a client secret", Options{Provider: "github", ClientID: "c"}, `IDP_CLIENT_SECRET: not set`},
		{"github with a groups claim", Options{Provider: "github", ClientID: "c", ClientSecret: "s", GroupsClaim: "groups"}, "IDP_GROUPS_CLAIM: does not apply"},
	}
	for _, name := range reservedParams {
		tests = append(tests, struct {
			name    string
			in      Options
			wantErr string
		}{"request param " + name, Options{Provider: "google", ClientID: "c", ClientSecret: "s", RequestParams: map[string]string{name: "x"}}, `IDP_REQUEST_PARAMS: "` + name + `" cannot be set`})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
			if cerr := Check(tc.in); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Check: got %v, want what New said: %v", cerr, err)
			}
		})
	}
}

// TestPresetErrorsAllAtOnce: every problem is reported, each naming its
// setting, so that the configuration check can put each at its line.
func TestPresetErrorsAllAtOnce(t *testing.T) {
	err := Check(Options{Provider: "azure", ProviderURL: "https://login.microsoftonline.com/common/v2.0", RequestParams: map[string]string{"state": "x"}})
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var se *SettingError
		if !errors.As(e, &se) {
			t.Fatalf("%v is not a *SettingError", e)
		}
		got = append(got, se.Setting)
	}
	want := []string{"IDP_PROVIDER_URL", "IDP_CLIENT_ID", "IDP_CLIENT_SECRET", "IDP_REQUEST_PARAMS"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("settings named (-want +got):\n%s", diff)
	}
}

// TestIssuer: the issuer URL of kube-apiserver's default user name prefix
// is the one sign-in resolves, the preset's own when none is set.
func TestIssuer(t *testing.T) {
	for _, tc := range []struct{ provider, url, want string }{
		{"google", "", "https://accounts.google.com"},
		{"google", "https://accounts.google.com/", "https://accounts.google.com"},
		{"github", "", "https://github.com"},
		{"oidc", "http://127.0.0.1:5556/dex/", "http://127.0.0.1:5556/dex/"},
		{"oidc", "", ""},
		{"auth0", "https://example.auth0.com", "https://example.auth0.com/"},
		{"nonsense", "https://example.com", ""},
	} {
		if got := Issuer(tc.provider, tc.url); got != tc.want {
			t.Errorf("Issuer(%q, %q) = %q, want %q", tc.provider, tc.url, got, tc.want)
		}
		if tc.want == "" {
			continue
		}
		if o, err := resolve(Options{Provider: tc.provider, ProviderURL: tc.url, ClientID: "c", ClientSecret: "s"}); err != nil || o.ProviderURL != tc.want {
			t.Errorf("%s: resolve gives %q (%v), Issuer %q", tc.provider, o.ProviderURL, err, tc.want)
		}
	}
}
