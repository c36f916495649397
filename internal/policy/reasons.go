package policy

import (
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
)

// Reasons a criterion passes or fails, as in Pomerium
// (pkg/policy/criteria/reasons.go) where Pomerium has the criterion; the
// audit log and the error shown to the user carry them. They are constant
// and never hold user data.
const (
	ReasonAccept                        = "accept"
	ReasonReject                        = "reject"
	ReasonUserOK                        = "user-ok"
	ReasonUserUnauthorized              = "user-unauthorized"
	ReasonUserUnauthenticated           = "user-unauthenticated"
	ReasonEmailOK                       = "email-ok"
	ReasonEmailUnauthorized             = "email-unauthorized"
	ReasonDomainOK                      = "domain-ok"
	ReasonDomainUnauthorized            = "domain-unauthorized"
	ReasonGroupsOK                      = "groups-ok"
	ReasonGroupsUnauthorized            = "groups-unauthorized"
	ReasonClaimOK                       = "claim-ok"
	ReasonClaimUnauthorized             = "claim-unauthorized"
	ReasonHTTPMethodOK                  = "http-method-ok"
	ReasonHTTPMethodUnauthorized        = "http-method-unauthorized"
	ReasonHTTPPathOK                    = "http-path-ok"
	ReasonHTTPPathUnauthorized          = "http-path-unauthorized"
	ReasonSourceIPOK                    = "source-ip-ok"
	ReasonSourceIPUnauthorized          = "source-ip-unauthorized"
	ReasonCORSRequest                   = "cors-request"
	ReasonNonCORSRequest                = "non-cors-request"
	ReasonClientCertificateOK           = "client-certificate-ok"
	ReasonClientCertificateUnauthorized = "client-certificate-unauthorized"
	ReasonClientCertificateRequired     = "client-certificate-required"
	ReasonDateOK                        = "date-ok"
	ReasonDateUnauthorized              = "date-unauthorized"
	ReasonDayOfWeekOK                   = "day-of-week-ok"
	ReasonDayOfWeekUnauthorized         = "day-of-week-unauthorized"
	ReasonTimeOfDayOK                   = "time-of-day-ok"
	ReasonTimeOfDayUnauthorized         = "time-of-day-unauthorized"

	ReasonKubernetesVerbOK                  = "kubernetes-verb-ok"
	ReasonKubernetesVerbUnauthorized        = "kubernetes-verb-unauthorized"
	ReasonKubernetesResourceOK              = "kubernetes-resource-ok"
	ReasonKubernetesResourceUnauthorized    = "kubernetes-resource-unauthorized"
	ReasonKubernetesSubresourceOK           = "kubernetes-subresource-ok"
	ReasonKubernetesSubresourceUnauthorized = "kubernetes-subresource-unauthorized"
	ReasonKubernetesNamespaceOK             = "kubernetes-namespace-ok"
	ReasonKubernetesNamespaceUnauthorized   = "kubernetes-namespace-unauthorized"
	ReasonKubernetesNameOK                  = "kubernetes-name-ok"
	ReasonKubernetesNameUnauthorized        = "kubernetes-name-unauthorized"
	ReasonKubernetesAPIGroupOK              = "kubernetes-api-group-ok"
	ReasonKubernetesAPIGroupUnauthorized    = "kubernetes-api-group-unauthorized"

	// ReasonNoPolicy: the route has neither a policy nor a legacy access
	// key, so nothing allows anything.
	ReasonNoPolicy = "no-policy"
	// ReasonNoAllowRule: the policy has deny rules only, none of which
	// matched; without an allow rule nothing is allowed.
	ReasonNoAllowRule = "no-allow-rule"
)

// reason is a reason's index in reasonNames; a set of reasons is a mask
// with bit 1<<reason set for each, so that evaluation collects reasons
// without allocating.
type reason uint8

const (
	rAccept reason = iota
	rReject
	rUserOK
	rUserUnauthorized
	rUserUnauthenticated
	rEmailOK
	rEmailUnauthorized
	rDomainOK
	rDomainUnauthorized
	rGroupsOK
	rGroupsUnauthorized
	rClaimOK
	rClaimUnauthorized
	rHTTPMethodOK
	rHTTPMethodUnauthorized
	rHTTPPathOK
	rHTTPPathUnauthorized
	rSourceIPOK
	rSourceIPUnauthorized
	rCORSRequest
	rNonCORSRequest
	rClientCertificateOK
	rClientCertificateUnauthorized
	rClientCertificateRequired
	rDateOK
	rDateUnauthorized
	rDayOfWeekOK
	rDayOfWeekUnauthorized
	rTimeOfDayOK
	rTimeOfDayUnauthorized
	rKubernetesVerbOK
	rKubernetesVerbUnauthorized
	rKubernetesResourceOK
	rKubernetesResourceUnauthorized
	rKubernetesSubresourceOK
	rKubernetesSubresourceUnauthorized
	rKubernetesNamespaceOK
	rKubernetesNamespaceUnauthorized
	rKubernetesNameOK
	rKubernetesNameUnauthorized
	rKubernetesAPIGroupOK
	rKubernetesAPIGroupUnauthorized
	rNoPolicy
	rNoAllowRule
	numReasons
)

