package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis-proxy/portcullis/internal/identity"
)

// A setting is one top-level key: an environment variable and the same
// name in lower case in the file.
//
// doc, example, get and unset are for docs/configuration.md (reference),
// which is generated from this table so that it lists every setting
// there is; TestSettingsDocumented holds each entry to having them.
type setting struct {
	key  string   // YAML key; the environment variable is its upper case
	file fileKind // whether key_file / KEY_FILE exist, and what they hold
	// decode stores v in o, reporting problems; false if v was bad.
	decode func(l *loader, v value, o *Options) bool

	doc     string // what the setting does, in Markdown, for the people who set it
	example string // a value as written in the environment (in shell syntax)
	// get returns the setting's field, so that the reference shows its
	// value in Defaults() rather than a copy that could go stale; nil for
	// a setting Options has no single field for.
	get func(o *Options) any
	// unset says what holds when the setting is not given, for a setting
	// whose field Defaults() leaves empty; "" for the others.
	unset string
	// restart marks a setting a running server cannot change: what it
	// sets up exists once per process (a listener, the session store, the
	// keys every issued cookie and token depends on). A reload that
	// changes it keeps the running value and says so (RestartRequired).
	restart bool
}

const secretHint = `generate one with "head -c32 /dev/urandom | base64"`

// pemHint says what a base64 PEM setting wants, naming its *_file variant
// in the style (env or file) of at.
func pemHint(at where, key, example string) string {
	return fmt.Sprintf(`want the base64 of a PEM file, such as the output of "base64 -w0 %s", or set %s to the file's path`,
		example, at.name(key+"_file"))
}

