package idp

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// A preset is what Portcullis knows about one named provider
// (IDP_PROVIDER): the values used when the matching IDP_* setting is not
// given, and the provider's quirks. Every preset but github is plain
// OpenID Connect found by discovery; the preset only changes defaults.
type preset struct {
	// issuer is the default IDP_PROVIDER_URL; "" when every customer has
	// their own (a tenant, an org, a realm), and urlHint then says what
	// the URL looks like.
	issuer  string
	urlHint string
	// scopes are the default IDP_SCOPES; scopesFor, when set, picks them
	// by the issuer URL instead.
	scopes    []string
	scopesFor func(issuer string) []string
	// groupsClaim is the default IDP_GROUPS_CLAIM.
	groupsClaim string
	// authParams are added to the sign-in URL; IDP_REQUEST_PARAMS
	// overrides them key by key.
	authParams map[string]string
	// slash says what to do with a trailing slash on the issuer URL: OIDC
	// discovery compares the configured URL with the issuer the provider
	// announces character for character (OpenID Connect Discovery 1.0
	// section 4.3), and people copy URLs with and without one.
	slash slashRule
	// check reports what is wrong with the (normalised) issuer URL, or nil.
	check func(issuer string) error
	// refreshHint ends the error of a refresh without a refresh token: how
	// to make this provider issue one.
	refreshHint string
	// needsSecret is set for providers that refuse to exchange a code
	// without the client secret (there is no public client for a web
	// application there): IDP_CLIENT_SECRET is then required.
	needsSecret bool
	// verifiedClaim is the claim by which the provider says it verified
	// the email address: email_verified unless set (see
	// checkEmailVerified), and verifiedHint says how to make the provider
	// send it.
	verifiedClaim string
	verifiedHint  string
}

type slashRule int

const (
	slashKeep slashRule = iota // the URL is used as written
	slashTrim                  // the provider's issuer never ends with "/"
	slashAdd                   // the provider's issuer always ends with "/"
)

// Default scopes. offline_access asks for a refresh token (OpenID Connect
// Core 1.0 section 11); the providers that refuse the scope, or issue
// refresh tokens without it, leave it out.
var (
	scopesOIDC    = []string{oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess}
	scopesNoOffln = []string{oidc.ScopeOpenID, "email", "profile"}
)

const offlineHint = "is offline_access among IDP_SCOPES, and is the refresh token grant enabled for this client at the provider?"

