package direct

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The names the files are written under.
const (
	AuthenticationFile    = "authentication-config.yaml"
	AuthorizationFile     = "authorization-config.yaml"
	WebhookKubeconfigFile = "portcullis-webhook.kubeconfig"
)

// ExtraSession is the user extra key under which kube-apiserver passes a
// person's sealed Portcullis session (the token's kubernetes_session
// claim) to the authorization webhook. Reviews without it are not a
// Portcullis person's and are not sent to the webhook at all.
const ExtraSession = "portcullis.io/session"

// CacheTTL is how long kube-apiserver keeps a webhook decision, allowed
// or not: the longest a signed-out person's token keeps working, and a
// policy change takes to apply, in direct mode. kube-apiserver's defaults
// (5 minutes allowed, 30 seconds not) would keep a signed-out person in
// for minutes; 10 seconds keeps Portcullis to about one review per
// person, resource and verb every 10 seconds of use.
const CacheTTL = 10 * time.Second

// WebhookTimeout bounds each review; past it the failure policy decides.
const WebhookTimeout = 3 * time.Second

// Options are the values of the files.
type Options struct {
	// Issuer is the tokens' "iss": the authenticate service URL, which
	// serves /.well-known/openid-configuration.
	Issuer string
	// Audience is the route's token audience: tokens for other routes,
	// and other clusters, are refused.
	Audience string
	// CAPEM is the certificate authority (PEM) kube-apiserver trusts for
	// Portcullis's serving certificate, for both the issuer and the
	// webhook; empty for the apiserver host's system roots.
	CAPEM []byte
	// WebhookURL is the route's authorization webhook.
	WebhookURL string
	// WebhookToken is the bearer token kube-apiserver presents to it.
	WebhookToken string
	// WebhookKubeconfigPath is where kube-apiserver will read the
	// webhook kubeconfig: the authorization configuration names it.
	WebhookKubeconfigPath string
}

// Files are the three files, by name.
type Files map[string][]byte

// Generate writes the files o describes.
func Generate(o Options) (Files, error) {
	for _, c := range []struct{ name, val string }{
		{"issuer", o.Issuer}, {"audience", o.Audience}, {"webhook URL", o.WebhookURL},
		{"webhook token", o.WebhookToken}, {"webhook kubeconfig path", o.WebhookKubeconfigPath},
	} {
		if c.val == "" {
			return nil, fmt.Errorf("writing the direct-mode files: no %s", c.name)
		}
	}
	for _, u := range []string{o.Issuer, o.WebhookURL} {
		// kube-apiserver refuses a plain-http issuer; the webhook's token
		// must not travel in the clear either.
		if p, err := url.Parse(u); err != nil || p.Scheme != "https" || p.Host == "" {
			return nil, fmt.Errorf("writing the direct-mode files: %q is not an https URL: kube-apiserver reaches Portcullis over https only", u)
		}
	}
	if !strings.HasPrefix(o.WebhookKubeconfigPath, "/") {
		return nil, errors.New("writing the direct-mode files: the webhook kubeconfig path must be absolute: kube-apiserver reads it from its own working directory otherwise")
	}
	authn, err := marshal(authenticationConfig(o))
	if err != nil {
		return nil, err
	}
	authz, err := marshal(authorizationConfig(o))
	if err != nil {
		return nil, err
	}
	kc, err := marshal(webhookKubeconfig(o))
	if err != nil {
		return nil, err
	}
	return Files{AuthenticationFile: authn, AuthorizationFile: authz, WebhookKubeconfigFile: kc}, nil
}

func marshal(v any) ([]byte, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("writing the direct-mode files: %w", err)
	}
	return b, nil
}

type object = map[string]any

