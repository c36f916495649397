package config

import (
	"crypto/x509"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/identity"
)

// Summary describes o in a few lines for "portcullis --check-config": what
// it listens on and how, where users sign in, and each route. It says
// whether each secret is set, never its value.
func (o *Options) Summary() string {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-14s %s\n", label+":", fmt.Sprintf(format, args...))
	}

	switch {
	case o.InsecureServer:
		line("listen", "%s, plain HTTP (insecure_server: TLS must end in front of it)", o.Address)
	case len(o.Certificate) != 0:
		line("listen", "%s, TLS with %s", o.Address, describeCert(o.Certificate))
	default:
		line("listen", "%s, TLS with no certificate configured", o.Address)
	}
	if o.MetricsAddress != "" {
		admin := "no admin API (admin_token not set)"
		if o.AdminToken != "" {
			admin = "admin API at /admin/v1/ (admin_token set)"
		}
		line("metrics", "%s, %s", o.MetricsAddress, admin)
	}
	if o.AuthenticateServiceURL != nil {
		line("authenticate", "%s", o.AuthenticateServiceURL)
	} else {
		line("authenticate", "not set")
	}
	idp := o.IDPProvider
	if idp == "" {
		idp = "not set"
	}
	if o.IDPProviderURL != "" {
		idp += " at " + o.IDPProviderURL
	}
	if o.IDPClientID != "" {
		idp += fmt.Sprintf(", client id %q", o.IDPClientID)
	}
	idp += ", client secret " + setOrNot(len(o.IDPClientSecret) != 0)
	if len(o.IDPScopes) != 0 {
		idp += ", scopes " + strings.Join(o.IDPScopes, ",")
	}
	if o.IDPProvider == "builtin" && o.IDPBuiltinTokenTTL != 0 {
		idp += ", tokens live " + o.IDPBuiltinTokenTTL.String()
	}
	line("identity", "%s", idp)
	line("cookie", "%s, expires after %s", o.CookieName, o.CookieExpire)
	line("tokens", "portcullis-cli's last %s, renewed without a browser until the session ends", o.AccessTokenLifetime)
	line("device sign-in", "codes last %s; devices poll every %s", o.DeviceCodeLifetime, o.DevicePollInterval)
	line("cookie secret", "%s", secretState(o.CookieSecret))
	line("shared secret", "%s", secretState(o.SharedSecret))
	if len(o.SigningKey) != 0 {
		line("signing key", "set")
	} else {
		line("signing key", "not set: tokens are signed with the shared secret")
	}
	if o.DatabrokerStorageType == "postgres" {
		line("sessions", "postgres, shared by replicas (connection string %s); cached sessions keep working for %s while it is down",
			setOrNot(o.DatabrokerStorageConnectionString != ""), o.DatabrokerStorageGrace)
	} else {
		line("sessions", "memory: this process only, so run one replica; sessions end when it restarts")
	}
	line("log", "%s, %s", strings.ToLower(o.LogLevel.String()), o.LogFormat)
	lim := o.Limits
	line("limits", "%d connections, %d per client; per client a minute %d sign-ins, %d logins, %d device polls; %d pending sign-ins; %d sessions per person; sign-in bodies up to %d bytes",
		lim.Connections, lim.ConnectionsPerClient, lim.SignInsPerMinute, lim.LoginsPerMinute, lim.DevicePollsPerMinute, lim.PendingSignIns, lim.SessionsPerPerson, lim.SignInBodyBytes)

	line("routes", "%d", len(o.Routes))
	for _, r := range o.Routes {
		var to []string
		for _, u := range r.To {
			to = append(to, u.String())
		}
		from := "(no from)"
		if r.From != nil {
			from = r.From.String()
		}
		fmt.Fprintf(&b, "  %s → %s\n", from, strings.Join(to, ", "))
		fmt.Fprintf(&b, "      %s\n", strings.Join(routeTraits(&r), "; "))
		if r.IsKubernetes() {
			fmt.Fprintf(&b, "      %s\n", kubernetesIdentity(o, &r))
		}
	}
	return b.String()
}

// secretState says whether a secret that GenerateMissingSecrets would fill
// is set.
func secretState(b []byte) string {
	if len(b) != 0 {
		return "set"
	}
	return "not set: a random one is generated at start, which is fine for one replica only"
}

func setOrNot(set bool) string {
	if set {
		return "set"
	}
	return "not set"
}