// presets are the supported values of IDP_PROVIDER.
var presets = map[string]preset{
	// Any OpenID Connect provider, by discovery at IDP_PROVIDER_URL.
	"oidc": {
		urlHint:     "the issuer URL, whose /.well-known/openid-configuration is the provider's discovery document",
		scopes:      scopesOIDC,
		groupsClaim: "groups",
		refreshHint: offlineHint,
	},

	// The provider built into Portcullis (internal/idp/builtin); the server
	// fills in its URL and client.
	"builtin": {
		urlHint:     "set by the server from AUTHENTICATE_SERVICE_URL",
		scopes:      scopesOIDC,
		groupsClaim: "groups",
		refreshHint: offlineHint,
	},

	// Google: https://developers.google.com/identity/openid-connect/openid-connect
	// The issuer is fixed. Google has no offline_access scope: a refresh
	// token needs access_type=offline, and Google sends one only at the
	// first consent unless prompt includes consent
	// (https://developers.google.com/identity/protocols/oauth2/web-server#offline).
	// prompt "select_account consent" is also what Pomerium sends. Google's
	// ID token carries no groups; policies use email or domain (the hd
	// claim) instead.
	"google": {
		issuer:      "https://accounts.google.com",
		scopes:      scopesNoOffln,
		groupsClaim: "groups",
		authParams:  map[string]string{"access_type": "offline", "prompt": "select_account consent"},
		slash:       slashTrim,
		refreshHint: "Google issues one only with access_type=offline and prompt=consent in the sign-in URL: check IDP_REQUEST_PARAMS",
		needsSecret: true,
	},

	// Microsoft Entra ID (Azure AD), v2.0 endpoint:
	// https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc
	// The issuer is per tenant. The groups claim (object IDs) is sent only
	// when the app registration asks for it ("Token configuration > Add
	// groups claim", or groupMembershipClaims in the manifest), and email
	// only as an optional claim or through userinfo:
	// https://learn.microsoft.com/entra/identity-platform/optional-claims-reference
	// prompt=select_account is what Pomerium sends.
	// Entra ID sends no email_verified, and its email claim is whatever a
	// user's mail attribute says, which in many tenants a user or a guest
	// can set ("nOAuth"). The optional claim xms_edov ("email domain owner
	// verified") says whether the tenant owns the address's domain:
	// https://learn.microsoft.com/entra/identity-platform/migrate-off-email-claim-authorization
	"azure": {
		urlHint:       "https://login.microsoftonline.com/{tenant-id}/v2.0",
		scopes:        scopesOIDC,
		groupsClaim:   "groups",
		authParams:    map[string]string{"prompt": "select_account"},
		slash:         slashTrim,
		check:         checkAzure,
		refreshHint:   offlineHint,
		verifiedClaim: "xms_edov",
		verifiedHint:  "add the optional claim xms_edov to the ID token in the app registration (Token configuration > Add optional claim > ID > xms_edov)",
		needsSecret:   true,
	},

	// Okta: https://developer.okta.com/docs/reference/api/oidc/
	// IDP_PROVIDER_URL is the org (https://{org}.okta.com, the org
	// authorization server) or a custom authorization server
	// (https://{org}.okta.com/oauth2/default). A groups claim must be set
	// up on the app or the authorization server, and with the org
	// authorization server asked for with the groups scope (add it to
	// IDP_SCOPES); it is not in the defaults because a custom authorization
	// server refuses scopes it does not define:
	// https://developer.okta.com/docs/guides/customize-tokens-groups-claim/
	"okta": {
		urlHint:     "https://{org}.okta.com, or an authorization server such as https://{org}.okta.com/oauth2/default",
		scopes:      scopesOIDC,
		groupsClaim: "groups",
		slash:       slashTrim,
		refreshHint: offlineHint,
	},

	// Auth0: https://auth0.com/docs/authenticate/protocols/openid-connect-protocol
	// The issuer is https://{tenant}.auth0.com/ (or a custom domain),
	// always with a trailing slash. Auth0 puts no groups in tokens, and
	// "groups" is among the claim names it reserves: a Login Action must
	// add them under a namespaced claim
	// (https://auth0.com/docs/secure/tokens/json-web-tokens/create-custom-claims),
	// and this preset expects https://portcullis/groups.
	"auth0": {
		urlHint:     "https://{tenant}.auth0.com/ (or your custom domain)",
		scopes:      scopesOIDC,
		groupsClaim: "https://portcullis/groups",
		slash:       slashAdd,
		refreshHint: "is offline_access among IDP_SCOPES, and is the Refresh Token grant enabled for the application?",
	},

	// GitLab: https://docs.gitlab.com/integration/openid_connect_provider/
	// gitlab.com by default, or a self-managed instance. GitLab issues
	// refresh tokens without offline_access, a scope it does not define.
	// The ID token carries groups_direct (direct memberships only); groups
	// (direct memberships and those through an ancestor group) comes from
	// userinfo, which identity fetches when the ID token lacks the claim.
	"gitlab": {
		issuer:      "https://gitlab.com",
		scopes:      scopesNoOffln,
		groupsClaim: "groups",
		slash:       slashTrim,
		refreshHint: "GitLab issues one with every sign-in: check the application's settings",
	},

	// OneLogin: https://developers.onelogin.com/openid-connect
	// The current issuer is https://{subdomain}.onelogin.com/oidc/2; the
	// default is the older shared endpoint, as in Pomerium. Version 2 does
	// not know offline_access. The groups scope asks for the groups claim,
	// which the app's "Groups" parameter fills.
	"onelogin": {
		issuer:  "https://openid-connect.onelogin.com/oidc",
		urlHint: "https://{subdomain}.onelogin.com/oidc/2",
		scopesFor: func(issuer string) []string {
			if strings.Contains(issuer, "/oidc/2") {
				return []string{oidc.ScopeOpenID, "email", "profile", "groups"}
			}
			return []string{oidc.ScopeOpenID, "email", "profile", "groups", oidc.ScopeOfflineAccess}
		},
		groupsClaim: "groups",
		slash:       slashTrim,
		refreshHint: "is the refresh token enabled for the app in OneLogin?",
	},

	// Ping Identity: PingOne (https://auth.pingone.com/{environment-id}/as,
	// https://developer.pingidentity.com/pingone-api/auth/openid-connect-oauth-2/)
	// or PingFederate (its base URL). Groups come from an attribute
	// mapping on the application named groups.
	"ping": {
		urlHint:     "https://auth.pingone.com/{environment-id}/as for PingOne, or PingFederate's base URL",
		scopes:      scopesOIDC,
		groupsClaim: "groups",
		refreshHint: offlineHint,
	},

	// Amazon Cognito user pools:
	// https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-id-token.html
	// The issuer is https://cognito-idp.{region}.amazonaws.com/{user-pool-id};
	// the ID token lists the user's pool groups in cognito:groups. Cognito
	// issues a refresh token with every code exchange and does not know
	// offline_access.
	"cognito": {
		urlHint:     "https://cognito-idp.{region}.amazonaws.com/{user-pool-id}",
		scopes:      scopesNoOffln,
		groupsClaim: "cognito:groups",
		slash:       slashTrim,
		refreshHint: "Cognito issues one with every sign-in: check the app client's refresh token expiration",
	},

	// Keycloak: https://www.keycloak.org/docs/latest/server_admin/#_oidc
	// The issuer is the realm URL, https://{host}/realms/{realm} (before
	// Keycloak 17, https://{host}/auth/realms/{realm}). Groups need a
	// "Group Membership" mapper with token claim name groups. Keycloak
	// issues refresh tokens bound to the SSO session without
	// offline_access, which would ask for a long-lived offline token
	// instead; so it is not in the defaults.
	"keycloak": {
		urlHint:     "the realm URL, https://{host}/realms/{realm}",
		scopes:      scopesNoOffln,
		groupsClaim: "groups",
		slash:       slashTrim,
		refreshHint: "check the client's settings in Keycloak",
	},

	// GitHub (OAuth2, not OpenID Connect): see github.go.
	"github": {
		issuer: "https://github.com",
		// user:email reads /user/emails; read:org lists the user's teams.
		// https://docs.github.com/apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps
		scopes:      []string{"user:email", "read:org"},
		slash:       slashTrim,
		needsSecret: true,
	},
}

