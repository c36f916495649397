package config

import (
	"reflect"
	"slices"
	"strings"
)

// minAdminToken is the shortest ADMIN_TOKEN accepted: 32 characters of
// base64 are 192 bits, past any guessing over the network.
const minAdminToken = 32

// Files returns the files Load read settings from: the config file, the
// *_file settings' files (certificates, keys, CAs, secrets) and an
// in-cluster route's CA. The server watches them and reloads when one
// changes, which is how a renewed certificate or a ConfigMap edit takes
// effect. Files the server follows by itself are not listed: a
// service-account token file (re-read on each rotation) and the built-in
// provider's users file.
func (o *Options) Files() []string { return slices.Clone(o.files) }

// RestartRequired names (as environment variables) the settings that
// differ between old and new but that a running server cannot change: see
// setting.restart. A reload keeps their running values; the server logs
// these names so that an operator knows a restart is due.
func RestartRequired(old, new *Options) []string {
	var names []string
	for _, s := range topSettings() {
		if !s.restart || s.get == nil {
			continue
		}
		if !reflect.DeepEqual(s.get(old), s.get(new)) {
			names = append(names, strings.ToUpper(s.key))
		}
	}
	return names
}

// KeepRestartSettings copies into o, from running, every setting that
// needs a restart to change: what a reloaded configuration runs with.
// Secrets that were generated at start (GenerateMissingSecrets) are kept
// this way too.
func (o *Options) KeepRestartSettings(running *Options) {
	o.Address = running.Address
	o.AuthenticateServiceURL = running.AuthenticateServiceURL
	o.CookieSecret = running.CookieSecret
	o.CookieName = running.CookieName
	o.CookieExpire = running.CookieExpire
	o.AccessTokenLifetime = running.AccessTokenLifetime
	o.DeviceCodeLifetime = running.DeviceCodeLifetime
	o.DevicePollInterval = running.DevicePollInterval
	o.DatabrokerStorageType = running.DatabrokerStorageType
	o.DatabrokerStorageConnectionString = running.DatabrokerStorageConnectionString
	o.DatabrokerStorageGrace = running.DatabrokerStorageGrace
	o.SharedSecret = running.SharedSecret
	o.SigningKey = running.SigningKey
	o.InsecureServer = running.InsecureServer
	o.MetricsAddress = running.MetricsAddress
	o.LogFormat = running.LogFormat
	o.Limits = running.Limits
	o.AuditLogPath = running.AuditLogPath
	o.AuditLogMaxSize = running.AuditLogMaxSize
	o.AuditLogMaxBackup = running.AuditLogMaxBackup
	o.AuditPolicyFile = running.AuditPolicyFile
	o.AuditWebhookConfigFile = running.AuditWebhookConfigFile
}
