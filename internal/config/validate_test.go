package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCheckInCode checks Options built in code, as the server or a test
// might, with Check and no checks: problems name YAML keys and routes by
// index, with no source.
func TestCheckInCode(t *testing.T) {
	u := func(s string) *url.URL { return mustURL(t, s) }
	good := func() Options {
		o := Defaults()
		o.Routes = []Route{{From: u("https://a.example.com"), To: []*url.URL{u("https://b.example.com")}}}
		return o
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		t.Fatal(err)
	}
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	certPEM := []byte(readTestdata(t, "guide-cert.pem"))

	tests := []struct {
		name   string
		mutate func(o *Options)
		want   []string
	}{
		{
			name:   "defaults with a plain route",
			mutate: func(o *Options) {},
		},
		{
			name: "secrets and signing key",
			mutate: func(o *Options) {
				o.GenerateMissingSecrets()
				o.SigningKey = []byte(newECKeyPEM(t))
			},
		},
		{
			name:   "zero Options",
			mutate: func(o *Options) { *o = Options{} },
			want: []string{
				`address: "" is not a listen address: want [host]:port, such as :443`,
				`cookie_name: "" is not a valid cookie name: want letters, digits, - and _ only, such as _pomerium`,
				`cookie_expire: 0s is not positive: want a duration such as 14h`,
				`limit_connections: 0 is not a limit: want a whole number from 1 to 1073741824 (config.Defaults has the defaults)`,
				`limit_connections_per_client: 0 is not a limit: want a whole number from 1 to 1073741824 (config.Defaults has the defaults)`,
				`limit_sign_ins_per_minute: 0 is not a limit: want a whole number from 1 to 1073741824 (config.Defaults has the defaults)`,
				`limit_logins_per_minute: 0 is not a limit: want a whole number from 1 to 1073741824 (config.Defaults has the defaults)`,
				`limit_device_polls_per_minute: 0 is not a limit: want a whole number from 1 to 1073741824 (config.Defaults has the defaults)`,
				`limit_pending_sign_ins: 0 is not a limit: want a whole number from 1 to 1073741824 (config.Defaults has the defaults)`,
				`limit_sessions_per_person: 0 is not a limit: want a whole number from 1 to 1073741824 (config.Defaults has the defaults)`,
				`limit_sign_in_body_bytes: 0 is not a limit: want a whole number from 1 to 1073741824 (config.Defaults has the defaults)`,
				`log_format: "" is not a log format: want json or text`,
			},
		},
		{
			name: "top-level values",
			mutate: func(o *Options) {
				o.MetricsAddress = ":443"
				o.AuthenticateServiceURL = u("https://auth.example.com/sign-in")
				o.CookieSecret = make([]byte, 31)
				o.SharedSecret = make([]byte, 16)
				o.SigningKey = edPEM
				o.IDPProviderURL = "ftp://idp.example.com"
				o.IDPScopes = []string{"openid email"}
				o.LogLevel = 2
				o.AccessTokenLifetime = 10 * time.Second
				o.DeviceCodeLifetime = 2 * time.Hour
				o.DevicePollInterval = 0 // built in code: the default
			},
			want: []string{
				`metrics_address: ":443" is also address: want a port of its own, such as :9090`,
				`authenticate_service_url: "https://auth.example.com/sign-in" has a path: want only scheme, host and port, as in https://host[:port]`,
				`cookie_secret: decodes to 31 bytes, want 32: generate one with "head -c32 /dev/urandom | base64"`,
				`access_token_lifetime: 10s is too short: want at least 30s, such as 5m (portcullis-cli renews a token when half its life is left)`,
				`device_code_lifetime: 2h0m0s is out of range: want a duration from 30s to 1h, such as 10m`,
				`shared_secret: decodes to 16 bytes, want at least 32: generate one with "head -c32 /dev/urandom | base64"`,
				`signing_key: an Ed25519 key: want an EC or RSA private key, such as from "openssl ecparam -genkey -name prime256v1 -noout"`,
				`idp_provider_url: "ftp://idp.example.com" has scheme "ftp": want http or https, as in https://host[:port]`,
				`idp_scopes: scope "openid email" is not valid: want scopes without spaces, separated by commas, such as openid,email`,
				`log_level: "info+2" is not a log level: want debug, info, warn or error`,
			},
		},
		{
			name: "a device poll interval as long as the code",
			mutate: func(o *Options) {
				o.DeviceCodeLifetime, o.DevicePollInterval = time.Minute, time.Minute
			},
			want: []string{
				`device_poll_interval: 1m0s is not shorter than device_code_lifetime (1m0s): a device would never poll before its code expired`,
			},
		},
		{
			name: "routes",
			mutate: func(o *Options) {
				o.Routes = []Route{
					{},
					{
						From:                              u("https://a.example.com/path"),
						To:                                []*url.URL{u("https://b.example.com"), u("/relative"), nil},
						KubernetesServiceAccountToken:     "token",
						KubernetesServiceAccountTokenFile: "/token",
						Timeout:                           -time.Second,
						TLSCustomCA:                       []byte("not pem"),
						TLSCustomCAFile:                   "ca.pem",
						TLSClientKey:                      []byte("key"),
					},
					{From: u("https://a.example.com"), To: []*url.URL{u("https://b.example.com")}},
					{From: u("https://A.example.com:443"), To: []*url.URL{u("https://b.example.com")}, TLSClientCert: certPEM, TLSClientKey: certPEM},
				}
			},
			want: []string{
				`routes[0]: no from: want the route's public URL, such as from: https://k8s.example.com`,
				`routes[0]: no to: want the upstream URL, such as to: https://kubernetes.default.svc`,
				`routes[1].from: "https://a.example.com/path" has a path: want only scheme, host and port, as in https://host[:port]`,
				`routes[1].to: "/relative" is not an absolute URL: want https://host[:port]`,
				`routes[1].to: an empty URL: want https://host[:port]`,
				`routes[1].kubernetes_service_account_token_file: set together with kubernetes_service_account_token: set only one of them (the _file form is re-read when the token rotates)`,
				`routes[1].tls_custom_ca_file: holds no PEM certificate: want PEM text starting with "-----BEGIN CERTIFICATE-----" (inline values are the base64 of that text)`,
				`routes[1].tls_client_key: set without tls_client_cert: set both, or neither`,
				`routes[1].timeout: -1s is negative: want 0 (no limit) or a positive duration such as 30s`,
				`routes[3].from: "https://A.example.com:443" answers the same requests as "https://a.example.com", the from of routes[2] (routes are chosen by host, whatever the letter case, a trailing dot or the scheme): give each route a host of its own`,
				`routes[3].tls_client_key: not a PEM private key: want PEM text starting with "-----BEGIN PRIVATE KEY-----" (inline values are the base64 of that text)`,
			},
		},
		{
			name: "policy built in code",
			mutate: func(o *Options) {
				o.Routes[0].Policy = &Policy{Rules: []PolicyRule{
					{Action: "allow", Root: PolicyExpr{Op: "or", Children: []PolicyExpr{{Criterion: "email", Value: "a@example.com"}}}},
					{Action: "permit", Root: PolicyExpr{Op: "xor"}},
					{Action: "deny", Root: PolicyExpr{Op: "and", Children: []PolicyExpr{{Value: 1}}}},
				}}
			},
			want: []string{
				`routes[0].policy: rule 2: action "permit": want allow or deny`,
				`routes[0].policy: rule 2: unknown operator "xor": want and, or, not or nor`,
				`routes[0].policy: rule 3: a criterion with no name: want one such as email: {is: user@example.com}`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good()
			tc.mutate(&o)
			if diff := cmp.Diff(tc.want, messages(o.Check())); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