// providerNames lists the presets for messages.
// ProviderNames lists the supported IDP_PROVIDER values, sorted.
func ProviderNames() []string {
	return slices.Sorted(maps.Keys(presets))
}

// reservedParams are the sign-in URL parameters that Portcullis sets itself
// and IDP_REQUEST_PARAMS must not replace: golang.org/x/oauth2 lets an
// extra parameter overwrite one it set, and each of these carries the
// binding of the sign-in (state, nonce, PKCE: RFC 6749 section 10.12, RFC
// 7636, OpenID Connect Core 1.0 section 3.1.2.1), says where the code goes
// (redirect_uri, response_type, response_mode), who asks (client_id; and
// client_secret, which must never reach a browser), what is asked
// (scope: use IDP_SCOPES), or could replace all of them at once (request,
// request_uri: RFC 9101).
var reservedParams = []string{
	"client_id", "client_secret", "code_challenge", "code_challenge_method", "nonce",
	"redirect_uri", "request", "request_uri", "response_mode", "response_type", "scope", "state",
}

// issuerURL is the issuer URL sign-in uses for the preset: configured
// (IDP_PROVIDER_URL), or else the preset's own, with the preset's rule for
// a trailing slash.
func (p preset) issuerURL(configured string) string {
	u := configured
	if u == "" {
		u = p.issuer
	}
	switch p.slash {
	case slashTrim:
		u = strings.TrimRight(u, "/")
	case slashAdd:
		if u != "" {
			u = strings.TrimRight(u, "/") + "/"
		}
	}
	return u
}

// Issuer returns the issuer URL that sign-in with provider (IDP_PROVIDER)
// uses, given IDP_PROVIDER_URL: the URL as resolved, the preset's own when
// it is not set; "" for a provider that is not one, or that needs a URL
// and has none (Check reports both). It is what kube-apiserver's default
// user name prefix, the issuer URL and "#", is made of. The built-in
// provider's URL is the server's to fill in.
func Issuer(provider, providerURL string) string {
	p, ok := presets[provider]
	if !ok {
		return ""
	}
	return p.issuerURL(providerURL)
}