// authenticationConfig is apiserver.config.k8s.io/v1
// AuthenticationConfiguration with one JWT authenticator for Portcullis
// tokens. The user name and groups are the route's identity mapping as
// Portcullis computed it when it issued the token (kubernetes_user,
// kubernetes_groups, or groups when the mapping leaves them unchanged),
// so RBAC sees the same names as through the proxy. A token without them
// (not for a Kubernetes route, or a person the mapping gives no name) is
// refused, and so is any system: name, as Portcullis never issues one.
func authenticationConfig(o Options) object {
	issuer := object{
		"url":                 o.Issuer,
		"audiences":           []string{o.Audience},
		"audienceMatchPolicy": "MatchAny",
	}
	if len(o.CAPEM) > 0 {
		issuer["certificateAuthority"] = string(o.CAPEM)
	}
	return object{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AuthenticationConfiguration",
		"jwt": []object{{
			"issuer": issuer,
			"claimValidationRules": []object{{
				"expression": "has(claims.kubernetes_user) && has(claims.kubernetes_session)",
				"message":    "portcullis: the token is not for a Kubernetes route of Portcullis, or carries no Kubernetes user name",
			}},
			"claimMappings": object{
				"username": object{"expression": "claims.kubernetes_user"},
				"groups":   object{"expression": "has(claims.kubernetes_groups) ? claims.kubernetes_groups : (has(claims.groups) ? claims.groups : [])"},
				"uid":      object{"expression": "claims.sub"},
				"extra": []object{{
					"key":             ExtraSession,
					"valueExpression": "claims.kubernetes_session",
				}},
			},
			"userValidationRules": []object{
				{
					"expression": "!user.username.startsWith('system:')",
					"message":    "portcullis: user names beginning with system: are reserved for Kubernetes's own identities",
				},
				{
					"expression": "user.groups.all(g, !g.startsWith('system:'))",
					"message":    "portcullis: group names beginning with system: are reserved for Kubernetes's own identities",
				},
			},
		}},
	}
}

// authorizationConfig is apiserver.config.k8s.io/v1
// AuthorizationConfiguration: the Node authorizer, then Portcullis's
// webhook for Portcullis's people only (the match condition), then RBAC.
// The webhook denies what the route's policy denies, and has no opinion
// on the rest, so RBAC decides it. When Portcullis cannot be reached, the
// failure policy is Deny: a person signed in with Portcullis is refused
// rather than let through undecided; every other user (kubelets,
// controllers, service accounts, administrators with certificates) never
// waits on Portcullis.
func authorizationConfig(o Options) object {
	return object{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AuthorizationConfiguration",
		"authorizers": []object{
			{"type": "Node", "name": "node"},
			{
				"type": "Webhook",
				"name": "portcullis",
				"webhook": object{
					"timeout":                    WebhookTimeout.String(),
					"subjectAccessReviewVersion": "v1",
					"matchConditionSubjectAccessReviewVersion": "v1",
					"failurePolicy":             "Deny",
					"authorizedTTL":             CacheTTL.String(),
					"unauthorizedTTL":           CacheTTL.String(),
					"cacheAuthorizedRequests":   true,
					"cacheUnauthorizedRequests": true,
					"connectionInfo": object{
						"type":           "KubeConfigFile",
						"kubeConfigFile": o.WebhookKubeconfigPath,
					},
					"matchConditions": []object{{
						"expression": fmt.Sprintf("has(request.extra) && %q in request.extra", ExtraSession),
					}},
				},
			},
			{"type": "RBAC", "name": "rbac"},
		},
	}
}

// webhookKubeconfig is the kubeconfig kube-apiserver reaches the webhook
// with: its URL, the CA, and the bearer token that tells Portcullis the
// review comes from this cluster's apiserver.
func webhookKubeconfig(o Options) object {
	cluster := object{"server": o.WebhookURL}
	if len(o.CAPEM) > 0 {
		cluster["certificate-authority-data"] = base64.StdEncoding.EncodeToString(o.CAPEM)
	}
	return object{
		"apiVersion":      "v1",
		"kind":            "Config",
		"clusters":        []object{{"name": "portcullis", "cluster": cluster}},
		"users":           []object{{"name": "kube-apiserver", "user": object{"token": o.WebhookToken}}},
		"contexts":        []object{{"name": "portcullis", "context": object{"cluster": "portcullis", "user": "kube-apiserver"}}},
		"current-context": "portcullis",
	}
}
