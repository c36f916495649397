package kube

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Header names Portcullis sets on the upstream request. Kubernetes reads
// them as described in "User impersonation",
// https://kubernetes.io/docs/reference/access-authn-authz/authentication/#user-impersonation
const (
	headerAuthorization     = "Authorization"
	headerImpersonateUser   = "Impersonate-User"
	headerImpersonateGroup  = "Impersonate-Group"
	headerImpersonatePrefix = "Impersonate-"
)

// StripCredentials removes from h every header by which a client could
// authenticate to the upstream or choose the identity Kubernetes sees, so
// that after Impersonator.Set the only identity on the request is the one
// Portcullis verified. Call it on the outgoing request, before
// Impersonator.Set.
//
// Header names are matched case-insensitively and h is scanned key by key:
// a header set by direct map assignment (h["impersonate-user"] = …) is not
// in canonical form, so h.Del would miss it, yet net/http would still send
// it and kube-apiserver, which canonicalises what it receives (and HTTP/2
// lower-cases everything), would honour it.
//
// Removed, and why:
//   - Authorization: the client's own credential (for kubectl, the
//     Pomerium-<jwt> from portcullis-cli). It means nothing to the API
//     server and would leak the session token upstream; Impersonator.Set
//     replaces it with the service account's bearer token.
//   - Proxy-Authorization: a credential meant for a proxy, never for the
//     upstream (RFC 9110 §11.7.2). ReverseProxy drops it as hop-by-hop too;
//     stripping it here does not depend on that.
//   - Impersonate-User, Impersonate-Group, Impersonate-Uid and every
//     Impersonate-Extra-<key>: the Kubernetes impersonation headers. Sent
//     with the service account's token they would make the API server act
//     as whoever the client named. Any other Impersonate-* header is removed
//     as well, so that an impersonation header a later Kubernetes release
//     adds cannot pass through either.
//   - X-Pomerium-Authorization: the Pomerium-compatible way of sending the
//     session token; it must not reach the upstream.
//   - every other X-Pomerium-* header, X-Pomerium-Jwt-Assertion and
//     X-Pomerium-Claim-<name> above all: Pomerium sets these on the
//     upstream request to tell it who the user is, and an upstream written
//     for Pomerium believes them. Only the proxy may set headers in its
//     namespace, so a client's are removed whatever their name.
//   - X-Remote-* (X-Remote-User, X-Remote-Group, X-Remote-Uid,
//     X-Remote-Extra-<key>): the authenticating-proxy ("request header")
//     headers, which the API server believes from a connection that
//     presents a front-proxy client certificate: a route whose
//     tls_client_cert is one would let the client name any user. See
//     https://kubernetes.io/docs/reference/access-authn-authz/authentication/#authenticating-proxy
//   - Audit-ID: kube-apiserver takes a client's Audit-ID as the id of its
//     audit event for the request. Portcullis sets its own on a Kubernetes
//     route, so that the cluster's audit log joins Portcullis's own; a
//     client must not choose (or collide with) the id the cluster records.
//   - the cookie named sessionCookieName, from every Cookie header: it is
//     Portcullis's session, not the upstream's. Other cookies are kept, and
//     a Cookie header left empty is removed. An empty sessionCookieName
//     leaves cookies alone.
func StripCredentials(h http.Header, sessionCookieName string) {
	// Deleting map entries while ranging over the map is allowed: a deleted
	// entry that has not been reached yet is simply not produced.
	for k, vv := range h {
		switch {
		case isIdentityHeader(k):
			delete(h, k)
		case sessionCookieName != "" && strings.EqualFold(k, "Cookie"):
			if kept, changed := removeCookie(vv, sessionCookieName); changed {
				if len(kept) == 0 {
					delete(h, k)
				} else {
					h[k] = kept
				}
			}
		}
	}
}

// isIdentityHeader reports whether the header named k, in any letter case,
// carries a credential or an identity (see StripCredentials for each one).
func isIdentityHeader(k string) bool {
	return strings.EqualFold(k, headerAuthorization) ||
		strings.EqualFold(k, "Proxy-Authorization") ||
		hasPrefixFold(k, "X-Pomerium-") ||
		hasPrefixFold(k, headerImpersonatePrefix) ||
		hasPrefixFold(k, "X-Remote-") ||
		strings.EqualFold(k, HeaderAuditID)
}

// HeaderAuditID is the header by which kube-apiserver takes the id of a
// request's audit event from its client.
const HeaderAuditID = "Audit-Id"

