package config

import (
	"log/slog"
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
		DatabrokerStorageType:  "memory",
		DatabrokerStorageGrace: 5 * time.Minute,
		LogLevel:               slog.LevelInfo,
		LogFormat:              "json",

		IDPBuiltinTokenTTL: time.Hour,

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
// "allow_spdy: false" on a Kubernetes route must stay false.
type routeSet struct {
	allowSPDY, allowWebsockets bool
	timeout, idleTimeout       bool
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
