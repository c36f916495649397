package identity_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/kube"
)

const issuer = "https://accounts.example.com"

// alice is a person as a session holds her: the provider's text claims,
// and email, sub, name and groups as authentication established them.
func alice() *identity.Identity {
	return &identity.Identity{
		User: "00u1234", Email: "alice@example.com", Name: "Alice Example",
		Groups: []string{"dev", "team-a", "sre", "team-b"},
		Claims: map[string][]string{
			"email": {"alice@example.com"}, "sub": {"00u1234"}, "name": {"Alice Example"},
			"preferred_username": {"alice"}, "upn": {"alice@corp.example.com"},
			"roles": {"reader", "writer"}, "one_role": {"reader"}, "nothing": {}, "empty": {""},
			"long": {strings.Repeat("a", 1024)},
			"ctl":  {"ali\x00ce"}, "crlf": {"alice\r\nImpersonate-Group: system:masters"},
			"spaced": {" alice"}, "sysuser": {"system:admin"}, "stem": {"tem:masters"},
			"bad_utf8": {"ali\xffce"},
		},
		SessionID: "s1",
	}
}

// TestKubernetesMapping: which claim is the user name, the prefixes as
// kube-apiserver applies its --oidc-username-prefix and --oidc-groups-prefix,
// and the group filter.
func TestKubernetesMapping(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       identity.KubernetesOptions
		wantUser   string
		wantGroups []string
	}{
		{"the default: email and every group", identity.KubernetesOptions{}, "alice@example.com", []string{"dev", "team-a", "sre", "team-b"}},
		{"email, named", identity.KubernetesOptions{UsernameClaim: "email", Issuer: issuer}, "alice@example.com", []string{"dev", "team-a", "sre", "team-b"}},
		{"email with a prefix", identity.KubernetesOptions{UsernamePrefix: "oidc:"}, "oidc:alice@example.com", []string{"dev", "team-a", "sre", "team-b"}},
		{"email, prefix -", identity.KubernetesOptions{UsernamePrefix: "-"}, "alice@example.com", []string{"dev", "team-a", "sre", "team-b"}},
		// kube-apiserver: a claim other than email, with no prefix given,
		// is prefixed with the issuer URL and #.
		{"sub: the issuer's prefix", identity.KubernetesOptions{UsernameClaim: "sub", Issuer: issuer}, issuer + "#00u1234", []string{"dev", "team-a", "sre", "team-b"}},
		{"sub, prefix -", identity.KubernetesOptions{UsernameClaim: "sub", UsernamePrefix: "-", Issuer: issuer}, "00u1234", []string{"dev", "team-a", "sre", "team-b"}},
		{"sub, prefix given", identity.KubernetesOptions{UsernameClaim: "sub", UsernamePrefix: "acme:", Issuer: issuer}, "acme:00u1234", []string{"dev", "team-a", "sre", "team-b"}},
		{"sub, prefix given, no issuer", identity.KubernetesOptions{UsernameClaim: "sub", UsernamePrefix: "acme:"}, "acme:00u1234", []string{"dev", "team-a", "sre", "team-b"}},
		{"name", identity.KubernetesOptions{UsernameClaim: "name", UsernamePrefix: "-"}, "Alice Example", []string{"dev", "team-a", "sre", "team-b"}},
		{"preferred_username", identity.KubernetesOptions{UsernameClaim: "preferred_username", Issuer: issuer}, issuer + "#alice", []string{"dev", "team-a", "sre", "team-b"}},
		{"upn with a prefix", identity.KubernetesOptions{UsernameClaim: "upn", UsernamePrefix: "oidc:"}, "oidc:alice@corp.example.com", []string{"dev", "team-a", "sre", "team-b"}},
		{"a list of one", identity.KubernetesOptions{UsernameClaim: "one_role", UsernamePrefix: "-"}, "reader", []string{"dev", "team-a", "sre", "team-b"}},
		{"a long claim", identity.KubernetesOptions{UsernameClaim: "long", UsernamePrefix: "-"}, strings.Repeat("a", 1024), []string{"dev", "team-a", "sre", "team-b"}},
		{"groups prefix", identity.KubernetesOptions{GroupsPrefix: "oidc:"}, "alice@example.com", []string{"oidc:dev", "oidc:team-a", "oidc:sre", "oidc:team-b"}},
		{"groups prefix -", identity.KubernetesOptions{GroupsPrefix: "-"}, "alice@example.com", []string{"dev", "team-a", "sre", "team-b"}},
		{"filter, matched before the prefix", identity.KubernetesOptions{GroupsPrefix: "oidc:", GroupsFilter: []string{"team-*", "sre"}},
			"alice@example.com", []string{"oidc:team-a", "oidc:sre", "oidc:team-b"}},
		{"filter that keeps none", identity.KubernetesOptions{GroupsFilter: []string{"oidc:*"}}, "alice@example.com", []string{}},
		{"filter *", identity.KubernetesOptions{GroupsFilter: []string{"*"}}, "alice@example.com", []string{"dev", "team-a", "sre", "team-b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := identity.NewKubernetesMapping(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			id := alice()
			user, groups, err := m.Map(id)
			if err != nil {
				t.Fatal(err)
			}
			if user != tc.wantUser || !slices.Equal(groups, tc.wantGroups) {
				t.Errorf("got %q %q, want %q %q", user, groups, tc.wantUser, tc.wantGroups)
			}
			if err := (kube.Impersonator{}).Check(user, groups); err != nil {
				t.Errorf("the impersonation refuses what the mapping gave: %v", err)
			}
			if !slices.Equal(id.Groups, alice().Groups) {
				t.Errorf("the person's groups changed to %q: policies must see the provider's", id.Groups)
			}
			// The identity the proxy impersonates.
			mapped := id.WithKubernetes(user, groups)
			if u, g := mapped.Kubernetes(); u != user || !slices.Equal(g, groups) {
				t.Errorf("WithKubernetes: Kubernetes() = %q %q", u, g)
			}
			if mapped.Email != id.Email || !slices.Equal(mapped.Groups, id.Groups) {
				t.Errorf("WithKubernetes changed the person: %+v", mapped)
			}
			if u, g := id.Kubernetes(); u != id.Email || !slices.Equal(g, id.Groups) {
				t.Errorf("WithKubernetes changed the original: %q %q", u, g)
			}
		})
	}
}