// resolve fills in opts from the preset of opts.Provider: the Options the
// provider will run with. It does no I/O.
func resolve(opts Options) (Options, error) {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, &SettingError{Setting: setting, Message: fmt.Sprintf(format, args...)})
	}
	p, ok := presets[opts.Provider]
	if !ok {
		return Options{}, &SettingError{Setting: "IDP_PROVIDER",
			Message: fmt.Sprintf("%q is not supported: want one of %s", opts.Provider, strings.Join(ProviderNames(), ", "))}
	}
	opts.ProviderURL = p.issuerURL(opts.ProviderURL)
	if u, err := url.Parse(opts.ProviderURL); opts.ProviderURL == "" {
		bad("IDP_PROVIDER_URL", "not set, and identity provider %q needs it: %s", opts.Provider, p.urlHint)
	} else if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("IDP_PROVIDER_URL", "%q is not an http(s) URL", opts.ProviderURL)
	} else if p.check != nil {
		if err := p.check(opts.ProviderURL); err != nil {
			bad("IDP_PROVIDER_URL", "%q: %v", opts.ProviderURL, err)
		}
	}
	if opts.ClientID == "" {
		bad("IDP_CLIENT_ID", "not set: the client id the identity provider gave this application")
	}
	if p.needsSecret && opts.ClientSecret == "" {
		bad("IDP_CLIENT_SECRET", "not set, and identity provider %q refuses a sign-in without the client secret it gave this application", opts.Provider)
	}
	if len(opts.Scopes) == 0 {
		scopes := p.scopes
		if p.scopesFor != nil {
			scopes = p.scopesFor(opts.ProviderURL)
		}
		opts.Scopes = slices.Clone(scopes)
	}
	if opts.Provider == "github" && opts.GroupsClaim != "" {
		bad("IDP_GROUPS_CLAIM", `does not apply to "github": GitHub has no ID token, and the groups are the user's teams ("org/team-slug"); remove it`)
	}
	if opts.GroupsClaim == "" {
		opts.GroupsClaim = p.groupsClaim
	}
	params := maps.Clone(p.authParams)
	for _, k := range slices.Sorted(maps.Keys(opts.RequestParams)) {
		if k == "" || slices.Contains(reservedParams, k) {
			bad("IDP_REQUEST_PARAMS", "%q cannot be set: Portcullis sets it itself (the parameters that cannot be set are %s)",
				k, strings.Join(reservedParams, ", "))
			continue
		}
		if params == nil {
			params = map[string]string{}
		}
		params[k] = opts.RequestParams[k]
	}
	if len(errs) > 0 {
		return Options{}, errors.Join(errs...)
	}
	opts.RequestParams = params
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return opts, nil
}

// SettingError is a problem with one IDP_* setting.
type SettingError struct {
	// Setting is the environment variable's name: "IDP_PROVIDER_URL".
	Setting string
	// Message says what is wrong and what to do, without the setting's
	// name.
	Message string
}

func (e *SettingError) Error() string { return e.Setting + ": " + e.Message }

// Check reports what is wrong with opts, every problem at once (joined
// *SettingError values), without building or reaching the provider: the
// checks New makes before it does.
func Check(opts Options) error {
	if opts.Provider == "builtin" {
		// Portcullis fills in the built-in provider's URL and client.
		return nil
	}
	_, err := resolve(opts)
	return err
}

// checkAzure refuses the multi-tenant endpoints. With common,
// organizations or consumers in the URL, discovery announces the issuer
// https://login.microsoftonline.com/{tenantid}/v2.0 with a literal
// placeholder, which no ID token matches; accepting any tenant instead
// would let every Microsoft account sign in. A v1.0 URL (no /v2.0)
// announces a sts.windows.net issuer that v2.0 ID tokens do not carry.
// https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc#find-your-apps-openid-configuration-document-uri
func checkAzure(issuer string) error {
	u, _ := url.Parse(issuer)
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[1] != "v2.0" || parts[0] == "" {
		return errors.New("want https://login.microsoftonline.com/{tenant-id}/v2.0")
	}
	switch strings.ToLower(parts[0]) {
	case "common", "organizations", "consumers":
		return fmt.Errorf("%q accepts accounts of any tenant, whose ID tokens cannot be checked against one issuer: use your tenant ID, https://login.microsoftonline.com/{tenant-id}/v2.0", parts[0])
	}
	if strings.Contains(parts[0], ".") {
		// Discovery at a domain name announces the tenant ID as issuer.
		return fmt.Errorf("%q is a domain name: use the tenant ID (a GUID, shown on the tenant's overview page), https://login.microsoftonline.com/{tenant-id}/v2.0", parts[0])
	}
	return nil
}
