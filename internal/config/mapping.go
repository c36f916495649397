package config

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/portcullis-proxy/portcullis/internal/identity"
)

// The identity mapping settings: who Kubernetes sees on a Kubernetes
// route (identity.KubernetesMapping). Each is a top-level setting and a
// route key of the same name; a route takes the top-level value of each
// key it does not set (Route.inheritMapping).

// mappingKeys are their names, as both.
var mappingKeys = []string{"kubernetes_username_claim", "kubernetes_username_prefix", "kubernetes_groups_prefix", "kubernetes_groups_filter"}

// maxMappingClaim is the longest claim name the identity provider keeps
// (the idp package leaves out claims with longer names), and
// maxMappingPrefix the longest prefix: far beyond any real one.
const (
	maxMappingClaim  = 128
	maxMappingPrefix = 256
)

// mappingValues returns r's identity mapping settings by key, for the
// checks that treat them alike.
func mappingValues(r *Route) map[string]any {
	return map[string]any{
		"kubernetes_username_claim":  r.KubernetesUsernameClaim,
		"kubernetes_username_prefix": r.KubernetesUsernamePrefix,
		"kubernetes_groups_prefix":   r.KubernetesGroupsPrefix,
		"kubernetes_groups_filter":   r.KubernetesGroupsFilter,
	}
}

// checkClaimName says what is wrong with a user name claim, or "". ""
// stands for email, in Options built in code.
func checkClaimName(c string) string {
	switch {
	case len(c) > maxMappingClaim:
		return fmt.Sprintf("a claim name of %d bytes: the identity provider's claims with names over %d bytes are not kept, so no one would have it", len(c), maxMappingClaim)
	case !utf8.ValidString(c), strings.IndexFunc(c, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return fmt.Sprintf("%q is not a claim name: want one such as email, sub or preferred_username", c)
	}
	return ""
}

// checkPrefix says what is wrong with a user name or groups prefix, or "".
func checkPrefix(p string) string {
	switch {
	case len(p) > maxMappingPrefix:
		return fmt.Sprintf("a prefix of %d bytes: want at most %d, such as oidc:", len(p), maxMappingPrefix)
	case !utf8.ValidString(p), strings.IndexFunc(p, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fmt.Sprintf("%q is not a prefix: want printable text such as oidc:, or - for none", p)
	case strings.TrimSpace(p) != p:
		return fmt.Sprintf("%q begins or ends with a space: Kubernetes would see a name that does", p)
	}
	return ""
}

// checkMapping says what is wrong with one identity mapping setting,
// whichever place it is in.
func checkMapping(key string, val any) []string {
	var msgs []string
	switch key {
	case "kubernetes_username_claim":
		msgs = append(msgs, checkClaimName(val.(string)))
	case "kubernetes_username_prefix", "kubernetes_groups_prefix":
		msgs = append(msgs, checkPrefix(val.(string)))
	case "kubernetes_groups_filter":
		for _, p := range val.([]string) {
			if err := identity.CheckGroupPattern(p); err != nil {
				msgs = append(msgs, err.Error())
			}
		}
	}
	out := msgs[:0]
	for _, m := range msgs {
		if m != "" {
			out = append(out, m)
		}
	}
	return out
}

// topMapping checks the top-level identity mapping settings.
func (v *validator) topMapping(o *Options) {
	top := mappingValues(&Route{KubernetesUsernameClaim: o.KubernetesUsernameClaim, KubernetesUsernamePrefix: o.KubernetesUsernamePrefix,
		KubernetesGroupsPrefix: o.KubernetesGroupsPrefix, KubernetesGroupsFilter: o.KubernetesGroupsFilter})
	for _, key := range mappingKeys {
		if at, ok := v.top(key); ok {
			for _, msg := range checkMapping(key, top[key]) {
				v.add(at, "%s", msg)
			}
		}
	}
}

// routeMapping checks a route's identity mapping: only a Kubernetes
// route has one, and its prefixes must not make every name a system: one
// unless the route allows those. A value the route took from the
// top-level setting is checked there (topMapping), and a problem that
// comes of it on this route is reported there too.
func (v *validator) routeMapping(r *Route, rl routeLoc) {
	vals := mappingValues(r)
	if !r.IsKubernetes() {
		for _, key := range mappingKeys {
			if !rl.failed[key] && !isZero(vals[key]) {
				v.add(rl.key(key), "set on a route that is not a Kubernetes route (no kubernetes_service_account_token): "+
					"it only decides who Kubernetes sees; remove it")
			}
		}
		return
	}
	// own reports whether the route set key itself, and where.
	own := func(key string) bool {
		set := map[string]bool{
			"kubernetes_username_claim": rl.set.usernameClaim, "kubernetes_username_prefix": rl.set.usernamePrefix,
			"kubernetes_groups_prefix": rl.set.groupsPrefix, "kubernetes_groups_filter": rl.set.groupsFilter,
		}[key]
		return set || v.loc == nil // Options built in code inherit nothing
	}
	for _, key := range mappingKeys {
		if own(key) && !rl.failed[key] {
			for _, msg := range checkMapping(key, vals[key]) {
				v.add(rl.key(key), "%s", msg)
			}
		}
	}
	if r.KubernetesAllowSystemNames {
		return
	}
	for _, key := range []string{"kubernetes_username_prefix", "kubernetes_groups_prefix"} {
		p := vals[key].(string)
		if !hasPrefixFold(p, "system:") {
			continue
		}
		at, ok := rl.key(key), !rl.failed[key]
		if !own(key) {
			at, ok = v.top(key)
		}
		if ok {
			v.add(at, "%q begins with \"system:\", so every name Kubernetes saw on %s would be one Kubernetes keeps for its own identities, "+
				"which Portcullis refuses to impersonate: choose another prefix, such as oidc:", p, rl.ref)
		}
	}
}

// isZero reports whether a mapping setting is unset.
func isZero(v any) bool {
	switch v := v.(type) {
	case string:
		return v == ""
	case []string:
		return len(v) == 0
	}
	return true
}

// hasPrefixFold is strings.HasPrefix ignoring ASCII case, as the
// impersonation compares "system:".
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
