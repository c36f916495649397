package policy

import (
	"crypto/sha256"
	"crypto/x509"
	"net/netip"
	"slices"
	"strings"
)

// kind is a criterion.
type kind uint8

const (
	kAccept kind = iota
	kReject
	kAuthenticatedUser
	kEmail
	kDomain
	kUser
	kGroups
	kClaim
	kHTTPMethod
	kHTTPPath
	kSourceIP
	kCORSPreflight
	kClientCertificate
	kDate
	kDayOfWeek
	kTimeOfDay
	kKubernetesVerb
	kKubernetesResource
	kKubernetesSubresource
	kKubernetesNamespace
	kKubernetesName
	kKubernetesAPIGroup
)

// valueKind is what a criterion's value must be.
type valueKind uint8

const (
	valTrue      valueKind = iota // true (Pomerium ignores the value; see compileTrue)
	valString                     // a string matcher
	valList                       // a string list matcher
	valIPs                        // an IP or CIDR, or a list of them
	valCert                       // true, false or a certificate matcher
	valDate                       // {after, before, timezone}
	valDayOfWeek                  // "mon-fri" or {days, timezone}
	valTimeOfDay                  // {timezone, after, before}
)

type criterionSpec struct {
	kind       kind
	value      valueKind
	pass, fail reason
}

// criteria are the criteria Portcullis knows, by name.
var criteria = map[string]criterionSpec{
	"accept":                 {kAccept, valTrue, rAccept, rAccept},
	"reject":                 {kReject, valTrue, rReject, rReject},
	"authenticated_user":     {kAuthenticatedUser, valTrue, rUserOK, rUserUnauthorized},
	"email":                  {kEmail, valString, rEmailOK, rEmailUnauthorized},
	"domain":                 {kDomain, valString, rDomainOK, rDomainUnauthorized},
	"user":                   {kUser, valString, rUserOK, rUserUnauthorized},
	"groups":                 {kGroups, valList, rGroupsOK, rGroupsUnauthorized},
	"claim":                  {kClaim, valList, rClaimOK, rClaimUnauthorized},
	"http_method":            {kHTTPMethod, valString, rHTTPMethodOK, rHTTPMethodUnauthorized},
	"http_path":              {kHTTPPath, valString, rHTTPPathOK, rHTTPPathUnauthorized},
	"source_ip":              {kSourceIP, valIPs, rSourceIPOK, rSourceIPUnauthorized},
	"cors_preflight":         {kCORSPreflight, valTrue, rCORSRequest, rNonCORSRequest},
	"client_certificate":     {kClientCertificate, valCert, rClientCertificateOK, rClientCertificateUnauthorized},
	"date":                   {kDate, valDate, rDateOK, rDateUnauthorized},
	"day_of_week":            {kDayOfWeek, valDayOfWeek, rDayOfWeekOK, rDayOfWeekUnauthorized},
	"time_of_day":            {kTimeOfDay, valTimeOfDay, rTimeOfDayOK, rTimeOfDayUnauthorized},
	"kubernetes_verb":        {kKubernetesVerb, valString, rKubernetesVerbOK, rKubernetesVerbUnauthorized},
	"kubernetes_resource":    {kKubernetesResource, valString, rKubernetesResourceOK, rKubernetesResourceUnauthorized},
	"kubernetes_subresource": {kKubernetesSubresource, valString, rKubernetesSubresourceOK, rKubernetesSubresourceUnauthorized},
	"kubernetes_namespace":   {kKubernetesNamespace, valString, rKubernetesNamespaceOK, rKubernetesNamespaceUnauthorized},
	"kubernetes_name":        {kKubernetesName, valString, rKubernetesNameOK, rKubernetesNameUnauthorized},
	"kubernetes_api_group":   {kKubernetesAPIGroup, valString, rKubernetesAPIGroupOK, rKubernetesAPIGroupUnauthorized},
}

// pomeriumOnly are Pomerium criteria that Portcullis does not implement:
// they need Pomerium's device registry, its databroker, or its SSH and MCP
// proxies.
var pomeriumOnly = []string{
	"device", "invalid_client_certificate", "pomerium_routes", "record",
	"mcp_tool", "mcp_method", "ssh_username", "ssh_publickey", "ssh_access_request",
}

// criterion is a compiled criterion: its kind and operands.
type criterion struct {
	kind       kind
	pass, fail reason

	str  []strMatcher  // valString
	list []listMatcher // valList
	// claim is the claim's name; claimAlt the same with "." read as "/",
	// as Pomerium reads claim/a.b as the nested claim a/b.
	claim, claimAlt string
	prefixes        []netip.Prefix // valIPs
	cert            *certMatcher   // valCert
	clock           *clockMatcher  // valDate, valDayOfWeek, valTimeOfDay
}