// routeTraits lists what matters about a route, one short phrase each.
func routeTraits(r *Route) []string {
	var t []string
	switch {
	case r.KubernetesInCluster:
		t = append(t, fmt.Sprintf("kubernetes in-cluster (the pod's cluster; token from %s, CA from %s)", r.KubernetesServiceAccountTokenFile, r.TLSCustomCAFile))
	case r.KubernetesServiceAccountTokenFile != "":
		t = append(t, fmt.Sprintf("kubernetes (token from %s)", r.KubernetesServiceAccountTokenFile))
	case r.KubernetesServiceAccountToken != "":
		t = append(t, "kubernetes (token inline)")
	default:
		t = append(t, "not kubernetes")
	}
	var up []string
	if r.AllowSPDY {
		up = append(up, "spdy")
	}
	if r.AllowWebsockets {
		up = append(up, "websockets")
	}
	if len(up) == 0 {
		up = append(up, "none")
	}
	t = append(t, "upgrades: "+strings.Join(up, ", "))
	timeout := func(d time.Duration) string {
		if d == 0 {
			return "none"
		}
		return d.String()
	}
	t = append(t, fmt.Sprintf("timeout %s, idle %s", timeout(r.Timeout), timeout(r.IdleTimeout)))
	if r.TLSSkipVerify {
		t = append(t, "tls_skip_verify (upstream certificate not checked)")
	}
	if r.TLSCustomCA != nil {
		t = append(t, "custom CA")
	}
	if r.TLSClientCert != nil {
		t = append(t, "client certificate")
	}
	if r.TLSServerName != "" {
		t = append(t, "server name "+r.TLSServerName)
	}
	var access []string
	if r.Policy != nil {
		n := len(r.Policy.Rules)
		access = append(access, fmt.Sprintf("policy of %d rule%s", n, map[bool]string{true: "", false: "s"}[n == 1]))
	}
	if len(r.AllowedUsers) != 0 {
		access = append(access, fmt.Sprintf("%d allowed users", len(r.AllowedUsers)))
	}
	if len(r.AllowedDomains) != 0 {
		access = append(access, "allowed domains "+strings.Join(r.AllowedDomains, ","))
	}
	if r.AllowAnyAuthenticatedUser {
		access = append(access, "any signed-in user")
	}
	if r.AllowPublicUnauthenticatedAccess {
		access = append(access, "public, no sign-in")
	}
	if len(access) == 0 {
		access = append(access, "nobody (no policy)")
	}
	t = append(t, "access: "+strings.Join(access, ", "))
	return t
}

// kubernetesIdentity says who Kubernetes sees on Kubernetes route r: the
// user name's claim and prefix, and which groups, with what prefix.
func kubernetesIdentity(o *Options, r *Route) string {
	claim := r.KubernetesUsernameClaim
	if claim == "" {
		claim = identity.ClaimEmail
	}
	user := claim
	switch p := r.KubernetesUsernamePrefix; {
	case p == "" && claim != identity.ClaimEmail && o.IDPProvider == "builtin":
		user = `the built-in provider's issuer URL + "#" + ` + claim
	case p == "" && claim != identity.ClaimEmail && o.IDPProviderURL != "":
		user = strconv.Quote(o.IDPProviderURL+"#") + " + " + claim
	case p == "" && claim != identity.ClaimEmail:
		user = `the identity provider's issuer URL + "#" + ` + claim
	case p != "" && p != identity.NoPrefix:
		user = strconv.Quote(p) + " + " + claim
	}
	groups := "every group"
	if len(r.KubernetesGroupsFilter) > 0 {
		groups = "those matching " + strings.Join(r.KubernetesGroupsFilter, ", ")
	}
	if p := r.KubernetesGroupsPrefix; p != "" && p != identity.NoPrefix {
		groups += ", prefixed " + strconv.Quote(p)
	}
	return "kubernetes sees: user " + user + "; groups " + groups
}

// describeCert names the hosts and expiry of the first certificate in a
// PEM chain. A certificate is public: it may be shown.
func describeCert(chain []byte) string {
	b := firstPEM(chain, func(t string) bool { return t == "CERTIFICATE" })
	if b == nil {
		return "a certificate that is not PEM"
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "a certificate that does not parse"
	}
	names := c.DNSNames
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		names = []string{c.Subject.CommonName}
	}
	return fmt.Sprintf("a certificate for %s, valid until %s", strings.Join(names, ", "), c.NotAfter.UTC().Format(time.DateOnly))
}