// topSettings lists every top-level setting, in the order they are
// decoded. (A function, not a variable: the decoders refer back to it
// through the loader.)
func topSettings() []setting {
	return []setting{
		{key: "address", restart: true, example: ":8443",
			doc: "Where the main listener listens, as `[host]:port`. Every route and the sign-in service are served there, " +
				"over TLS unless `INSECURE_SERVER` is true.",
			get: func(o *Options) any { return o.Address },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.Address, ok = l.str(v)
				return ok
			}},
		{key: "authenticate_service_url", restart: true, example: "https://authenticate.example.com", unset: "none",
			doc: "The public URL of the sign-in service: scheme, host and optional port, no path. " +
				"Register it with `/oauth2/callback` appended as the redirect URL of the client at your identity provider. " +
				"Its host must be its own, not any route's `from`. Needed when `IDP_PROVIDER` is set.",
			get: func(o *Options) any { return o.AuthenticateServiceURL },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.AuthenticateServiceURL, ok = l.url(v, hostURL)
				return ok
			}},
		{key: "certificate", file: pemFile, example: "$(base64 -w0 cert.pem)",
			unset: "none: Portcullis refuses to start without one unless `INSECURE_SERVER` is true",
			doc: "The TLS certificate served on `ADDRESS`, as the base64 of a PEM file: the server's certificate first, " +
				"then any intermediates. Set it together with `CERTIFICATE_KEY`. It should name the host of " +
				"`AUTHENTICATE_SERVICE_URL` and of every route; `--check-config` warns when it does not, or when it has expired.",
			get: func(o *Options) any { return o.Certificate },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.Certificate, ok = l.bytes(v, pemFile, pemHint(v.at, "certificate", "cert.pem"))
				return ok
			}},
		{key: "certificate_key", file: pemFile, example: "$(base64 -w0 key.pem)", unset: "none",
			doc: "The private key of `CERTIFICATE`, as the base64 of a PEM file.",
			get: func(o *Options) any { return o.CertificateKey },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.CertificateKey, ok = l.bytes(v, pemFile, pemHint(v.at, "certificate_key", "key.pem"))
				return ok
			}},
		{key: "cookie_secret", restart: true, file: textFile, example: "$(head -c32 /dev/urandom | base64)", unset: generatedSecret,
			doc: "The key that seals session cookies and the state of a sign-in in progress: exactly 32 random bytes, in base64.",
			get: func(o *Options) any { return o.CookieSecret },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.CookieSecret, ok = l.bytes(v, textFile, secretHint)
				return ok
			}},
		{key: "cookie_name", restart: true, example: "_portcullis",
			doc: "The name of the session cookie: letters, digits, `-` and `_`. " +
				"A cookie of this name is never passed on to an upstream.",
			get: func(o *Options) any { return o.CookieName },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.CookieName, ok = l.str(v)
				return ok
			}},
		durationSetting("cookie_expire", "8h", true,
			"How long a session lasts after signing in, as a positive duration; then the person signs in again. "+
				"While it lasts, the identity provider is asked again when its own token expires, and can end it sooner: "+
				"see [sessions and refresh](identity-providers.md#sessions-and-refresh).",
			func(o *Options) *time.Duration { return &o.CookieExpire }),
		durationSetting("access_token_lifetime", "10m", true,
			"How long a token given to `portcullis-cli` lasts, as a duration of at least 30s; default 5m; never past the session's end. "+
				"With it comes a renewal credential, good once, that portcullis-cli trades for the next token without a browser "+
				"for as long as the session lasts; a renewal credential used twice ends the session. "+
				"Clients that do not ask for renewal (pomerium-cli) get tokens that last as long as the session: "+
				"see [silent renewal](kubernetes.md#silent-renewal).",
			func(o *Options) *time.Duration { return &o.AccessTokenLifetime }),
		durationSetting("device_code_lifetime", "5m", true,
			"How long the code of a device sign-in (`portcullis-cli --device`, and over SSH) can be approved, "+
				"as a duration from 30s to 1h; default 10m. A short life leaves less time to talk someone into approving "+
				"a code that is not theirs: see [signing in over SSH](kubernetes.md#signing-in-over-ssh-or-on-a-machine-without-a-browser).",
			func(o *Options) *time.Duration { return &o.DeviceCodeLifetime }),
		durationSetting("device_poll_interval", "5s", true,
			"How long a device waiting for its sign-in to be approved waits between polls (RFC 8628's `interval`), "+
				"as a duration from 1s to 1m, shorter than `device_code_lifetime`; default 5s. One that polls sooner is told to slow down.",
			func(o *Options) *time.Duration { return &o.DevicePollInterval }),
		{key: "databroker_storage_type", restart: true, example: "postgres",
			doc: "Where sessions are kept: `memory`, in the Portcullis process, for one replica (they end when it restarts); " +
				"or `postgres`, in PostgreSQL, shared by every replica, so that a person signed in through one is signed in " +
				"through all, and signed out of all at once. `postgres` needs `DATABROKER_STORAGE_CONNECTION_STRING`, and " +
				"`COOKIE_SECRET` and `SHARED_SECRET` (or `SIGNING_KEY`) set to the same values on every replica: " +
				"see [running PostgreSQL for Portcullis](postgres.md).",
			get: func(o *Options) any { return o.DatabrokerStorageType },
			decode: func(l *loader, v value, o *Options) bool {
				s, ok := l.str(v)
				if !ok {
					return false
				}
				if s = strings.ToLower(s); s != "memory" && s != "postgres" {
					return l.fail(v, "%q is not a session store: want memory (one replica) or postgres (shared by replicas)", s)
				}
				o.DatabrokerStorageType = s
				return true
			}},
		{key: "databroker_storage_connection_string", restart: true, file: textFile, unset: "none",
			example: "postgres://portcullis:PASSWORD@db.example.com:5432/portcullis?sslmode=verify-full",
			doc: "How to reach PostgreSQL when `DATABROKER_STORAGE_TYPE` is `postgres`: a `postgres://` URL or " +
				"`key=value` pairs, as libpq takes them (`sslmode`, `sslrootcert` and the other `PG*` settings included). " +
				"It may hold a password: prefer the `_FILE` form, from a Secret.",
			get: func(o *Options) any { return o.DatabrokerStorageConnectionString },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.DatabrokerStorageConnectionString, ok = l.str(v)
				return ok
			}},
		durationSetting("databroker_storage_grace", "2m", true,
			"How long, while PostgreSQL cannot be reached, a replica keeps serving the sessions it has already seen; "+
				"past it, and for any session it has not seen, requests get `503` until the database is back. It is also "+
				"the longest a sign-out made on another replica can go unnoticed during an outage. `postgres` only.",
			func(o *Options) *time.Duration { return &o.DatabrokerStorageGrace }),
		{key: "shared_secret", restart: true, file: textFile, example: "$(head -c32 /dev/urandom | base64)", unset: generatedSecret,
			doc: "Key material, at least 32 random bytes, in base64. The tokens Portcullis issues are signed with a key " +
				"derived from it when `SIGNING_KEY` is not set, and the built-in identity provider derives its own keys from it.",
			get: func(o *Options) any { return o.SharedSecret },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.SharedSecret, ok = l.bytes(v, textFile, secretHint)
				return ok
			}},
		{key: "signing_key", restart: true, file: pemFile, example: "$(base64 -w0 signing-key.pem)",
			unset: "none: the key is derived from `SHARED_SECRET`",
			doc: "The private key that signs the tokens Portcullis issues (kubectl's credentials, and the identity assertion " +
				"of `pass_identity_headers`), as the base64 of a PEM file holding an EC or RSA private key. " +
				"Its public half is published at `/.well-known/pomerium/jwks.json` on every route's host.",
			get: func(o *Options) any { return o.SigningKey },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.SigningKey, ok = l.bytes(v, pemFile, pemHint(v.at, "signing_key", "signing-key.pem"))
				return ok
			}},
		{key: "idp_provider", example: "oidc", unset: "none: sign-in is off",
			doc: "The identity provider people sign in with: `oidc` for any OpenID Connect provider, a preset such as " +
				"`google`, `azure`, `okta` or `keycloak`, `github`, or `builtin`, a provider inside Portcullis with its users " +
				"in `IDP_USERS_FILE`. Every name, with its defaults: [identity providers](identity-providers.md).",
			get: func(o *Options) any { return o.IDPProvider },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.IDPProvider, ok = l.str(v)
				return ok
			}},
		{key: "idp_provider_url", example: "https://accounts.example.com",
			unset: "the provider's, for those that have one ([providers at a glance](identity-providers.md#providers-at-a-glance))",
			doc:   "The provider's issuer URL, exactly as the provider announces it (for `github`, its web URL).",
			get:   func(o *Options) any { return o.IDPProviderURL },
			decode: func(l *loader, v value, o *Options) bool {
				// Kept as written: OIDC discovery compares it with the
				// issuer the provider announces, character for character.
				s, ok := l.str(v)
				if ok {
					o.IDPProviderURL = s
					_, ok = l.url(v, upstreamURL)
				}
				return ok
			}},
		{key: "idp_client_id", example: "portcullis", unset: "none",
			doc: "The client ID registered at the identity provider. Not needed with `builtin`.",
			get: func(o *Options) any { return o.IDPClientID },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.IDPClientID, ok = l.str(v)
				return ok
			}},
		{key: "idp_client_secret", file: textFile, example: "the-client-secret", unset: "none",
			doc: "The client's secret, as the identity provider gave it. Not needed with `builtin`.",
			get: func(o *Options) any { return o.IDPClientSecret },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.IDPClientSecret, ok = l.str(v)
				return ok
			}},
		{key: "idp_scopes", example: "openid,email,profile,offline_access",
			unset: "the provider's ([providers at a glance](identity-providers.md#providers-at-a-glance))",
			doc: "The scopes to ask the identity provider for, replacing the provider's defaults: a comma list " +
				"(in the file, also a YAML list).",
			get: func(o *Options) any { return o.IDPScopes },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.IDPScopes, ok = l.list(v, true)
				return ok
			}},
		{key: "idp_groups_claim", example: "roles",
			unset: "the provider's, `groups` for most ([providers at a glance](identity-providers.md#providers-at-a-glance))",
			doc: "The claim of the ID token (or else of the provider's userinfo) that lists a person's groups. " +
				"The groups are what `groups` in a policy matches and, on a Kubernetes route, what Kubernetes sees as `Impersonate-Group`.",
			get: func(o *Options) any { return o.IDPGroupsClaim },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.IDPGroupsClaim, ok = l.str(v)
				return ok
			}},
		{key: "idp_request_params", example: `'{"prompt":"select_account"}'`, unset: "the provider's",
			doc: "Extra parameters for the identity provider's sign-in URL, such as `prompt`, `login_hint` or `hd`; " +
				"they replace the provider's own, key by key. A JSON object of strings (`{\"prompt\":\"login\"}`) or a comma list " +
				"of key=value (`prompt=login,hd=example.com`); in the file, also a mapping. These cannot be set, because Portcullis " +
				"sets them itself: " + codeList(reservedRequestParams, "and") + ". " +
				"More: [`IDP_REQUEST_PARAMS`](identity-providers.md#idp_request_params).",
			get: func(o *Options) any { return o.IDPRequestParams },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.IDPRequestParams, ok = l.requestParams(v)
				return ok
			}},
		{key: "idp_users_file", example: "users.yaml", unset: "none",
			doc: "The path of the users file of the built-in provider (`IDP_PROVIDER=builtin`): a YAML list of people, " +
				"each with `email`, `groups` and a bcrypt `password_hash`. Changes to the file take effect while Portcullis runs: " +
				"see [the built-in provider](identity-providers.md#the-built-in-provider-builtin).",
			get: func(o *Options) any { return o.IDPUsersFile },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.IDPUsersFile, ok = l.path(v)
				return ok
			}},
		durationSetting("idp_builtin_token_ttl", "5m", false,
			"How long the tokens of the built-in provider last, and so how often Portcullis renews a session with it: "+
				"a person removed from `IDP_USERS_FILE` is shut out within this time (and a second). At least `1s`; "+
				"values as short as `5s` are for tests and demos.",
			func(o *Options) *time.Duration { return &o.IDPBuiltinTokenTTL }),
		mappingSetting("kubernetes_username_claim", "sub", "",
			"On Kubernetes routes, the identity provider's claim whose value is the user name Kubernetes sees "+
				"(`Impersonate-User`), as kube-apiserver's `--oidc-username-claim`: `email`, the address the provider verified; "+
				"`sub`; `name`; or another text claim the provider sends, such as `preferred_username` or `upn`. "+
				"With any claim but `email` the name is prefixed with the provider's issuer URL and `#`, as kube-apiserver does, "+
				"unless `KUBERNETES_USERNAME_PREFIX` says otherwise. A person whose claim is missing, empty or a list of more than "+
				"one value is refused with `403`.",
			func(o *Options) *string { return &o.KubernetesUsernameClaim }),
		mappingSetting("kubernetes_username_prefix", "oidc:", "none for `email`; for another claim, the identity provider's issuer URL and `#`",
			"What goes before every user name Kubernetes sees, as kube-apiserver's `--oidc-username-prefix`, such as `oidc:`, "+
				"so that the people who come through Portcullis cannot take the name of another user of the cluster. "+
				"Not set, a `KUBERNETES_USERNAME_CLAIM` other than `email` gets the identity provider's issuer URL and `#` "+
				"(`https://accounts.example.com#1234`); `-` means no prefix at all.",
			func(o *Options) *string { return &o.KubernetesUsernamePrefix }),
		mappingSetting("kubernetes_groups_prefix", "oidc:", "none",
			"What goes before every group name Kubernetes sees (`Impersonate-Group`), as kube-apiserver's "+
				"`--oidc-groups-prefix`, such as `oidc:`; `-` means none, for a route that must not take this one. "+
				"Policies still see the provider's group names, without it.",
			func(o *Options) *string { return &o.KubernetesGroupsPrefix }),
		{key: "kubernetes_groups_filter", example: "'team-*,sre'", unset: "none: every group reaches Kubernetes",
			doc: "Only the groups that match one of these patterns reach Kubernetes: a group's exact name, or a pattern in which " +
				"`*` stands for any run of characters (`team-*`, `*-admins`; `*` is every group). They are matched, case-sensitively, " +
				"against the provider's group names, before `KUBERNETES_GROUPS_PREFIX`. A comma list, or a JSON list for names " +
				"with commas (`[\"cn=ops,dc=example,dc=com\"]`); in the file, also a YAML list, in which a pattern that begins " +
				"with `*` must be quoted. Policies' `groups` still see every group the provider gives. " +
				inheritedBy("kubernetes_groups_filter"),
			get: func(o *Options) any { return o.KubernetesGroupsFilter },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.KubernetesGroupsFilter, ok = l.groupPatterns(v)
				return ok
			}},
		{key: "insecure_server", restart: true, example: "true",
			doc: "Serve plain HTTP on `ADDRESS`, with no certificate, behind a load balancer or ingress that terminates TLS.",
			get: func(o *Options) any { return o.InsecureServer },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.InsecureServer, ok = l.boolean(v)
				return ok
			}},
		{key: "metrics_address", restart: true, example: ":9090", unset: "none: no metrics listener",
			doc: "Where to serve Prometheus metrics at `/metrics`, and `/ping`, `/healthz` and `/readyz` for probes, " +
				"as `[host]:port`: plain HTTP with no sign-in, so keep it where only your monitoring reaches it. " +
				"It needs a port of its own, not `ADDRESS`'s.",
			get: func(o *Options) any { return o.MetricsAddress },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.MetricsAddress, ok = l.str(v)
				return ok
			}},
		{key: "admin_token", file: textFile, example: "$(head -c32 /dev/urandom | base64)", unset: "none: no admin API",
			doc: "The bearer token of the admin API on `METRICS_ADDRESS` (`/admin/v1/`: list open streams, end a person's " +
				"sessions and streams): at least 32 characters, sent as `Authorization: Bearer TOKEN`. " +
				"Without it the admin API answers nothing. Needs `METRICS_ADDRESS`.",
			get: func(o *Options) any { return o.AdminToken },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.AdminToken, ok = l.str(v)
				return ok
			}},
		{key: "audit_log_path", restart: true, example: "/var/log/portcullis/audit.log", unset: "none: no audit log file",
			doc: "Where audit events are written, one Kubernetes `audit.k8s.io/v1` `Event` JSON object a line, " +
				"as kube-apiserver's `--audit-log-path` writes them; `-` is standard output. " +
				"See [Audit](audit.md).",
			get: func(o *Options) any { return o.AuditLogPath },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				if o.AuditLogPath, ok = l.str(v); ok && o.AuditLogPath != "-" {
					o.AuditLogPath, ok = l.path(v)
				}
				return ok
			}},
		auditCountSetting("audit_log_maxsize", "100",
			"The size in megabytes at which the audit log file is rotated (renamed with the time, and a new one begun), "+
				"as kube-apiserver's `--audit-log-maxsize`; 0 never rotates it.",
			func(o *Options) *int { return &o.AuditLogMaxSize }),
		auditCountSetting("audit_log_maxbackup", "10",
			"How many rotated audit log files are kept, as kube-apiserver's `--audit-log-maxbackup`; 0 keeps them all.",
			func(o *Options) *int { return &o.AuditLogMaxBackup }),
		{key: "audit_policy_file", restart: true, example: "audit-policy.yaml", unset: "`Metadata` for every request",
			doc: "An audit policy in kube-apiserver's format (`audit.k8s.io/v1` `Policy`, as `--audit-policy-file` reads): " +
				"its rules choose the level of each request's event by user, group, verb, resource and namespace; `None` writes none.",
			get: func(o *Options) any { return o.AuditPolicyFile },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.AuditPolicyFile, ok = l.path(v)
				return ok
			}},
		{key: "audit_webhook_config_file", restart: true, example: "audit-webhook.kubeconfig", unset: "none: no audit webhook",
			doc: "A kubeconfig-format file naming a server that receives audit events, batched as `audit.k8s.io/v1` `EventList` " +
				"POSTs, as kube-apiserver's `--audit-webhook-config-file`. Events wait in a bounded queue while it is down, " +
				"and are counted as dropped when the queue is full; a request never waits for it.",
			get: func(o *Options) any { return o.AuditWebhookConfigFile },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				o.AuditWebhookConfigFile, ok = l.path(v)
				return ok
			}},
		{key: "log_level", example: "debug",
			doc: "The least severe messages logged: " + codeList(logLevelNames(), "or") + ".",
			get: func(o *Options) any { return o.LogLevel },
			decode: func(l *loader, v value, o *Options) bool {
				s, ok := l.str(v)
				if !ok {
					return false
				}
				lvl, ok := logLevels[strings.ToLower(s)]
				if !ok {
					return l.fail(v, "%q is not a log level: want debug, info, warn or error", s)
				}
				o.LogLevel = lvl
				return true
			}},
		{key: "log_format", restart: true, example: "text",
			doc: "How logs are written to standard error: `json`, one JSON object a line, or `text`, key=value pairs.",
			get: func(o *Options) any { return o.LogFormat },
			decode: func(l *loader, v value, o *Options) (ok bool) {
				s, ok := l.str(v)
				o.LogFormat = strings.ToLower(s)
				return ok
			}},
		limitSetting("limit_connections", "20000",
			"The most connections open at once on `ADDRESS`; one more is closed as soon as it is accepted.",
			func(o *Options) *int { return &o.Limits.Connections }),
		limitSetting("limit_connections_per_client", "500",
			"The most connections one client may have open at once on `ADDRESS`.",
			func(o *Options) *int { return &o.Limits.ConnectionsPerClient }),
		limitSetting("limit_sign_ins_per_minute", "10",
			"How many sign-ins one client may start (and complete) a minute at the sign-in service, as many of them at once; "+
				"more get `429 Too Many Requests` with `Retry-After`.",
			func(o *Options) *int { return &o.Limits.SignInsPerMinute }),
		limitSetting("limit_logins_per_minute", "120",
			"How many calls of the programmatic login API (`/.pomerium/api/v1/login`, which `portcullis-cli` uses) "+
				"one client may make a minute, as many of them at once; more get `429` with `Retry-After`.",
			func(o *Options) *int { return &o.Limits.LoginsPerMinute }),
		limitSetting("limit_device_polls_per_minute", "288",
			"How many polls of the device sign-in's token endpoint (`/.pomerium/api/v1/device/token`) one client may make "+
				"a minute, as many of them at once; more get `429` with `Retry-After`. The default, 144, lets a dozen devices "+
				"behind one address poll every five seconds.",
			func(o *Options) *int { return &o.Limits.DevicePollsPerMinute }),
		limitSetting("limit_pending_sign_ins", "50000",
			"How many sign-ins in progress Portcullis keeps track of, each for ten minutes, so that the identity provider's "+
				"answer to one cannot be replayed; past it, new sign-ins get `503` until older ones are forgotten.",
			func(o *Options) *int { return &o.Limits.PendingSignIns }),
		limitSetting("limit_sessions_per_person", "10",
			"How many sessions one person (one subject at the identity provider) may have; "+
				"signing in once more ends that person's oldest session.",
			func(o *Options) *int { return &o.Limits.SessionsPerPerson }),
		limitSetting("limit_sign_in_body_bytes", "16384",
			"The largest request body, in bytes, that the sign-in, sign-out and login endpoints accept, "+
				"the built-in provider's included; a larger one gets `413`.",
			func(o *Options) *int { return &o.Limits.SignInBodyBytes }),
		// policy before routes: that is the order of Options.Routes.
		{key: "policy", example: "$(base64 -w0 policy.yaml)", unset: "no routes",
			doc: "Routes, as Pomerium's `POLICY`: in the environment, the base64 of a YAML list of routes; in the file, " +
				"that list itself (or the base64 of it, as a string). The keys of a route are listed [below](#route-keys).",
			decode: decodeRouteList("policy")},
		{key: "routes", example: "$(base64 -w0 routes.yaml)", unset: "no routes",
			doc:    "More routes, written as `POLICY` is; they come after the routes of `POLICY`.",
			decode: decodeRouteList("routes")},
	}
}