// The mask type holds every reason.
var _ = [64 - numReasons]struct{}{}

var reasonNames = [numReasons]string{
	rAccept:                            ReasonAccept,
	rReject:                            ReasonReject,
	rUserOK:                            ReasonUserOK,
	rUserUnauthorized:                  ReasonUserUnauthorized,
	rUserUnauthenticated:               ReasonUserUnauthenticated,
	rEmailOK:                           ReasonEmailOK,
	rEmailUnauthorized:                 ReasonEmailUnauthorized,
	rDomainOK:                          ReasonDomainOK,
	rDomainUnauthorized:                ReasonDomainUnauthorized,
	rGroupsOK:                          ReasonGroupsOK,
	rGroupsUnauthorized:                ReasonGroupsUnauthorized,
	rClaimOK:                           ReasonClaimOK,
	rClaimUnauthorized:                 ReasonClaimUnauthorized,
	rHTTPMethodOK:                      ReasonHTTPMethodOK,
	rHTTPMethodUnauthorized:            ReasonHTTPMethodUnauthorized,
	rHTTPPathOK:                        ReasonHTTPPathOK,
	rHTTPPathUnauthorized:              ReasonHTTPPathUnauthorized,
	rSourceIPOK:                        ReasonSourceIPOK,
	rSourceIPUnauthorized:              ReasonSourceIPUnauthorized,
	rCORSRequest:                       ReasonCORSRequest,
	rNonCORSRequest:                    ReasonNonCORSRequest,
	rClientCertificateOK:               ReasonClientCertificateOK,
	rClientCertificateUnauthorized:     ReasonClientCertificateUnauthorized,
	rClientCertificateRequired:         ReasonClientCertificateRequired,
	rDateOK:                            ReasonDateOK,
	rDateUnauthorized:                  ReasonDateUnauthorized,
	rDayOfWeekOK:                       ReasonDayOfWeekOK,
	rDayOfWeekUnauthorized:             ReasonDayOfWeekUnauthorized,
	rTimeOfDayOK:                       ReasonTimeOfDayOK,
	rTimeOfDayUnauthorized:             ReasonTimeOfDayUnauthorized,
	rKubernetesVerbOK:                  ReasonKubernetesVerbOK,
	rKubernetesVerbUnauthorized:        ReasonKubernetesVerbUnauthorized,
	rKubernetesResourceOK:              ReasonKubernetesResourceOK,
	rKubernetesResourceUnauthorized:    ReasonKubernetesResourceUnauthorized,
	rKubernetesSubresourceOK:           ReasonKubernetesSubresourceOK,
	rKubernetesSubresourceUnauthorized: ReasonKubernetesSubresourceUnauthorized,
	rKubernetesNamespaceOK:             ReasonKubernetesNamespaceOK,
	rKubernetesNamespaceUnauthorized:   ReasonKubernetesNamespaceUnauthorized,
	rKubernetesNameOK:                  ReasonKubernetesNameOK,
	rKubernetesNameUnauthorized:        ReasonKubernetesNameUnauthorized,
	rKubernetesAPIGroupOK:              ReasonKubernetesAPIGroupOK,
	rKubernetesAPIGroupUnauthorized:    ReasonKubernetesAPIGroupUnauthorized,
	rNoPolicy:                          ReasonNoPolicy,
	rNoAllowRule:                       ReasonNoAllowRule,
}

func (r reason) mask() uint64 { return 1 << r }

// maxCachedReasonSets bounds the cache below; a policy yields few distinct
// sets, so the bound is only reached by something pathological.
const maxCachedReasonSets = 4096

var (
	// reasonSets maps a mask to its reasons as a sorted slice, shared by
	// every Decision with that mask: readers load it without locking, a
	// writer replaces the whole map (copy on write).
	reasonSets   atomic.Pointer[map[uint64][]string]
	reasonSetsMu sync.Mutex
)

// reasonStrings returns the reasons in m, sorted. The slice is shared and
// must not be modified; after the first time a set is seen it costs no
// allocation.
func reasonStrings(m uint64) []string {
	if cur := reasonSets.Load(); cur != nil {
		if s, ok := (*cur)[m]; ok {
			return s
		}
	}
	s := make([]string, 0, bits.OnesCount64(m))
	for r := reason(0); r < numReasons; r++ {
		if m&r.mask() != 0 {
			s = append(s, reasonNames[r])
		}
	}
	slices.Sort(s)
	s = slices.Clip(s)

	reasonSetsMu.Lock()
	defer reasonSetsMu.Unlock()
	cur := reasonSets.Load()
	if cur != nil && len(*cur) >= maxCachedReasonSets {
		return s
	}
	next := make(map[uint64][]string, 1+lenOf(cur))
	if cur != nil {
		for k, v := range *cur {
			next[k] = v
		}
	}
	next[m] = s
	reasonSets.Store(&next)
	return s
}

func lenOf(m *map[uint64][]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}