// eval returns whether c holds for the request in e, and why.
func (c *criterion) eval(e *env) (bool, reason) {
	r := e.r
	var ok bool
	switch c.kind {
	case kAccept:
		return true, rAccept
	case kReject:
		return false, rReject
	case kAuthenticatedUser, kEmail, kDomain, kUser, kGroups, kClaim:
		// Pomerium's session criteria: without a session they fail as
		// unauthenticated, whatever the matcher (so not: [email: x] holds
		// for an anonymous request).
		if !r.Authenticated {
			return false, rUserUnauthenticated
		}
		switch c.kind {
		case kAuthenticatedUser:
			ok = true
		case kEmail:
			ok = matchString(c.str, r.Email)
		case kDomain:
			d, has := domainOf(r.Email)
			ok = has && matchString(c.str, d)
		case kUser:
			ok = matchString(c.str, r.User)
		case kGroups:
			ok = matchList(c.list, r.Groups)
		case kClaim:
			ok = matchList(c.list, c.claimValues(r.Claims))
		}
	case kHTTPMethod:
		ok = matchString(c.str, r.Method)
	case kHTTPPath:
		ok = matchString(c.str, r.Path)
	case kSourceIP:
		ok = containsAddr(c.prefixes, r.SourceIP)
	case kCORSPreflight:
		ok = r.CORSPreflight
	case kClientCertificate:
		return c.cert.eval(r.ClientCertificate)
	case kDate, kDayOfWeek, kTimeOfDay:
		ok = c.clock.match(e.now)
	case kKubernetesVerb:
		ok = matchString(c.str, r.Kubernetes.Verb)
	case kKubernetesResource:
		ok = matchString(c.str, r.Kubernetes.Resource)
	case kKubernetesSubresource:
		ok = matchString(c.str, r.Kubernetes.Subresource)
	case kKubernetesNamespace:
		ok = matchString(c.str, r.Kubernetes.Namespace)
	case kKubernetesName:
		ok = matchString(c.str, r.Kubernetes.Name)
	case kKubernetesAPIGroup:
		ok = matchString(c.str, r.Kubernetes.APIGroup)
	}
	if ok {
		return true, c.pass
	}
	return false, c.fail
}

// domainOf returns the domain of an email address as Pomerium takes it,
// split(email, "@")[1]: what follows the first "@" up to the next one.
// false when there is no "@".
func domainOf(email string) (string, bool) {
	_, rest, ok := strings.Cut(email, "@")
	if !ok {
		return "", false
	}
	d, _, _ := strings.Cut(rest, "@")
	return d, true
}

func (c *criterion) claimValues(claims Claims) []string {
	if claims == nil {
		return nil
	}
	if v, ok := claims.Claim(c.claim); ok {
		return v
	}
	if c.claimAlt != "" {
		v, _ := claims.Claim(c.claimAlt)
		return v
	}
	return nil
}

// containsAddr reports whether a is in one of the prefixes. An IPv4
// address written as IPv6 (::ffff:a.b.c.d) is taken as IPv4, as Go's
// net.IPNet.Contains, and so Pomerium, take it; a zone is ignored.
func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// certMode is what a client_certificate criterion asks.
type certMode uint8

const (
	certPresent certMode = iota // client_certificate: true
	certAbsent                  // client_certificate: false
	certMatch                   // a certificate matcher
)

// certMatcher is Pomerium's certificate matcher: every condition given
// must hold.
type certMatcher struct {
	mode         certMode
	fingerprints [][sha256.Size]byte // of the whole certificate (DER)
	spkiHashes   [][sha256.Size]byte // of its SubjectPublicKeyInfo
	sanEmail     []strMatcher
	sanDNS       []strMatcher
	sanURI       []strMatcher
}

func (m *certMatcher) eval(cert *x509.Certificate) (bool, reason) {
	if m.mode == certAbsent {
		if cert == nil {
			return true, rClientCertificateOK
		}
		return false, rClientCertificateUnauthorized
	}
	if cert == nil {
		return false, rClientCertificateRequired
	}
	if m.mode == certMatch && !m.match(cert) {
		return false, rClientCertificateUnauthorized
	}
	return true, rClientCertificateOK
}

func (m *certMatcher) match(cert *x509.Certificate) bool {
	if len(m.fingerprints) > 0 && !slices.Contains(m.fingerprints, sha256.Sum256(cert.Raw)) {
		return false
	}
	if len(m.spkiHashes) > 0 && !slices.Contains(m.spkiHashes, sha256.Sum256(cert.RawSubjectPublicKeyInfo)) {
		return false
	}
	if m.sanEmail != nil && !anyMatches(m.sanEmail, cert.EmailAddresses) {
		return false
	}
	if m.sanDNS != nil && !anyMatches(m.sanDNS, cert.DNSNames) {
		return false
	}
	if m.sanURI != nil {
		uris := make([]string, len(cert.URIs))
		for i, u := range cert.URIs {
			uris[i] = u.String()
		}
		if !anyMatches(m.sanURI, uris) {
			return false
		}
	}
	return true
}

// anyMatches reports whether one of values satisfies every matcher.
func anyMatches(ms []strMatcher, values []string) bool {
	for _, v := range values {
		if matchString(ms, v) {
			return true
		}
	}
	return false
}