// hasPrefixFold is strings.HasPrefix under ASCII case folding.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// removeCookie returns the Cookie header values vv without the cookies
// named name, and whether anything was removed. Values that do not contain
// the cookie are returned byte for byte; the others are rebuilt from the
// remaining cookie-pairs joined by "; " (RFC 6265 §4.2.1), and dropped if
// none remain. vv itself is not modified: it may be shared with the
// incoming request.
func removeCookie(vv []string, name string) ([]string, bool) {
	var out []string
	changed := false
	for i, v := range vv {
		nv, found := removeCookieFromValue(v, name)
		if found && !changed {
			changed = true
			out = append(make([]string, 0, len(vv)), vv[:i]...)
		}
		if changed && nv != "" {
			out = append(out, nv)
		}
	}
	if !changed {
		return vv, false
	}
	return out, true
}

// StripSetCookie removes from a response's header h every Set-Cookie that
// would set one of Portcullis's cookies: the one named sessionCookieName,
// and every one named sessionCookieName + "_…" (the sign-in cookies beside
// it). An upstream, or a page a pod serves through it, must not be able
// to plant a session or a sign-in binding of someone else's in the
// browser (session fixation). Header keys are matched in any letter case;
// cookie names exactly, as browsers store them. An empty sessionCookieName
// leaves h alone.
func StripSetCookie(h http.Header, sessionCookieName string) {
	if sessionCookieName == "" {
		return
	}
	for k, vv := range h {
		if !strings.EqualFold(k, "Set-Cookie") {
			continue
		}
		kept := vv[:0:0]
		for _, v := range vv {
			name, _, _ := strings.Cut(v, "=")
			name = strings.Trim(name, asciiSpace)
			if name == sessionCookieName || strings.HasPrefix(name, sessionCookieName+"_") {
				continue
			}
			kept = append(kept, v)
		}
		if len(kept) == 0 {
			delete(h, k)
		} else if len(kept) != len(vv) {
			h[k] = kept
		}
	}
}

// asciiSpace is what textproto.TrimString trims.
const asciiSpace = " \t\r\n"

