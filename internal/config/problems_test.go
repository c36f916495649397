package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// problemCase is a bad configuration and the full text of every problem
// Load must report for it. It runs in its own working directory, with the
// file (if any) at config.yaml.
type problemCase struct {
	name  string
	file  string            // config.yaml; "" for no file
	files map[string]string // other files in the working directory
	env   env
	want  []string
}

// problemCases are TestLoadProblems' cases, and seeds for FuzzLoad.
func problemCases(tb testing.TB) []problemCase {
	certPEM := readTestdata(tb, "guide-cert.pem")
	keyPEM := readTestdata(tb, "guide-key.pem")
	otherKeyPEM := newECKeyPEM(tb)
	// A route that is fine, to put bad keys next to.
	const okRoute = "  - from: https://k8s.example.com\n    to: https://kubernetes.default.svc\n"

	return []problemCase{
		{
			name: "malformed YAML names the line",
			file: "address: \":443\"\nroutes:\n  - from: https://a.example.com\n   to: x\n",
			// yaml.v3 names the line where the broken list starts.
			want: []string{`config.yaml:3: malformed YAML: did not find expected '-' indicator`},
		},
		{
			name: "file is not a mapping",
			file: "- address: :443\n",
			want: []string{`config.yaml:1: want a mapping of settings such as address: ":443", got a list`},
		},
		{
			name: "unknown top-level key with a suggestion",
			file: "adress: \":443\"\n",
			want: []string{`config.yaml:1: unknown key "adress" (did you mean "address"?)`},
		},
		{
			name: "upper-case key is suggested in lower case",
			file: "COOKIE_SECRET_FILE: /run/secret\n",
			want: []string{`config.yaml:1: unknown key "COOKIE_SECRET_FILE" (did you mean "cookie_secret_file"?)`},
		},
		{
			name: "route key at the top level",
			file: "from: https://k8s.example.com\n",
			want: []string{`config.yaml:1: unknown key "from" at the top level (it is a route key: put the route in a list under routes:)`},
		},
		{
			name: "unknown route key with a suggestion",
			file: "routes:\n" + okRoute + "    tls_skip_verfy: true\n",
			want: []string{`config.yaml:4: routes[0]: unknown key "tls_skip_verfy" (did you mean "tls_skip_verify"?)`},
		},
		{
			name: "top-level key in a route",
			file: "routes:\n" + okRoute + "    cookie_name: x\n",
			want: []string{`config.yaml:4: routes[0]: unknown key "cookie_name" in a route (it is a top-level setting)`},
		},
		{
			name: "key set twice",
			file: "address: \":443\"\nlog_level: info\naddress: \":8443\"\n",
			want: []string{`config.yaml:3: "address" is set twice (first at line 1): keep one`},
		},
		{
			name: "wrong type: boolean",
			file: "routes:\n" + okRoute + "    allow_spdy: \"maybe\"\n",
			want: []string{`config.yaml:4: routes[0].allow_spdy: "maybe" is not a boolean: want true or false`},
		},
		{
			name: "wrong type: list for a string",
			file: "address: [\":443\"]\n",
			want: []string{`config.yaml:1: address: want a string, got a list`},
		},
		{
			name: "bad duration",
			file: "cookie_expire: 14 hours\nroutes:\n" + okRoute + "    timeout: 30\n",
			want: []string{
				`config.yaml:1: cookie_expire: "14 hours" is not a duration: want a Go duration such as 30s, 5m or 1h30m`,
				`config.yaml:5: routes[0].timeout: "30" is not a duration: want a Go duration such as 30s, 5m or 1h30m`,
			},
		},
		{
			name: "route with no from",
			file: "routes:\n  - to: https://kubernetes.default.svc\n",
			want: []string{`config.yaml:2: routes[0]: no from: want the route's public URL, such as from: https://k8s.example.com`},
		},
		{
			name: "route with no to",
			file: "policy:\n  - from: https://k8s.example.com\n",
			want: []string{`config.yaml:2: policy[0]: no to: want the upstream URL, such as to: https://kubernetes.default.svc`},
		},
		{
			name: "to is not an absolute URL",
			file: "routes:\n  - from: https://k8s.example.com\n    to: not a url\n",
			want: []string{`config.yaml:3: routes[0].to: "not a url" is not an absolute URL: want https://host[:port]`},
		},
		{
			name: "bad URLs in from and in a list of to",
			file: "routes:\n  - from: ftp://k8s.example.com\n    to:\n      - https://ok.example.com\n      - http://[::1\n" +
				"  - from: https://k8s.example.com/api\n    to: https://kubernetes.default.svc#frag\n",
			want: []string{
				`config.yaml:2: routes[0].from: "ftp://k8s.example.com" has scheme "ftp": want http or https, as in https://host[:port]`,
				`config.yaml:5: routes[0].to[1]: "http://[::1" is not a URL (missing ']' in host): want https://host[:port]`,
				`config.yaml:6: routes[1].from: "https://k8s.example.com/api" has a path: want only scheme, host and port, as in https://host[:port]`,
				`config.yaml:7: routes[1].to: "https://kubernetes.default.svc#frag" has a fragment: want https://host[:port][/path]`,
			},
		},
		{
			name: "credentials in a URL are not repeated",
			file: "routes:\n  - from: https://k8s.example.com\n    to: https://admin:hunter2@kubernetes.default.svc\n",
			want: []string{`config.yaml:3: routes[0].to: the URL holds a user name or password: want https://host[:port] with no credentials`},
		},
		{
			name: "duplicate from, across policy and routes",
			file: "policy:\n" + okRoute + "routes:\n  - from: https://K8S.example.com:443/\n    to: https://other.example.com\n",
			want: []string{`config.yaml:5: routes[0].from: "https://K8S.example.com:443/" answers the same requests as "https://k8s.example.com", the from of policy[0] (config.yaml:2) (routes are chosen by host, whatever the letter case, a trailing dot or the scheme): give each route a host of its own`},
		},
		{
			name: "both service account token and token file",
			file: "routes:\n" + okRoute + "    kubernetes_service_account_token: abc\n    kubernetes_service_account_token_file: /var/run/token\n",
			want: []string{`config.yaml:5: routes[0].kubernetes_service_account_token_file: set together with kubernetes_service_account_token: set only one of them (the _file form is re-read when the token rotates)`},
		},
		{
			name:  "both tls_custom_ca and its file",
			file:  "routes:\n" + okRoute + "    tls_custom_ca_file: ca.pem\n    tls_custom_ca: " + b64(certPEM) + "\n",
			files: map[string]string{"ca.pem": certPEM},
			want:  []string{`config.yaml:5: routes[0].tls_custom_ca: set together with tls_custom_ca_file (line 4): set only one of them`},
		},
		{
			name:  "client certificate without key, custom CA not PEM",
			file:  "routes:\n" + okRoute + "    tls_client_cert_file: client.pem\n    tls_custom_ca: " + b64("hello") + "\n",
			files: map[string]string{"client.pem": certPEM},
			want: []string{
				`config.yaml:4: routes[0].tls_client_cert_file: set without tls_client_key: set both, or neither`,
				`config.yaml:5: routes[0].tls_custom_ca: holds no PEM certificate: want PEM text starting with "-----BEGIN CERTIFICATE-----" (inline values are the base64 of that text)`,
			},
		},
		{
			name: "a shared session store needs a connection string and shared secrets",
			file: "databroker_storage_type: postgres\n",
			want: []string{
				`config.yaml: databroker_storage_connection_string: is not set, and databroker_storage_type is postgres: give the database's connection string, such as postgres://portcullis:PASSWORD@db.example.com:5432/portcullis?sslmode=verify-full`,
				`config.yaml: cookie_secret: is not set, and databroker_storage_type is postgres: replicas that share sessions must share this secret, so set it to the same value on every replica (generate one with "head -c32 /dev/urandom | base64")`,
				`config.yaml: shared_secret: is not set, and databroker_storage_type is postgres: replicas that share sessions must share this secret, so set it to the same value on every replica (generate one with "head -c32 /dev/urandom | base64")`,
			},
		},
		{
			name: "session store settings: a bad type, a bad connection string (its password never shown), a grace that is not positive",
			env: env{"DATABROKER_STORAGE_TYPE": "Postgres", "DATABROKER_STORAGE_CONNECTION_STRING": "postgres://portcullis:hunter2@db:notaport/portcullis",
				"DATABROKER_STORAGE_GRACE": "0s", "COOKIE_SECRET": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "SHARED_SECRET": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
			want: []string{
				`DATABROKER_STORAGE_CONNECTION_STRING: parsing the database connection string: invalid port`,
				`DATABROKER_STORAGE_GRACE: 0s is not positive: want a duration such as 5m`,
			},
		},
		{
			name: "an unknown session store",
			file: "databroker_storage_type: redis\n",
			want: []string{
				`config.yaml:1: databroker_storage_type: "redis" is not a session store: want memory (one replica) or postgres (shared by replicas)`,
			},
		},
		{
			name: "a connection string without a shared store",
			env:  env{"DATABROKER_STORAGE_CONNECTION_STRING": "postgres://db/portcullis"},
			want: []string{
				`DATABROKER_STORAGE_CONNECTION_STRING: is set, but DATABROKER_STORAGE_TYPE is "memory": set it to postgres to keep sessions in that database, or remove this`,
			},
		},
		{
			name: "unreadable files name the path and the OS error",
			file: "cookie_secret_file: /nonexistent/cookie\nroutes:\n" + okRoute + "    tls_client_key_file: missing-key.pem\n",
			env:  env{"CERTIFICATE_FILE": "missing.pem"},
			want: []string{
				`config.yaml:1: cookie_secret_file: cannot read "/nonexistent/cookie": no such file or directory`,
				`config.yaml:5: routes[0].tls_client_key_file: cannot read "missing-key.pem": no such file or directory`,
				`CERTIFICATE_FILE: cannot read "missing.pem": no such file or directory`,
			},
		},
		{
			name:  "oversized file",
			env:   env{"SIGNING_KEY_FILE": "big.pem"},
			files: map[string]string{"big.pem": strings.Repeat("x", 1<<20+1)},
			want:  []string{`SIGNING_KEY_FILE: cannot read "big.pem": larger than 1048576 bytes, which is too large for a key, certificate or secret`},
		},
		{
			name: "cookie secret of 16 bytes",
			env:  env{"COOKIE_SECRET": b64(strings.Repeat("x", 16))},
			want: []string{`COOKIE_SECRET: decodes to 16 bytes, want 32: generate one with "head -c32 /dev/urandom | base64"`},
		},
		{
			name:  "cookie secret file of 16 bytes",
			env:   env{"COOKIE_SECRET_FILE": "cookie"},
			files: map[string]string{"cookie": b64(strings.Repeat("x", 16)) + "\n"},
			want:  []string{`COOKIE_SECRET_FILE: decodes to 16 bytes, want 32: generate one with "head -c32 /dev/urandom | base64"`},
		},
		{
			name: "bad base64",
			env: env{
				"SHARED_SECRET": "not base64!", // white space is dropped: byte 9 is "!"
				"CERTIFICATE":   certPEM,
				"POLICY":        "- from: https://k8s.example.com",
			},
			want: []string{
				`CERTIFICATE: holds PEM text, not its base64: want the base64 of a PEM file, such as the output of "base64 -w0 cert.pem", or set CERTIFICATE_FILE to the file's path`,
				`SHARED_SECRET: not valid base64 (illegal base64 data at input byte 9): generate one with "head -c32 /dev/urandom | base64"`,
				`POLICY: not valid base64 (illegal base64 data at input byte 0): want the base64 of a YAML list of routes, such as the output of "base64 -w0 policy.yaml"`,
			},
		},
		{
			name: "X together with X_FILE",
			file: "idp_client_secret: a\nidp_client_secret_file: b\n",
			env:  env{"COOKIE_SECRET": b64(strings.Repeat("x", 32)), "COOKIE_SECRET_FILE": "cookie"},
			want: []string{
				`config.yaml:2: idp_client_secret_file: set together with idp_client_secret (line 1): set only one of them`,
				`COOKIE_SECRET_FILE: set together with COOKIE_SECRET: set only one of them`,
			},
		},
		{
			name: "bad log level and format",
			file: "log_format: xml\n",
			env:  env{"LOG_LEVEL": "verbose"},
			want: []string{
				`config.yaml:1: log_format: "xml" is not a log format: want json or text`,
				`LOG_LEVEL: "verbose" is not a log level: want debug, info, warn or error`,
			},
		},
		{
			name: "certificate without key",
			env:  env{"CERTIFICATE": b64(certPEM)},
			want: []string{`CERTIFICATE: set without CERTIFICATE_KEY: set both, or neither`},
		},
		{
			name:  "key without certificate",
			file:  "certificate_key_file: key.pem\n",
			files: map[string]string{"key.pem": keyPEM},
			want:  []string{`config.yaml:1: certificate_key_file: set without certificate: set both, or neither`},
		},
		{
			name: "certificate and key that do not pair",
			env:  env{"CERTIFICATE": b64(certPEM), "CERTIFICATE_KEY": b64(otherKeyPEM)},
			want: []string{`CERTIFICATE_KEY: does not pair with CERTIFICATE: private key does not match public key`},
		},
		{
			name: "certificate and key that are not PEM",
			env:  env{"CERTIFICATE": b64("not pem"), "CERTIFICATE_KEY": b64(certPEM)},
			want: []string{
				`CERTIFICATE: not a PEM certificate: want PEM text starting with "-----BEGIN CERTIFICATE-----" (inline values are the base64 of that text)`,
				`CERTIFICATE_KEY: not a PEM private key: want PEM text starting with "-----BEGIN PRIVATE KEY-----" (inline values are the base64 of that text)`,
			},
		},
		{
			name: "authenticate service URL not a URL",
			env:  env{"AUTHENTICATE_SERVICE_URL": "authenticate.example.com"},
			want: []string{`AUTHENTICATE_SERVICE_URL: "authenticate.example.com" is not an absolute URL: want https://host[:port]`},
		},
		{
			name: "problems in a decoded POLICY name its line and route",
			env: env{"POLICY": b64("- from: https://ok.example.com\n  to: https://kubernetes.default.svc\n" +
				"- from: https://k8s.example.com\n  to: not a url\n  allow_spdy: maybe\n  timeuot: 1s\n" +
				"- to: https://x.example.com\n")},
			want: []string{
				`POLICY (decoded) line 4: route 2 ("https://k8s.example.com"): to: "not a url" is not an absolute URL: want https://host[:port]`,
				`POLICY (decoded) line 5: route 2 ("https://k8s.example.com"): allow_spdy: "maybe" is not a boolean: want true or false`,
				`POLICY (decoded) line 6: route 2 ("https://k8s.example.com"): unknown key "timeuot" (did you mean "timeout"?)`,
				`POLICY (decoded) line 7: route 3: no from: want the route's public URL, such as from: https://k8s.example.com`,
			},
		},
		{
			name: "duplicate from across POLICY and ROUTES",
			env: env{
				"POLICY": b64("- from: https://k8s.example.com\n  to: https://a.example.com\n"),
				"ROUTES": b64("- from: https://k8s.example.com\n  to: https://b.example.com\n"),
			},
			want: []string{`ROUTES (decoded) line 1: route 1 ("https://k8s.example.com"): from: "https://k8s.example.com" answers the same requests as "https://k8s.example.com", the from of route 1 of POLICY (routes are chosen by host, whatever the letter case, a trailing dot or the scheme): give each route a host of its own`},
		},
		{
			name: "malformed YAML in ROUTES, and a policy string in the file",
			file: "address: \":443\"\npolicy: " + b64("- from: https://a.example.com\n  to: [\n") + "\n",
			env:  env{"ROUTES": b64("from: https://k8s.example.com\n")},
			want: []string{
				`config.yaml:2: policy (decoded) line 3: malformed YAML: did not find expected node content`,
				`ROUTES (decoded) line 1: want a list of routes (items starting with - from:), got a mapping`,
			},
		},
		{
			name: "malformed policy shapes",
			file: "routes:\n" + okRoute + "    policy:\n" +
				"      - permit: {or: []}\n" + // 5
				"      - allow: {or: {email: a@example.com}}\n" + // 6
				"      - allow: {xor: [], and: [{email: a, user: b}]}\n" + // 7
				"      - deny: [or]\n" + // 8
				"      - allow: {or: [email]}\n", // 9
			want: []string{
				`config.yaml:5: routes[0].policy[0]: unknown action "permit": want allow or deny`,
				`config.yaml:6: routes[0].policy[1].allow.or: want a list of criteria such as - email: {is: user@example.com}, got a mapping`,
				`config.yaml:7: routes[0].policy[2].allow: unknown operator "xor" (did you mean "or"?): want and, or, not or nor`,
				`config.yaml:7: routes[0].policy[2].allow.and[0]: 2 keys in one criterion: want one per list item, as in - email: {is: user@example.com}`,
				`config.yaml:8: routes[0].policy[3].deny: want a mapping of and, or, not or nor to a list of criteria, as in allow: {or: [{email: {is: user@example.com}}]}; got a list`,
				`config.yaml:9: routes[0].policy[4].allow.or[0]: want a criterion such as email: {is: user@example.com}, got "email"`,
			},
		},
		{
			name: "kubernetes route open to the public",
			file: "routes:\n" + okRoute + "    kubernetes_service_account_token: abc\n    allow_public_unauthenticated_access: true\n" +
				"  - from: https://public.example.com\n    to: https://b.example.com\n    allow_public_unauthenticated_access: true\n    allowed_users: [a@example.com]\n",
			want: []string{
				`config.yaml:5: routes[0].allow_public_unauthenticated_access: not allowed on a Kubernetes route: impersonation needs a signed-in user; use allow_any_authenticated_user or a policy`,
				`config.yaml:8: routes[1].allow_public_unauthenticated_access: set together with allowed_users: a public route lets everyone in, so those rules would do nothing; keep one or the other`,
			},
		},
		{
			name: "kubernetes_allow_system_names on a route that is not a Kubernetes route",
			file: "routes:\n" + okRoute + "    kubernetes_allow_system_names: true\n",
			want: []string{
				`config.yaml:4: routes[0].kubernetes_allow_system_names: set on a route that is not a Kubernetes route (no kubernetes_service_account_token): it only decides what Portcullis may impersonate; remove it`,
			},
		},
		{
			name: "several problems at once, file first in line order, then the environment",
			file: "routes:\n" +
				"  - from: https://k8s.example.com\n" +
				"    to: https://kubernetes.default.svc\n" +
				"    allow_websockets: sometimes\n" +
				"cookie_name: \"bad name\"\n" +
				"metrics_address: 9090\n" +
				"idp_scopes: [openid, {email: true}]\n" +
				"insecure_server: yes please\n",
			env: env{
				"COOKIE_SECRET":    "c2hvcnQ=",
				"COOKIE_EXPIRE":    "-1h",
				"ADDRESS":          "443",
				"SIGNING_KEY":      b64(certPEM),
				"IDP_PROVIDER_URL": "accounts.google.com",
			},
			want: []string{
				`config.yaml:4: routes[0].allow_websockets: "sometimes" is not a boolean: want true or false`,
				`config.yaml:5: cookie_name: "bad name" is not a valid cookie name: want letters, digits, - and _ only, such as _pomerium`,
				`config.yaml:6: metrics_address: "9090" is not a listen address: want [host]:port, such as :443`,
				`config.yaml:7: idp_scopes[1]: want a string, got a mapping`,
				`config.yaml:8: insecure_server: "yes please" is not a boolean: want true or false`,
				`IDP_PROVIDER_URL: "accounts.google.com" is not an absolute URL: want https://host[:port]`,
				`ADDRESS: "443" is not a listen address: want [host]:port, such as :443`,
				`COOKIE_SECRET: decodes to 5 bytes, want 32: generate one with "head -c32 /dev/urandom | base64"`,
				`COOKIE_EXPIRE: -1h0m0s is not positive: want a duration such as 14h`,
				`SIGNING_KEY: not a PEM private key: want PEM text starting with "-----BEGIN EC PRIVATE KEY-----" (inline values are the base64 of that text)`,
			},
		},
		{
			name: "request params that would replace the sign-in's binding",
			file: "idp_request_params:\n  prompt: login\n  nonce: fixed\n",
			want: []string{
				`config.yaml:3: idp_request_params.nonce: "nonce" cannot be set: Portcullis sets it itself, to bind the sign-in to the browser that started it`,
			},
		},
		{
			name: "request params in the environment that are not JSON",
			env:  env{"IDP_REQUEST_PARAMS": `{"prompt": login}`},
			want: []string{
				`IDP_REQUEST_PARAMS: not a JSON object of strings (invalid character 'l' looking for beginning of value): ` +
					`want a JSON object of strings such as {"prompt":"select_account"}, or a comma list such as prompt=select_account,login_hint=someone@example.com`,
			},
		},
		{
			name: "built-in provider token TTL too short, or not a duration",
			file: "idp_builtin_token_ttl: 500ms\n",
			want: []string{
				`config.yaml:1: idp_builtin_token_ttl: 500ms is less than 1s: token times are whole seconds; want a duration such as 1h, or 5s for a test`,
			},
		},
		{
			name: "built-in provider token TTL in the environment, not a duration",
			env:  env{"IDP_BUILTIN_TOKEN_TTL": "5"},
			want: []string{
				`IDP_BUILTIN_TOKEN_TTL: "5" is not a duration: want a Go duration such as 30s, 5m or 1h30m`,
			},
		},
		{
			name: "a second YAML document",
			file: "address: \":443\"\n---\nlog_level: debug\n",
			want: []string{`config.yaml:2: a second YAML document (after ---): put every setting in one document`},
		},
		{
			name: "missing config file",
			file: "",
			env:  env{"LOG_FORMAT": "xml"},
			want: []string{
				`nonexistent.yaml: cannot read the config file: no such file or directory`,
				`LOG_FORMAT: "xml" is not a log format: want json or text`,
			},
		},
	}
}

// TestLoadProblems feeds bad configurations to Load and checks the full
// text of every problem reported.
func TestLoadProblems(t *testing.T) {
	for _, tc := range problemCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			writeFiles(t, dir, tc.files)
			path := "nonexistent.yaml"
			if tc.file != "" {
				path = "config.yaml"
				writeFiles(t, dir, map[string]string{path: tc.file})
			} else if !strings.HasPrefix(tc.name, "missing config file") {
				path = ""
			}
			o, err := Load(path, tc.env.lookup)
			if err == nil {
				t.Fatalf("Load succeeded, want problems:\n%s", strings.Join(tc.want, "\n"))
			}
			if o != nil {
				t.Errorf("Load returned Options with an error")
			}
			if diff := cmp.Diff(tc.want, messages(err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			// Every problem is reachable with errors.As too.
			var p *Problem
			if !errors.As(err, &p) || p.Error() != tc.want[0] {
				t.Errorf("errors.As(err, *Problem) = %v, want the first problem", p)
			}
		})
	}
}

// TestProblemsNeverShowSecrets checks that a bad secret is described, not
// repeated.
func TestProblemsNeverShowSecrets(t *testing.T) {
	secret := "c2VjcmV0LXZhbHVlLXRoYXQtaXMtdG9vLXNob3J0"
	e := env{
		"COOKIE_SECRET":     secret,
		"SHARED_SECRET":     secret + "!!",
		"IDP_CLIENT_SECRET": secret,
		"POLICY": b64("- from: https://k8s.example.com\n  to: https://kubernetes.default.svc\n" +
			"  kubernetes_service_account_token: [" + secret + "]\n"),
	}
	_, err := Load("", e.lookup)
	if err == nil {
		t.Fatal("Load succeeded, want problems")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("a problem shows the secret:\n%v", err)
	}
}
