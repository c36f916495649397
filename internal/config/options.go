package config

import (
	"log/slog"
	"net/url"
	"time"
)

// Options is the whole server configuration after the environment and the
// optional YAML file have been merged (environment wins) and every encoded
// value (base64, *_FILE) has been decoded. Each field names its environment
// variable; the YAML key is the same name in lower case. Defaults live in
// Defaults() and nowhere else.
type Options struct {
	// Address is the listen address of the main listener. ADDRESS; default ":443".
	Address string

	// AuthenticateServiceURL is the public URL of the sign-in service.
	// AUTHENTICATE_SERVICE_URL; no default.
	AuthenticateServiceURL *url.URL

	// Certificate and CertificateKey are the PEM server certificate chain and
	// key. CERTIFICATE / CERTIFICATE_KEY (base64 of PEM) or CERTIFICATE_FILE /
	// CERTIFICATE_KEY_FILE (a PEM file); no default.
	Certificate    []byte
	CertificateKey []byte

	// CookieSecret seals session cookies and login state; exactly 32 bytes.
	// COOKIE_SECRET (base64) or COOKIE_SECRET_FILE; no default.
	CookieSecret []byte
	// CookieName is the session cookie's name. COOKIE_NAME; default "_pomerium".
	CookieName string
	// CookieExpire bounds a session's life. COOKIE_EXPIRE; default 14h.
	CookieExpire time.Duration
	// AccessTokenLifetime is how long a renewable token (portcullis-cli's)
	// lasts. ACCESS_TOKEN_LIFETIME; default 5m.
	AccessTokenLifetime time.Duration
	// DeviceCodeLifetime is how long a device sign-in's code can be
	// approved and polled for. DEVICE_CODE_LIFETIME; default 10m.
	DeviceCodeLifetime time.Duration
	// DevicePollInterval is the least time between a device's polls
	// (RFC 8628 §3.2 interval). DEVICE_POLL_INTERVAL; default 5s.
	DevicePollInterval time.Duration

	// DatabrokerStorageType is where sessions are kept: "memory" (this
	// process; one replica) or "postgres" (shared by replicas).
	// DATABROKER_STORAGE_TYPE; default "memory".
	DatabrokerStorageType string
	// DatabrokerStorageConnectionString is PostgreSQL's connection string
	// (a postgres:// URL or key=value pairs); a secret, since it may hold
	// a password. DATABROKER_STORAGE_CONNECTION_STRING or its _FILE; no
	// default.
	DatabrokerStorageConnectionString string
	// DatabrokerStorageGrace is how long sessions a replica has already
	// seen keep working while PostgreSQL cannot be reached.
	// DATABROKER_STORAGE_GRACE; default 5m.
	DatabrokerStorageGrace time.Duration

	// SharedSecret is the key material shared by all replicas (token signing
	// when SigningKey is unset); at least 32 bytes. SHARED_SECRET (base64) or
	// SHARED_SECRET_FILE; no default.
	SharedSecret []byte
	// SigningKey is a PEM EC or RSA private key for issued tokens.
	// SIGNING_KEY (base64 of PEM) or SIGNING_KEY_FILE; no default.
	SigningKey []byte

	// IDPProvider names the identity provider (oidc, google, github, …).
	// IDP_PROVIDER; no default.
	IDPProvider string
	// IDPProviderURL is the issuer URL. IDP_PROVIDER_URL; no default.
	IDPProviderURL string
	// IDPClientID / IDPClientSecret are the OAuth2 client credentials.
	// IDP_CLIENT_ID, IDP_CLIENT_SECRET (or IDP_CLIENT_SECRET_FILE).
	IDPClientID     string
	IDPClientSecret string
	// IDPScopes overrides the requested scopes. IDP_SCOPES (comma list; a
	// list or a comma list in the file); default none (the provider's).
	IDPScopes []string
	// IDPGroupsClaim names the ID token (or userinfo) claim that lists the
	// user's groups. IDP_GROUPS_CLAIM; default "" (the provider's: "groups",
	// but "cognito:groups" for cognito and "https://portcullis/groups" for
	// auth0; github has no claim: its groups are teams).
	IDPGroupsClaim string
	// IDPRequestParams are extra parameters of the provider's sign-in URL,
	// such as prompt, login_hint, hd (Google) or domain_hint (Azure). They
	// override the provider's own (Google's access_type and prompt) key by
	// key; the parameters that carry the sign-in's binding or say where
	// the code goes (state, nonce, code_challenge, redirect_uri, scope, …)
	// cannot be set. IDP_REQUEST_PARAMS: a JSON object of strings, as
	// Pomerium takes it ({"prompt":"login"}), or a comma list of key=value
	// (prompt=login,login_hint=a@example.com); in the file also a mapping.
	// Default none.
	IDPRequestParams map[string]string
	// IDPUsersFile is the users file of the built-in provider
	// (IDP_PROVIDER=builtin): email, groups and bcrypt password hash per
	// user. IDP_USERS_FILE; no default.
	IDPUsersFile string
	// IDPBuiltinTokenTTL is the life of the access and ID tokens the
	// built-in provider issues, and so how often Portcullis refreshes a
	// session with it: a person removed from the users file is shut out
	// within it (plus a second). Short values (such as 5s) are for tests
	// and demos; at least 1s. IDP_BUILTIN_TOKEN_TTL (a Go duration);
	// default 1h.
	IDPBuiltinTokenTTL time.Duration

	// KubernetesUsernameClaim, KubernetesUsernamePrefix,
	// KubernetesGroupsPrefix and KubernetesGroupsFilter are the identity
	// mapping of the Kubernetes routes that do not set their own: Load
	// copies each into every route that does not set the route key (see
	// Route). KUBERNETES_USERNAME_CLAIM (default "email"),
	// KUBERNETES_USERNAME_PREFIX, KUBERNETES_GROUPS_PREFIX,
	// KUBERNETES_GROUPS_FILTER (a comma list, or a JSON list; in the file
	// also a YAML list); the others default to none.
	KubernetesUsernameClaim  string
	KubernetesUsernamePrefix string
	KubernetesGroupsPrefix   string
	KubernetesGroupsFilter   []string

	// InsecureServer serves plain HTTP, for use behind a TLS-terminating
	// load balancer. INSECURE_SERVER; default false.
	InsecureServer bool
	// MetricsAddress serves Prometheus metrics when set. METRICS_ADDRESS;
	// default "" (off).
	MetricsAddress string
	// AdminToken is the bearer token of the admin API on the metrics
	// listener; a secret. ADMIN_TOKEN or ADMIN_TOKEN_FILE; default ""
	// (no admin API).
	AdminToken string
	// AuditLogPath is where audit events are written as JSON lines; "-"
	// is standard output. AUDIT_LOG_PATH; default "" (none).
	AuditLogPath string
	// AuditLogMaxSize is the audit log's size in megabytes at which it is
	// rotated; 0 never. AUDIT_LOG_MAXSIZE; default 100.
	AuditLogMaxSize int
	// AuditLogMaxBackup is how many rotated audit logs are kept; 0 all.
	// AUDIT_LOG_MAXBACKUP; default 10.
	AuditLogMaxBackup int
	// AuditPolicyFile is an audit policy (audit.k8s.io/v1 Policy).
	// AUDIT_POLICY_FILE; default "" (Metadata for every request).
	AuditPolicyFile string
	// AuditWebhookConfigFile is a kubeconfig-format file naming the audit
	// webhook. AUDIT_WEBHOOK_CONFIG_FILE; default "" (none).
	AuditWebhookConfigFile string
	// LogLevel is debug, info, warn or error. LOG_LEVEL; default info.
	LogLevel slog.Level
	// LogFormat is "json" or "text". LOG_FORMAT; default "json".
	LogFormat string

	// Limits bound what clients can make Portcullis hold or do: see Limits.
	Limits Limits

	// Routes come from POLICY and ROUTES (base64 of a YAML list) or the
	// file's `policy:` and `routes:` keys, in that order.
	Routes []Route

	// loc is where Load found each setting, so that Check names them as
	// Load did; nil for Options built in code.
	loc *locations
	// warnings are what the last Load or Check warned about.
	warnings []*Problem
	// files are the files Load read the settings from (see Files).
	files []string
}

