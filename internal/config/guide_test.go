package config

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestGuide loads the configuration of Pomerium's "Securing Kubernetes"
// guide twice, as its environment block and as a YAML file: both must
// give the same Options, and those must match the golden rendering.
func TestGuide(t *testing.T) {
	e := readEnvFile(t, "testdata/guide.env")

	// guide.env's POLICY must be the guide's policy block, byte for byte.
	policy, err := base64.StdEncoding.DecodeString(e["POLICY"])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(readTestdata(t, "guide-policy.yaml"), string(policy)); diff != "" {
		t.Fatalf("POLICY in guide.env is not base64 of guide-policy.yaml (-want +got):\n%s", diff)
	}

	fromEnv, err := Load("", e.lookup)
	if err != nil {
		t.Fatalf("Load(env): %v", err)
	}
	fromFile, err := Load("testdata/guide.yaml", nil)
	if err != nil {
		t.Fatalf("Load(guide.yaml): %v", err)
	}
	if diff := cmp.Diff(fromEnv, fromFile, ignorePositions); diff != "" {
		t.Errorf("environment and file give different Options (-env +file):\n%s", diff)
	}

	// Where the policy came from is kept, for the policy package's messages.
	for _, tc := range []struct {
		name       string
		o          *Options
		wantRule   string
		wantCriter string
	}{
		{"env", fromEnv, "POLICY (decoded) line 6", "POLICY (decoded) line 8"},
		{"file", fromFile, "testdata/guide.yaml:17", "testdata/guide.yaml:19"},
	} {
		rule := tc.o.Routes[0].Policy.Rules[0]
		if got := rule.Source; got != tc.wantRule {
			t.Errorf("%s: rule Source = %q, want %q", tc.name, got, tc.wantRule)
		}
		if got := rule.Root.Children[0].Source; got != tc.wantCriter {
			t.Errorf("%s: criterion Source = %q, want %q", tc.name, got, tc.wantCriter)
		}
	}

	golden(t, "testdata/guide.golden.json", render(t, fromEnv))
	golden(t, "testdata/guide.summary.golden", []byte(fromEnv.Summary()))
}

// render shows Options as JSON for golden files: secrets as their length
// and a hash prefix, never their value; policy positions left out.
func render(t *testing.T, o *Options) []byte {
	t.Helper()
	secret := func(b []byte) string {
		if len(b) == 0 {
			return ""
		}
		sum := sha256.Sum256(b)
		return fmt.Sprintf("%d bytes, sha256:%x", len(b), sum[:6])
	}
	secretString := func(s string) string { return secret([]byte(s)) }
	urlString := func(u interface{ String() string }) string { return u.String() }

	var routes []any
	for _, r := range o.Routes {
		var to []string
		for _, u := range r.To {
			to = append(to, u.String())
		}
		var policy any
		if r.Policy != nil {
			var rules []any
			for _, rule := range r.Policy.Rules {
				rules = append(rules, map[string]any{rule.Action: renderExpr(rule.Root)})
			}
			policy = rules
		}
		routes = append(routes, map[string]any{
			"From":                              urlString(r.From),
			"To":                                to,
			"Policy":                            policy,
			"TLSSkipVerify":                     r.TLSSkipVerify,
			"TLSServerName":                     r.TLSServerName,
			"TLSCustomCA":                       secret(r.TLSCustomCA),
			"TLSClientCert":                     secret(r.TLSClientCert),
			"TLSClientKey":                      secret(r.TLSClientKey),
			"TLSCustomCAFile":                   r.TLSCustomCAFile,
			"TLSClientCertFile":                 r.TLSClientCertFile,
			"TLSClientKeyFile":                  r.TLSClientKeyFile,
			"AllowSPDY":                         r.AllowSPDY,
			"AllowWebsockets":                   r.AllowWebsockets,
			"KubernetesServiceAccountToken":     secretString(r.KubernetesServiceAccountToken),
			"KubernetesServiceAccountTokenFile": r.KubernetesServiceAccountTokenFile,
			"PreserveHostHeader":                r.PreserveHostHeader,
			"PassIdentityHeaders":               r.PassIdentityHeaders,
			"Timeout":                           r.Timeout.String(),
			"IdleTimeout":                       r.IdleTimeout.String(),
			"AllowedUsers":                      r.AllowedUsers,
			"AllowedDomains":                    r.AllowedDomains,
			"AllowAnyAuthenticatedUser":         r.AllowAnyAuthenticatedUser,
			"AllowPublicUnauthenticatedAccess":  r.AllowPublicUnauthenticatedAccess,
			"IsKubernetes":                      r.IsKubernetes(),
			"KubernetesUsernameClaim":           r.KubernetesUsernameClaim,
			"KubernetesUsernamePrefix":          r.KubernetesUsernamePrefix,
			"KubernetesGroupsPrefix":            r.KubernetesGroupsPrefix,
			"KubernetesGroupsFilter":            r.KubernetesGroupsFilter,
		})
	}
	auth := ""
	if o.AuthenticateServiceURL != nil {
		auth = o.AuthenticateServiceURL.String()
	}
	out, err := json.MarshalIndent(map[string]any{
		"Address":                o.Address,
		"AuthenticateServiceURL": auth,
		"Certificate":            secret(o.Certificate),
		"CertificateKey":         secret(o.CertificateKey),
		"CookieSecret":           secret(o.CookieSecret),
		"CookieName":             o.CookieName,
		"CookieExpire":           o.CookieExpire.String(),
		"SharedSecret":           secret(o.SharedSecret),
		"SigningKey":             secret(o.SigningKey),
		"IDPProvider":            o.IDPProvider,
		"IDPProviderURL":         o.IDPProviderURL,
		"IDPClientID":            o.IDPClientID,
		"IDPClientSecret":        secretString(o.IDPClientSecret),
		"IDPScopes":              o.IDPScopes,
		"InsecureServer":         o.InsecureServer,
		"MetricsAddress":         o.MetricsAddress,
		"LogLevel":               o.LogLevel.String(),
		"LogFormat":              o.LogFormat,
		"Routes":                 routes,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func renderExpr(e PolicyExpr) any {
	if e.Op == "" {
		return map[string]any{e.Criterion: e.Value}
	}
	children := []any{}
	for _, c := range e.Children {
		children = append(children, renderExpr(c))
	}
	return map[string]any{e.Op: children}
}