// removeCookieFromValue removes the cookie-pairs named name from one Cookie
// header value. Names are compared exactly (cookie names are case-sensitive)
// after trimming ASCII white space around them, as net/http's own cookie
// parser does (textproto.TrimString), so every pair that a Go server would
// read as that cookie is removed.
func removeCookieFromValue(v, name string) (string, bool) {
	if !strings.Contains(v, name) {
		return v, false // fast path: no allocation
	}
	var b strings.Builder
	found := false
	for part := range strings.SplitSeq(v, ";") {
		part = strings.Trim(part, asciiSpace)
		if part == "" {
			continue
		}
		n, _, _ := strings.Cut(part, "=")
		if strings.Trim(n, asciiSpace) == name {
			found = true
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(part)
	}
	if !found {
		return v, false
	}
	return b.String(), true
}

// Impersonator sets and checks the impersonation of a route's upstream
// requests, with the route's choices. The zero value is the default and
// the strictest.
type Impersonator struct {
	// AllowSystemNames lets user and group names begin with "system:"
	// (kubernetes_allow_system_names). Kubernetes reserves the prefix for
	// its own identities: the group system:masters is cluster-admin
	// whatever RBAC says, system:node:<name> is a kubelet, and
	// system:serviceaccount:<ns>:<name> a service account. A provider
	// that lets people choose their groups or names, or one misconfigured,
	// would otherwise make anyone one of them.
	AllowSystemNames bool
}

// Set makes the upstream request act as user, a member of groups, with the
// rights of the service account whose token is saToken:
//
//	Authorization: Bearer <saToken>
//	Impersonate-User: <user>
//	Impersonate-Group: <group>   (one line per group)
//
// Kubernetes authenticates the service account, checks that it may
// impersonate that user and those groups, then authorizes the request as
// the user (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#user-impersonation).
// Empty groups are skipped and duplicates dropped; the order is kept.
// Kubernetes adds system:authenticated to the impersonated groups itself.
//
// Every Authorization and Impersonate-* header already in h, in any letter
// case, is removed first, so the headers set here are the only ones of
// their kind even if the caller forgot StripCredentials.
//
// An empty user or token is refused: without Impersonate-User the request
// would run with the service account's own rights, which is never what a
// person may have (docs/security.md). So is a value that is not a
// single line of printable text (CR, LF, NUL or another control character,
// invalid UTF-8, leading or trailing space): user and groups come from the
// identity provider and must not be able to add headers or change meaning
// when the API server trims the value. On error h is left with no
// Authorization and no Impersonate-* header at all, so a request forwarded
// regardless would reach the API server anonymous, not as the service
// account.
//
// Names beginning with "system:" are refused unless im.AllowSystemNames:
// see Impersonator.
func (im Impersonator) Set(h http.Header, saToken string, user string, groups []string) error {
	if h == nil {
		return errors.New("impersonating: no header to set (nil http.Header)")
	}
	err := checkToken(saToken)
	if err == nil {
		err = im.Check(user, groups)
	}
	clearImpersonation(h)
	if err != nil {
		return err
	}
	// Canonical keys assigned directly: Header.Set would canonicalise them
	// again on every request.
	h[headerAuthorization] = []string{"Bearer " + saToken}
	h[headerImpersonateUser] = []string{user}
	if gs := uniqueGroups(groups); len(gs) > 0 {
		h[headerImpersonateGroup] = gs
	}
	return nil
}

// errNoUser is the refusal that keeps a request from running with the
// service account's own rights.
var errNoUser = errors.New("impersonating: no user: refusing to forward with the service account's own rights")

// Check reports whether Set would accept user and groups, so that a
// handler can refuse the request before it reaches httputil.ReverseProxy's
// Rewrite, which cannot fail.
func (im Impersonator) Check(user string, groups []string) error {
	if user == "" {
		return errNoUser
	}
	if err := im.checkName(user); err != nil {
		return fmt.Errorf("impersonating user %q: %w", user, err)
	}
	for _, g := range groups {
		if g == "" {
			continue
		}
		if err := im.checkName(g); err != nil {
			return fmt.Errorf("impersonating user %q: group %q: %w", user, g, err)
		}
	}
	return nil
}

// systemPrefix begins every name Kubernetes reserves for itself.
const systemPrefix = "system:"

// ErrSystemName is the refusal of a user or group name that begins with
// "system:" on a route that does not allow them.
var ErrSystemName = errors.New(`names beginning with "system:" are reserved for Kubernetes's own identities ` +
	`(an administrator may allow them on this route with kubernetes_allow_system_names)`)

// checkName checks one user or group name. The prefix is compared
// ignoring case: kube-apiserver compares it exactly, but a name that only
// differs in case is no person's real name either, and refusing it costs
// nothing.
func (im Impersonator) checkName(v string) error {
	if err := checkHeaderValue(v); err != nil {
		return err
	}
	if !im.AllowSystemNames && hasPrefixFold(v, systemPrefix) {
		return ErrSystemName
	}
	return nil
}

// checkHeaderValue accepts one line of printable UTF-8 text with no
// leading or trailing space. It is stricter than HTTP (RFC 9110 §5.5 allows
// tabs and obs-text): an identity has no use for them, and a control
// character is how a header gets injected, or how an HTTP/2 request gets
// refused halfway. Leading and trailing spaces are refused because the
// receiving server strips them, so " alice" would be checked by policy as
// one name and impersonated as another.
func checkHeaderValue(v string) error {
	for i, r := range v {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(v[i:]); size == 1 {
				return fmt.Errorf("invalid UTF-8 at byte %d", i)
			}
		}
		if !unicode.IsPrint(r) {
			return fmt.Errorf("non-printable character %U at byte %d", r, i)
		}
	}
	if strings.HasPrefix(v, " ") || strings.HasSuffix(v, " ") {
		return errors.New("leading or trailing space")
	}
	return nil
}

// checkToken wraps validateToken's verdict for Impersonator.Set. Its
// errors never include the token.
func checkToken(tok string) error {
	if err := validateToken(tok); err != nil {
		return fmt.Errorf("impersonating: service account token: %w", err)
	}
	return nil
}

// uniqueGroups returns groups without empty strings and without
// duplicates, first occurrence first, in a new slice (the caller's may be
// shared with the session).
func uniqueGroups(groups []string) []string {
	out := make([]string, 0, len(groups))
	// A linear scan beats a map for the handful of groups most people have;
	// some identity providers send hundreds, so switch to a set then.
	var seen map[string]struct{}
	if len(groups) > 32 {
		seen = make(map[string]struct{}, len(groups))
	}
	for _, g := range groups {
		if g == "" {
			continue
		}
		if seen != nil {
			if _, dup := seen[g]; dup {
				continue
			}
			seen[g] = struct{}{}
		} else if slices.Contains(out, g) {
			continue
		}
		out = append(out, g)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