// TestKubernetesMappingRefuses: a mapping that would give no user name
// refuses, saying which claim and why; one whose name Kubernetes must not
// be asked for is refused by the impersonation's check, on the name as
// mapped.
func TestKubernetesMappingRefuses(t *testing.T) {
	noClaims := alice()
	noClaims.Claims = nil // a token that carries its claims itself
	for _, tc := range []struct {
		name    string
		opts    identity.KubernetesOptions
		id      *identity.Identity
		wantErr string
	}{
		{"a missing claim", identity.KubernetesOptions{UsernameClaim: "missing", UsernamePrefix: "-"}, alice(), `no "missing" claim`},
		{"a claim not kept in the session", identity.KubernetesOptions{UsernameClaim: "preferred_username", UsernamePrefix: "-"}, noClaims, `no "preferred_username" claim`},
		{"a list", identity.KubernetesOptions{UsernameClaim: "roles", UsernamePrefix: "-"}, alice(), `holds 2 values`},
		{"an empty list", identity.KubernetesOptions{UsernameClaim: "nothing", UsernamePrefix: "-"}, alice(), `holds 0 values`},
		{"an empty string", identity.KubernetesOptions{UsernameClaim: "empty", UsernamePrefix: "-"}, alice(), `"empty" claim is empty`},
		// A prefix does not make an empty claim a name.
		{"an empty string with a prefix", identity.KubernetesOptions{UsernameClaim: "empty", UsernamePrefix: "oidc:"}, alice(), `"empty" claim is empty`},
		{"an empty sub", identity.KubernetesOptions{UsernameClaim: "sub", Issuer: issuer}, &identity.Identity{Email: "a@example.com"}, `"sub" claim is empty`},
		{"an empty email", identity.KubernetesOptions{}, &identity.Identity{}, ""}, // the default mapping: the impersonation refuses it
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := identity.NewKubernetesMapping(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			user, groups, err := m.Map(tc.id)
			if tc.wantErr == "" {
				if err := (kube.Impersonator{}).Check(user, groups); err == nil {
					t.Errorf("got %q, and the impersonation accepts it", user)
				}
				return
			}
			if err == nil || !errors.Is(err, identity.ErrNoKubernetesUser) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %q, %v; want ErrNoKubernetesUser saying %q", user, err, tc.wantErr)
			}
			if user != "" {
				t.Errorf("a refusal with a user name %q", user)
			}
		})
	}

	// Hostile claim values: the mapping passes them on as they are, and
	// the impersonation's check refuses them.
	for _, claim := range []string{"ctl", "crlf", "spaced", "bad_utf8", "sysuser"} {
		m, err := identity.NewKubernetesMapping(identity.KubernetesOptions{UsernameClaim: claim, UsernamePrefix: "-"})
		if err != nil {
			t.Fatal(err)
		}
		user, groups, err := m.Map(alice())
		if err != nil {
			t.Errorf("%s: %v", claim, err)
			continue
		}
		if err := (kube.Impersonator{}).Check(user, groups); err == nil {
			t.Errorf("%s: the impersonation accepts %q", claim, user)
		}
	}
	// A name that a prefix makes system:…, user or group.
	for _, opts := range []identity.KubernetesOptions{
		{UsernameClaim: "stem", UsernamePrefix: "sys"},
		{UsernamePrefix: "system:"},
		{GroupsPrefix: "system:"},
		{GroupsPrefix: "SYSTEM:"},
		{GroupsPrefix: "sys", GroupsFilter: []string{"tem:*"}},
	} {
		m, err := identity.NewKubernetesMapping(opts)
		if err != nil {
			t.Fatal(err)
		}
		id := alice()
		id.Groups = append(id.Groups, "tem:masters")
		user, groups, err := m.Map(id)
		if err != nil {
			t.Errorf("%+v: %v", opts, err)
			continue
		}
		if err := (kube.Impersonator{}).Check(user, groups); !errors.Is(err, kube.ErrSystemName) {
			t.Errorf("%+v: user %q, groups %q: the impersonation says %v, want ErrSystemName", opts, user, groups, err)
		}
		if err := (kube.Impersonator{AllowSystemNames: true}).Check(user, groups); err != nil {
			t.Errorf("%+v: with kubernetes_allow_system_names: %v", opts, err)
		}
	}
	// A group the filter drops never reaches the check.
	m, err := identity.NewKubernetesMapping(identity.KubernetesOptions{GroupsFilter: []string{"team-*"}})
	if err != nil {
		t.Fatal(err)
	}
	id := alice()
	id.Groups = append(id.Groups, "system:masters", "bad\ngroup")
	user, groups, err := m.Map(id)
	if err != nil || (kube.Impersonator{}).Check(user, groups) != nil || !slices.Equal(groups, []string{"team-a", "team-b"}) {
		t.Errorf("filtered: %q %q, %v", user, groups, err)
	}
}

