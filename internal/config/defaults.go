package config

import (
	"log/slog"
	"slices"
	"time"
)

// Defaults returns the Options that hold before the file and the
// environment are read. It and the route defaults in this file are the one
// place for defaults.
//
// Load applies route defaults to each key a route does not set itself:
// Kubernetes routes (Route.IsKubernetes) get allow_spdy and
// allow_websockets true and no timeout or idle_timeout; other routes get
// both upgrades off, timeout 30s and idle_timeout 5m.
//
// Secrets have no default: see GenerateMissingSecrets.
func Defaults() Options {
	return Options{
		Address:                ":443",
		CookieName:             "_pomerium",
		CookieExpire:           14 * time.Hour,
		AccessTokenLifetime:    5 * time.Minute,
		DeviceCodeLifetime:     10 * time.Minute,
		DevicePollInterval:     5 * time.Second,
		DatabrokerStorageType:  "memory",
		DatabrokerStorageGrace: 5 * time.Minute,
		LogLevel:               slog.LevelInfo,
		LogFormat:              "json",

		IDPBuiltinTokenTTL: time.Hour,

		// The email address, as Kubernetes saw people before there was
		// a choice (kube-apiserver's own default is sub).
		KubernetesUsernameClaim: "email",

		// Unlike kube-apiserver's flags (0: unbounded), a bounded audit
		// log by default: 100 MB a file, ten files.
		AuditLogMaxSize:   100,
		AuditLogMaxBackup: 10,

		Limits: Limits{
			Connections:          10_000,
			ConnectionsPerClient: 2_500,
			SignInsPerMinute:     30,
			LoginsPerMinute:      60,
			PendingSignIns:       10_000,
			SessionsPerPerson:    50,
			SignInBodyBytes:      64 << 10,
			DevicePollsPerMinute: 144,
		},
	}
}

// Route defaults. Kubernetes routes carry kubectl's long-lived streams
// (watch, logs -f, exec, attach, port-forward) over SPDY or WebSocket
// upgrades, so they get both upgrades and no timeouts: cutting them at 30s
// is the classic failure of a proxy put in front of kube-apiserver.
const (
	defaultRouteTimeout     = 30 * time.Second
	defaultRouteIdleTimeout = 5 * time.Minute
)

// routeSet records which defaulted route keys the config set explicitly:
// "allow_spdy: false" on a Kubernetes route must stay false, and a route's
// own kubernetes_groups_prefix is not replaced by the top-level one.
type routeSet struct {
	allowSPDY, allowWebsockets bool
	timeout, idleTimeout       bool

	usernameClaim, usernamePrefix, groupsPrefix, groupsFilter bool
}

// inheritMapping gives a Kubernetes route r the top-level identity
// mapping settings of o (KUBERNETES_USERNAME_CLAIM and the others) that
// set says r does not set itself. Other routes impersonate no one: they
// keep only what they set, which validation refuses.
func (r *Route) inheritMapping(o *Options, set routeSet) {
	if !r.IsKubernetes() {
		return
	}
	if !set.usernameClaim {
		r.KubernetesUsernameClaim = o.KubernetesUsernameClaim
	}
	if !set.usernamePrefix {
		r.KubernetesUsernamePrefix = o.KubernetesUsernamePrefix
	}
	if !set.groupsPrefix {
		r.KubernetesGroupsPrefix = o.KubernetesGroupsPrefix
	}
	if !set.groupsFilter {
		r.KubernetesGroupsFilter = slices.Clone(o.KubernetesGroupsFilter)
	}
}

// applyDefaults fills the keys of r that set says were not given.
func (r *Route) applyDefaults(set routeSet) {
	kube := r.IsKubernetes()
	if !set.allowSPDY {
		r.AllowSPDY = kube
	}
	if !set.allowWebsockets {
		r.AllowWebsockets = kube
	}
	if !set.timeout {
		r.Timeout = defaultRouteTimeout
		if kube {
			r.Timeout = 0
		}
	}
	if !set.idleTimeout {
		r.IdleTimeout = defaultRouteIdleTimeout
		if kube {
			r.IdleTimeout = 0
		}
	}
}