// inheritedBy ends the doc of a top-level identity mapping setting: the
// route key of the same name overrides it.
func inheritedBy(key string) string {
	return fmt.Sprintf("Each Kubernetes route takes it unless it sets `%s` itself: see "+
		"[identity mapping](identity-providers.md#identity-mapping).", key)
}

// mappingSetting is a text setting of the identity mapping (mapping.go),
// which a reload changes; doc is what it does, before inheritedBy.
func mappingSetting(key, example, unset, doc string, field func(*Options) *string) setting {
	return setting{key: key, example: example, unset: unset, doc: doc + " " + inheritedBy(key),
		get: func(o *Options) any { return *field(o) },
		decode: func(l *loader, v value, o *Options) (ok bool) {
			*field(o), ok = l.str(v)
			return ok
		}}
}

// groupPatterns decodes a list of group patterns (kubernetes_groups_filter):
// a YAML list in the file, each item whole; or, in the environment or as
// a string in the file, a JSON list of strings (for names with commas,
// such as LDAP's cn=ops,dc=example,dc=com) or a comma list. Each pattern
// is checked as identity.CheckGroupPattern checks it. Empty gives nil.
func (l *loader) groupPatterns(v value) ([]string, bool) {
	var out []string
	ok := true
	add := func(at value, p string) {
		if err := identity.CheckGroupPattern(p); err != nil {
			ok = l.fail(at, "%v", err)
			return
		}
		out = append(out, p)
	}
	text := v.text
	if v.node != nil {
		n := deref(v.node)
		switch n.Kind {
		case yaml.SequenceNode:
			if len(n.Content) == 0 {
				// Neither "no group" nor "no filter" is what it plainly says.
				return nil, l.fail(v, "an empty list: leave the key out for the default, or give [\"*\"] to let every group through")
			}
			for i, item := range n.Content {
				iv := value{at: v.d.at(item, fmt.Sprintf("%s[%d]", v.at.key, i)), d: v.d, node: item}
				if !l.count(v.d, item, iv.at.key) {
					return nil, false
				}
				if p, good := l.str(iv); !good {
					ok = false
				} else if p != "" {
					add(iv, p)
				}
			}
			return out, ok
		case yaml.ScalarNode:
			text = n.Value
		default:
			return nil, l.fail(v, "want a list of group names and patterns, got %s", describe(n))
		}
	}
	text = strings.TrimSpace(text)
	if strings.HasPrefix(text, "[") {
		const hint = `want one such as ["team-*","cn=ops,dc=example,dc=com"], or a comma list such as team-*,sre`
		var list []any
		if err := json.Unmarshal([]byte(text), &list); err != nil {
			return nil, l.fail(v, "not a JSON list (%v): %s", err, hint)
		}
		for i, item := range list {
			p, isString := item.(string)
			if !isString {
				return nil, l.fail(v, "item %d of the JSON list is not a string: %s", i+1, hint)
			}
			add(v, p)
		}
		return out, ok
	}
	for p := range strings.SplitSeq(text, ",") {
		if p = strings.TrimSpace(p); p != "" {
			add(v, p)
		}
	}
	return out, ok
}