// TestKubernetesMappingConfig: a claim other than email needs the issuer
// for its default prefix; bad patterns are refused.
func TestKubernetesMappingConfig(t *testing.T) {
	if _, err := identity.NewKubernetesMapping(identity.KubernetesOptions{UsernameClaim: "sub"}); err == nil || !strings.Contains(err.Error(), "issuer") {
		t.Errorf("sub without an issuer or prefix: %v, want a refusal naming the issuer", err)
	}
	if _, err := identity.NewKubernetesMapping(identity.KubernetesOptions{GroupsFilter: []string{"ok", " bad"}}); err == nil {
		t.Error("a bad pattern is accepted")
	}
	// The default needs no mapping at all.
	for _, o := range []identity.KubernetesOptions{{}, {UsernameClaim: "email", UsernamePrefix: "-", GroupsPrefix: "-", Issuer: issuer}} {
		if m, err := identity.NewKubernetesMapping(o); m != nil || err != nil {
			t.Errorf("%+v: got %v, %v; want the nil mapping", o, m, err)
		}
	}
	var m *identity.KubernetesMapping
	if user, groups, err := m.Map(alice()); user != "alice@example.com" || len(groups) != 4 || err != nil {
		t.Errorf("the nil mapping: %q %q %v", user, groups, err)
	}
}

// TestChangesGroups: only a groups prefix or filter changes the groups,
// which is when a token must carry them mapped.
func TestChangesGroups(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    identity.KubernetesOptions
		want bool
	}{
		{"default", identity.KubernetesOptions{}, false},
		{"user claim and prefix only", identity.KubernetesOptions{UsernameClaim: "sub", UsernamePrefix: "oidc:"}, false},
		{"no groups prefix", identity.KubernetesOptions{GroupsPrefix: identity.NoPrefix}, false},
		{"groups prefix", identity.KubernetesOptions{GroupsPrefix: "oidc:"}, true},
		{"groups filter", identity.KubernetesOptions{GroupsFilter: []string{"team-*"}}, true},
	} {
		m, err := identity.NewKubernetesMapping(tc.o)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.ChangesGroups(); got != tc.want {
			t.Errorf("%s: ChangesGroups() = %t, want %t", tc.name, got, tc.want)
		}
	}
}
