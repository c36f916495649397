package server

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/audit"
	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/idp"
	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/kube"
	"github.com/portcullis-proxy/portcullis/internal/policy"
)

// Checks are the checks of a configuration that need more than the config
// package knows: that policies compile, that the identity provider's
// settings resolve, that the files the server reads exist and parse, that
// there is a certificate to serve with. `portcullis --check-config` runs
// them through config.Load, and New runs them again through
// Options.Check: what the check accepts, the server starts with, and what
// it refuses, the server refuses with the same words. Nothing New does
// after them may fail on configuration, only on the machine (a port in
// use) or the network.
func Checks() []config.Check {
	return []config.Check{checkCertificate, checkPolicies, checkIdentityProvider, checkKubernetesIdentity, checkRouteFiles, checkAudit}
}

// ConfigError is New's refusal of a configuration that Checks (or
// config's own validation) finds problems in; it joins every Problem (see
// config.Problems).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return "configuration: " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// checkCertificate: TLS needs a certificate, unless INSECURE_SERVER says
// that TLS ends in front of Portcullis; and the certificate should cover
// every host browsers and kubectl reach it by (a warning: a load balancer
// may present another).
func checkCertificate(o *config.Options, r *config.Reporter) {
	if o.InsecureServer || r.Failed("certificate") || r.Failed("certificate_key") {
		return
	}
	if len(o.Certificate) == 0 && len(o.CertificateKey) == 0 {
		r.Top("certificate", "no TLS certificate: set %s and %s (or %s and %s), or set %s to true to serve plain HTTP behind a proxy that terminates TLS",
			r.Name("certificate", "certificate"), r.Name("certificate", "certificate_key"),
			r.Name("certificate", "certificate_file"), r.Name("certificate", "certificate_key_file"),
			r.Name("certificate", "insecure_server"))
		return
	}
	cert, err := loadCertificate(o.Certificate, o.CertificateKey)
	if err != nil {
		// config's own validation has named what is wrong with the pair.
		return
	}
	leaf := cert.Leaf
	if leaf == nil {
		return
	}
	if time.Now().After(leaf.NotAfter) {
		r.Warn("certificate", "the certificate expired on %s: clients will refuse it", leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	var uncovered []string
	for _, host := range servedHosts(o) {
		if err := leaf.VerifyHostname(host); err != nil {
			uncovered = append(uncovered, host)
		}
	}
	if len(uncovered) > 0 {
		r.Warn("certificate", "the certificate does not cover %s (it names %s): clients reaching Portcullis there will refuse it, unless something in front presents another",
			strings.Join(uncovered, ", "), certNames(leaf))
	}
}

// servedHosts lists the host names (without ports) of the authenticate
// service and every route.
func servedHosts(o *config.Options) []string {
	var hosts []string
	seen := map[string]bool{}
	add := func(h string) {
		if h != "" && !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	if o.AuthenticateServiceURL != nil {
		add(o.AuthenticateServiceURL.Hostname())
	}
	for i := range o.Routes {
		if from := o.Routes[i].From; from != nil {
			add(from.Hostname())
		}
	}
	return hosts
}

// certNames lists what a certificate is valid for.
func certNames(c *x509.Certificate) string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no host"
	}
	return strings.Join(names, ", ")
}

// checkPolicies compiles every route's policy; the compiler's problems
// already say where they are.
func checkPolicies(o *config.Options, r *config.Reporter) {
	if _, err := policy.CompileRoutes(o.Routes); err != nil {
		for _, p := range config.Problems(err) {
			r.Problem(p)
		}
	}
}

// idpSettings maps the identity provider's setting names to config keys.
var idpSettings = map[string]string{
	"IDP_PROVIDER":       "idp_provider",
	"IDP_PROVIDER_URL":   "idp_provider_url",
	"IDP_CLIENT_ID":      "idp_client_id",
	"IDP_CLIENT_SECRET":  "idp_client_secret",
	"IDP_SCOPES":         "idp_scopes",
	"IDP_GROUPS_CLAIM":   "idp_groups_claim",
	"IDP_REQUEST_PARAMS": "idp_request_params",
}

// checkIdentityProvider resolves the identity provider's settings as
// idp.New will, and checks the built-in provider's users file.
func checkIdentityProvider(o *config.Options, r *config.Reporter) {
	if o.IDPProvider == "" || r.Failed("idp_provider") {
		return
	}
	if o.AuthenticateServiceURL == nil && !r.Failed("authenticate_service_url") {
		r.Top("idp_provider", "set, but %s is not: the identity provider sends people back to the sign-in service there; set it, such as https://authenticate.example.com",
			r.Name("idp_provider", "authenticate_service_url"))
	}
	if o.IDPProvider == "builtin" {
		switch {
		case r.Failed("idp_users_file"):
		case o.IDPUsersFile == "":
			r.Top("idp_provider", "builtin needs %s: a YAML list of {email, groups, password_hash}", r.Name("idp_provider", "idp_users_file"))
		default:
			if _, err := builtin.LoadUsers(o.IDPUsersFile); err != nil {
				r.Top("idp_users_file", "%v", err)
			}
		}
		return
	}
	err := idp.Check(idp.Options{
		Provider: o.IDPProvider, ProviderURL: o.IDPProviderURL,
		ClientID: o.IDPClientID, ClientSecret: o.IDPClientSecret,
		Scopes: o.IDPScopes, GroupsClaim: o.IDPGroupsClaim, RequestParams: o.IDPRequestParams,
	})
	for _, e := range joined(err) {
		var se *idp.SettingError
		if !errors.As(e, &se) {
			r.Top("idp_provider", "%v", e)
			continue
		}
		key := idpSettings[se.Setting]
		if key == "" {
			key = "idp_provider"
		}
		msg := se.Message
		if key == "idp_provider" {
			if s := config.Closest(o.IDPProvider, idp.ProviderNames()); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
		}
		if !r.Failed(key) {
			r.Top(key, "%s", msg)
		}
	}
}

// checkRouteFiles reads what a route reads at start: the service-account
// token, from its file or inline, and warns about switches that turn off
// a protection.
func checkRouteFiles(o *config.Options, r *config.Reporter) {
	for i := range o.Routes {
		rt := &o.Routes[i]
		switch {
		case rt.KubernetesServiceAccountTokenFile != "" && !r.RouteFailed(i, "kubernetes_service_account_token_file"):
			if _, err := kube.NewFileToken(rt.KubernetesServiceAccountTokenFile, nil); err != nil {
				r.Route(i, o, "kubernetes_service_account_token_file", "%v", err)
			}
		case rt.KubernetesServiceAccountToken != "" && !r.RouteFailed(i, "kubernetes_service_account_token"):
			if err := kube.CheckToken(rt.KubernetesServiceAccountToken); err != nil {
				r.Route(i, o, "kubernetes_service_account_token", "%v: want the service account's bearer token, such as the output of \"kubectl create token SERVICE-ACCOUNT\"", err)
			}
		}
		if rt.TLSSkipVerify {
			r.WarnRoute(i, o, "tls_skip_verify", "the upstream's certificate is not checked: anyone on the network path to %s can read and change this route's traffic, service-account token included; set tls_custom_ca instead",
				upstreamHosts(rt))
		}
	}
}

// checkAudit reads what the audit trail reads at start: the policy and
// the webhook's kubeconfig, and that the log's directory exists; and warns
// about a policy with no sink to write to.
func checkAudit(o *config.Options, r *config.Reporter) {
	if o.AuditPolicyFile != "" && !r.Failed("audit_policy_file") {
		if _, err := audit.LoadPolicy(o.AuditPolicyFile); err != nil {
			r.Top("audit_policy_file", "%v", err)
		}
		if o.AuditLogPath == "" && o.AuditWebhookConfigFile == "" {
			r.Warn("audit_policy_file", "an audit policy is set but no sink: set %s or %s, or nothing is recorded",
				r.Name("audit_policy_file", "audit_log_path"), r.Name("audit_policy_file", "audit_webhook_config_file"))
		}
	}
	if o.AuditWebhookConfigFile != "" && !r.Failed("audit_webhook_config_file") {
		// Reads and checks the file; reaches no network.
		if sink, err := audit.NewWebhookSink(o.AuditWebhookConfigFile, auditWebhookTimeout); err != nil {
			r.Top("audit_webhook_config_file", "%v", err)
		} else {
			if w, ok := sink.(interface{ Warnings() []string }); ok {
				for _, msg := range w.Warnings() {
					r.Warn("audit_webhook_config_file", "%s", msg)
				}
			}
			sink.Close()
		}
	}
	if p := o.AuditLogPath; p != "" && p != "-" && !r.Failed("audit_log_path") {
		if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
			r.Top("audit_log_path", "the directory of %q does not exist: create it, writable by Portcullis's user", p)
		}
	}
}

func upstreamHosts(rt *config.Route) string {
	var hosts []string
	for _, u := range rt.To {
		if u != nil {
			hosts = append(hosts, u.Host)
		}
	}
	return strings.Join(hosts, ", ")
}

// joined returns the errors an errors.Join holds, or err itself.
func joined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