// generatedSecret is the reference's default for the secrets that
// GenerateMissingSecrets fills in.
const generatedSecret = "none: a random one at each start, so sessions end when Portcullis restarts, " +
	"and replicas cannot share them"

// maxLimit bounds every limit_* setting: far above any sane value, and
// small enough that no arithmetic on it overflows.
const maxLimit = 1 << 30

// durationSetting is a setting that holds a duration (checked further by
// Validate).
func durationSetting(key, example string, restart bool, doc string, field func(*Options) *time.Duration) setting {
	return setting{key: key, example: example, restart: restart, doc: doc,
		get: func(o *Options) any { return *field(o) },
		decode: func(l *loader, v value, o *Options) (ok bool) {
			*field(o), ok = l.duration(v)
			return ok
		}}
}

// limitSetting is a limit_* setting: a whole number from 1 to maxLimit.
// Zero is refused rather than read as "no limit": a limit is taken away
// by raising it, on purpose. doc and example are the setting's.
func limitSetting(key, example, doc string, field func(*Options) *int) setting {
	return wholeNumberSetting(key, example, doc, 1, "a limit", field)
}

// auditCountSetting is an audit_log_* count: a whole number from 0 to
// maxLimit, 0 meaning no limit, as kube-apiserver's flags have it.
func auditCountSetting(key, example, doc string, field func(*Options) *int) setting {
	return wholeNumberSetting(key, example, doc, 0, "a count", field)
}