// Limits bound what clients can make Portcullis hold or do, so that one
// client cannot exhaust the server or lock other people out of it. A
// client is a client address, an IPv6 address counting as its /64. Every
// limit is at least 1; defaults in Defaults.
type Limits struct {
	// Connections caps the connections open on the main listener; one
	// more is closed as soon as it is accepted. LIMIT_CONNECTIONS; default
	// 10000.
	Connections int
	// ConnectionsPerClient caps the connections one client address may
	// have open on the main listener. LIMIT_CONNECTIONS_PER_CLIENT;
	// default 2500.
	ConnectionsPerClient int
	// SignInsPerMinute is how many sign-ins one client address may start
	// (and complete) a minute on the authenticate service, with as many
	// at once; more get 429 Too Many Requests. LIMIT_SIGN_INS_PER_MINUTE;
	// default 30.
	SignInsPerMinute int
	// LoginsPerMinute is how many calls of the programmatic login API
	// (portcullis-cli's /.pomerium/api/v1/login) one client address may
	// make a minute, with as many at once. LIMIT_LOGINS_PER_MINUTE;
	// default 60.
	LoginsPerMinute int
	// PendingSignIns caps the sign-ins Portcullis remembers, for ten
	// minutes each, to refuse a replay of their callback: more are refused
	// with 503 until older ones are forgotten. LIMIT_PENDING_SIGN_INS;
	// default 10000.
	PendingSignIns int
	// SessionsPerPerson caps one person's (one subject's) sessions: a new
	// sign-in past it ends that person's oldest session.
	// LIMIT_SESSIONS_PER_PERSON; default 50.
	SessionsPerPerson int
	// SignInBodyBytes caps the body of a request to a sign-in, sign-out or
	// login endpoint, the built-in provider's included; a larger one gets
	// 413. LIMIT_SIGN_IN_BODY_BYTES; default 65536.
	SignInBodyBytes int
	// DevicePollsPerMinute is how many polls of the device sign-in's token
	// endpoint one client address may make a minute, with as many at once;
	// more get 429. LIMIT_DEVICE_POLLS_PER_MINUTE; default 144 (a dozen
	// devices polling every five seconds).
	DevicePollsPerMinute int
}