// wholeNumberSetting is a setting that needs a restart and holds a whole
// number from least to maxLimit; what names it in problems ("a limit").
func wholeNumberSetting(key, example, doc string, least int, what string, field func(*Options) *int) setting {
	return setting{key: key, example: example, restart: true,
		doc: fmt.Sprintf("%s A whole number from %d to %d.", doc, least, maxLimit),
		get: func(o *Options) any { return *field(o) },
		decode: func(l *loader, v value, o *Options) bool {
			s, ok := l.scalar(v, "a whole number")
			if !ok {
				return false
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < least || n > maxLimit {
				return l.fail(v, "%q is not %s: want a whole number from %d to %d", s, what, least, maxLimit)
			}
			*field(o) = n
			return true
		}}
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// logLevelNames lists the names of logLevels, least severe first.
func logLevelNames() []string {
	names := slices.Collect(maps.Keys(logLevels))
	slices.SortFunc(names, func(a, b string) int { return int(logLevels[a] - logLevels[b]) })
	return names
}

// topKeys lists every top-level YAML key, *_file variants included.
func topKeys() []string {
	var keys []string
	for _, s := range topSettings() {
		keys = append(keys, s.key)
		if s.file != noFile {
			keys = append(keys, s.key+"_file")
		}
	}
	return keys
}

// pick finds the value in effect for s: the environment's, else the
// file's. It reports X set together with X_FILE.
func (l *loader) pick(s setting) (value, bool) {
	env := strings.ToUpper(s.key)
	ev, hasEnv := l.getenv(env)
	var fv string
	var hasEnvFile bool
	if s.file != noFile {
		fv, hasEnvFile = l.getenv(env + "_FILE")
	}
	switch {
	case hasEnv && hasEnvFile:
		l.problem(where{source: env + "_FILE", env: true}, fmt.Sprintf("set together with %s: set only one of them", env))
		l.loc.failed[s.key] = true
		return value{}, false
	case hasEnv:
		return value{at: where{source: env, env: true}, text: ev}, true
	case hasEnvFile:
		v, ok := l.read(where{source: env + "_FILE", env: true}, strings.TrimSpace(fv))
		if !ok {
			l.loc.failed[s.key] = true
		}
		return v, ok
	}

	e, hasFile := l.top[s.key]
	hasFile = hasFile && !isNull(e.val)
	var ef entry
	hasFileFile := false
	if s.file != noFile {
		ef, hasFileFile = l.top[s.key+"_file"]
		hasFileFile = hasFileFile && !isNull(ef.val)
	}
	switch {
	case hasFile && hasFileFile:
		later, first := ef, e
		if e.key.Line > ef.key.Line {
			later, first = e, ef
		}
		l.problem(later.d.at(later.key, later.name),
			fmt.Sprintf("set together with %s (line %d): set only one of them", first.name, first.key.Line))
		l.loc.failed[s.key] = true
		return value{}, false
	case hasFile:
		return fileValue(e, s.key), true
	case hasFileFile:
		v := fileValue(ef, s.key+"_file")
		path, ok := l.path(v)
		if ok {
			v, ok = l.read(v.at, path)
		}
		if !ok {
			l.loc.failed[s.key] = true
		}
		return v, ok
	}
	return value{}, false
}

// routesHint says what POLICY and ROUTES hold.
const routesHint = `want the base64 of a YAML list of routes, such as the output of "base64 -w0 policy.yaml"`

// decodeRouteList decodes POLICY or ROUTES (key is "policy" or "routes"):
// a YAML list in the file, or the base64 of one (in the environment, or
// as a string in the file). The routes are appended to o.Routes.
func decodeRouteList(key string) func(l *loader, v value, o *Options) bool {
	return func(l *loader, v value, o *Options) bool {
		if v.node != nil {
			n := deref(v.node)
			switch n.Kind {
			case yaml.SequenceNode:
				o.Routes = append(o.Routes, l.routes(v.d, n, key, "")...)
				return true
			case yaml.ScalarNode:
				// A base64 string, as in the environment.
			default:
				return l.fail(v, "want a list of routes (items starting with - from:), got %s", describe(n))
			}
		}
		data, ok := l.bytes(v, textFile, routesHint)
		if !ok {
			return false
		}
		name, ref := strings.ToUpper(key), strings.ToUpper(key)
		if !v.at.env {
			name = v.at.source + ": " + key
			ref = fmt.Sprintf("%s (%s)", key, v.at.source)
		}
		d := decodedDoc(name)
		root, ok := l.parseYAML(d, data)
		if !ok || root == nil {
			return ok
		}
		n := deref(root)
		if n.Kind != yaml.SequenceNode {
			l.problem(d.at(root, ""), fmt.Sprintf("want a list of routes (items starting with - from:), got %s", describe(n)))
			return false
		}
		o.Routes = append(o.Routes, l.routes(d, n, "", ref)...)
		return true
	}
}

// requestParamsHint says what IDP_REQUEST_PARAMS holds.
const requestParamsHint = `want a JSON object of strings such as {"prompt":"select_account"}, ` +
	`or a comma list such as prompt=select_account,login_hint=someone@example.com`

// reservedRequestParams are the sign-in URL parameters Portcullis sets
// itself: they bind the sign-in to the browser (state, nonce, PKCE), say
// where the code goes, or could replace all of those (request,
// request_uri). The idp package refuses the same list (a test keeps the
// two equal); refusing them here too names the file line.
var reservedRequestParams = []string{
	"client_id", "client_secret", "code_challenge", "code_challenge_method", "nonce",
	"redirect_uri", "request", "request_uri", "response_mode", "response_type", "scope", "state",
}

// requestParams decodes IDP_REQUEST_PARAMS: a YAML mapping in the file,
// or (in the environment, or as a string in the file) a JSON object of
// strings, as Pomerium reads it, or a comma list of key=value. Empty
// gives nil.
func (l *loader) requestParams(v value) (map[string]string, bool) {
	out := map[string]string{}
	ok := true
	add := func(at value, k, val string) {
		if msg := checkRequestParam(at.at, k); msg != "" {
			ok = l.fail(at, "%s", msg)
			return
		}
		if _, dup := out[k]; dup {
			ok = l.fail(at, "%q is set twice: keep one", k)
			return
		}
		out[k] = val
	}
	text := v.text
	if v.node != nil {
		n := deref(v.node)
		switch n.Kind {
		case yaml.MappingNode:
			for _, e := range l.entries(v.d, n, v.at.key) {
				ev := value{at: v.d.at(e.val, v.at.key+"."+e.name), d: v.d, node: e.val}
				if !l.count(v.d, e.val, ev.at.key) {
					return nil, false
				}
				if isNull(e.val) {
					ok = l.fail(ev, "no value: give %s a value, or leave it out", e.name)
					continue
				}
				s, good := l.scalar(ev, "a string")
				if !good {
					ok = false
					continue
				}
				add(ev, e.name, s)
			}
			if len(out) == 0 {
				return nil, ok
			}
			return out, ok
		case yaml.ScalarNode:
			text = n.Value
		default:
			return nil, l.fail(v, "want a mapping of parameter names to values, got %s", describe(n))
		}
	}
	text = strings.TrimSpace(text)
	if strings.HasPrefix(text, "{") {
		pairs, err := jsonStringObject(text)
		if err != nil {
			return nil, l.fail(v, "not a JSON object of strings (%v): %s", err, requestParamsHint)
		}
		for _, p := range pairs {
			add(v, p[0], p[1])
		}
	} else {
		for item := range strings.SplitSeq(text, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			k, val, found := strings.Cut(item, "=")
			if !found {
				ok = l.fail(v, "%q is not key=value: %s", item, requestParamsHint)
				continue
			}
			add(v, strings.TrimSpace(k), strings.TrimSpace(val))
		}
	}
	if len(out) == 0 {
		return nil, ok
	}
	return out, ok
}

// checkRequestParam says what is wrong with the parameter name k, or "".
func checkRequestParam(at where, k string) string {
	switch {
	case k == "":
		return "a parameter has no name: " + requestParamsHint
	case strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Sprintf("%q is not a parameter name: want a name such as prompt", k)
	case k == "scope":
		return fmt.Sprintf(`"scope" cannot be set here: set %s instead`, at.name("idp_scopes"))
	case slices.Contains(reservedRequestParams, k):
		return fmt.Sprintf("%q cannot be set: Portcullis sets it itself, to bind the sign-in to the browser that started it", k)
	}
	return ""
}

// jsonStringObject parses a JSON object whose values are all strings,
// returning its members in order; a name given twice is an error.
func jsonStringObject(text string) ([][2]string, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("want {")
	}
	// The decoder's words for a text cut short differ between Go
	// releases ("EOF", "unexpected end of JSON input"): say it in ours.
	cut := func(err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || dec.InputOffset() >= int64(len(text)) {
			return errors.New("it ends before its closing }")
		}
		return err
	}
	var out [][2]string
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, cut(err)
		}
		k, _ := t.(string)
		if t, err = dec.Token(); err != nil {
			return nil, cut(err)
		}
		val, isString := t.(string)
		if !isString {
			return nil, fmt.Errorf("the value of %q is not a string", k)
		}
		if seen[k] {
			return nil, fmt.Errorf("%q is set twice", k)
		}
		seen[k] = true
		out = append(out, [2]string{k, val})
	}
	if _, err := dec.Token(); err != nil {
		return nil, cut(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("text after the closing }")
	}
	return out, nil
}