// Route maps one public host to one Kubernetes API server (or any upstream).
// Each field's comment names its YAML key (the same in POLICY and ROUTES).
// Route defaults are applied by Load, see Defaults.
type Route struct {
	// From is the public URL (scheme and host, optional port) requests
	// arrive at. from; required.
	From *url.URL
	// To lists the upstream URLs; the proxy moves on to the next one when a
	// connection fails. to (a URL or a list of URLs); required.
	To []*url.URL

	// Policy is the route's PPL policy as parsed from the config; the policy
	// package compiles it. policy; default nil (no rules).
	Policy *Policy

	// TLSSkipVerify turns off verification of the upstream's certificate.
	// tls_skip_verify; default false. Dangerous: the server warns at start.
	TLSSkipVerify bool
	// TLSServerName overrides the name verified in the upstream's
	// certificate. tls_server_name; default the host of To.
	TLSServerName string

	// TLSCustomCA is the PEM bundle that verifies the upstream, from
	// tls_custom_ca (base64 of PEM) or tls_custom_ca_file (a PEM file);
	// default the system roots.
	TLSCustomCA []byte
	// TLSClientCert and TLSClientKey are the PEM client certificate and key
	// presented to the upstream, from tls_client_cert / tls_client_key
	// (base64 of PEM) or tls_client_cert_file / tls_client_key_file.
	TLSClientCert []byte
	TLSClientKey  []byte
	// The *File fields keep the path when a *_file key was used (the file
	// has been read into the field above), for messages and reload.
	TLSCustomCAFile   string
	TLSClientCertFile string
	TLSClientKeyFile  string

	// AllowSPDY / AllowWebsockets permit upgraded connections. allow_spdy,
	// allow_websockets; both default to true on Kubernetes routes and false
	// elsewhere.
	AllowSPDY       bool
	AllowWebsockets bool

	// KubernetesServiceAccountToken (inline) or KubernetesServiceAccountTokenFile
	// (re-read on rotation) make this a Kubernetes route: requests are sent
	// with this token and Impersonate-* headers.
	// kubernetes_service_account_token / kubernetes_service_account_token_file;
	// at most one of them. Load does not read the file: it is read at run
	// time, so that a rotated projected token is picked up.
	KubernetesServiceAccountToken     string
	KubernetesServiceAccountTokenFile string
	// KubernetesInCluster makes this a Kubernetes route to the cluster
	// Portcullis runs in: Load sets To, TLSCustomCA(File) and
	// KubernetesServiceAccountTokenFile from the pod's environment and its
	// mounted service account, as client-go's in-cluster configuration
	// finds them (incluster.go). kubernetes_in_cluster; default false.
	KubernetesInCluster bool
	// KubernetesAllowSystemNames lets a user or group name beginning with
	// "system:" be impersonated. Kubernetes reserves that prefix for its
	// own identities (system:masters is cluster-admin, system:node:… a
	// kubelet, system:serviceaccount:… a service account), so by default
	// a person whose provider names them so is refused.
	// kubernetes_allow_system_names; default false; Kubernetes routes only.
	KubernetesAllowSystemNames bool

	// KubernetesUsernameClaim is the claim whose value is the user name
	// Kubernetes sees ("" is "email"); KubernetesUsernamePrefix goes
	// before it ("": kube-apiserver's default, the issuer URL and "#" for a
	// claim other than email; "-": none); KubernetesGroupsPrefix goes
	// before each group ("" or "-": none); KubernetesGroupsFilter lists the
	// patterns of the groups that reach Kubernetes (identity.GroupFilter;
	// none: every group). kubernetes_username_claim,
	// kubernetes_username_prefix, kubernetes_groups_prefix,
	// kubernetes_groups_filter; each defaults to the top-level setting of
	// the same name (Load copies it); Kubernetes routes only.
	KubernetesUsernameClaim  string
	KubernetesUsernamePrefix string
	KubernetesGroupsPrefix   string
	KubernetesGroupsFilter   []string

	// PreserveHostHeader sends the client's Host header upstream instead of
	// the host of To. preserve_host_header; default false.
	PreserveHostHeader bool
	// PassIdentityHeaders adds the signed identity headers upstream.
	// pass_identity_headers; default false.
	PassIdentityHeaders bool

	// Timeout bounds a whole request; 0 means none. timeout; default 30s,
	// and none on Kubernetes routes, whose watch, logs -f and exec streams
	// are long-lived.
	Timeout time.Duration
	// IdleTimeout closes a stream idle for that long; 0 means none.
	// idle_timeout; default 5m, and none on Kubernetes routes.
	IdleTimeout time.Duration

	// Legacy access keys (allowed_users, allowed_domains,
	// allow_any_authenticated_user, allow_public_unauthenticated_access);
	// the policy package turns them into rules. Defaults empty and false.
	AllowedUsers                     []string
	AllowedDomains                   []string
	AllowAnyAuthenticatedUser        bool
	AllowPublicUnauthenticatedAccess bool
}

// IsKubernetes reports whether the route forwards to kube-apiserver with
// impersonation.
func (r *Route) IsKubernetes() bool {
	return r.KubernetesServiceAccountToken != "" || r.KubernetesServiceAccountTokenFile != ""
}
