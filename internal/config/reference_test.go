package config

import (
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestConfigurationReference: docs/configuration.md is what the settings
// tables say, so a setting, a default or a Pomerium key changed without
// it fails here; go test -update rewrites it.
func TestConfigurationReference(t *testing.T) {
	golden(t, "../../docs/configuration.md", []byte(reference()))
}

// TestSettingsDocumented holds every entry of the settings tables to the
// text the reference needs: a setting added without it fails here, not
// in a reader's hands. A default comes from Defaults (or the route
// defaults) when there is one, and from unset only when there is not, so
// that neither says something the other contradicts.
func TestSettingsDocumented(t *testing.T) {
	defaults := Defaults()
	for _, s := range topSettings() {
		var hasValue bool
		if s.get != nil {
			_, hasValue = showValue(s.get(&defaults))
		}
		checkDoc(t, s.key, s.doc, s.example, hasValue, s.unset)
	}
	// The route defaults Load applies, as the reference shows them.
	var kube, other Route
	kube.KubernetesServiceAccountToken = "token"
	kube.applyDefaults(routeSet{})
	other.applyDefaults(routeSet{})
	for _, k := range routeKeyTable() {
		var hasValue bool
		if k.get != nil {
			_, kok := showValue(k.get(&kube))
			_, ook := showValue(k.get(&other))
			hasValue = kok || ook
		}
		checkDoc(t, "route key "+k.name, k.doc, k.example, hasValue, k.unset)
	}
	for _, k := range pomeriumKeys {
		if k.use != described && k.todo == "" {
			t.Errorf("Pomerium key %s: no todo, which the reference shows", k.name)
		}
	}
}

func checkDoc(t *testing.T, name, doc, example string, hasValue bool, unset string) {
	t.Helper()
	switch {
	case strings.TrimSpace(doc) == "":
		t.Errorf("%s: no doc", name)
	case !strings.HasSuffix(doc, "."):
		t.Errorf("%s: doc %q does not end a sentence", name, doc)
	}
	if example == "" {
		t.Errorf("%s: no example", name)
	}
	switch {
	case hasValue && unset != "":
		t.Errorf("%s: unset %q, but the defaults give it a value", name, unset)
	case !hasValue && unset == "":
		t.Errorf("%s: no default value and no unset to say what holds instead", name)
	}
}

func TestShowValue(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v      any
		want   string
		wantOK bool
	}{
		{name: "empty string", v: ""},
		{name: "string", v: ":443", want: "`:443`", wantOK: true},
		{name: "false", v: false, want: "`false`", wantOK: true},
		{name: "number", v: 0, want: "`0`", wantOK: true},
		{name: "log level", v: slog.LevelInfo, want: "`info`", wantOK: true},
		{name: "hours", v: 14 * time.Hour, want: "`14h`", wantOK: true},
		{name: "minutes", v: 5 * time.Minute, want: "`5m`", wantOK: true},
		{name: "seconds", v: 30 * time.Second, want: "`30s`", wantOK: true},
		{name: "hours and minutes", v: 90 * time.Minute, want: "`1h30m`", wantOK: true},
		{name: "no duration", v: time.Duration(0)},
		{name: "no data", v: []byte(nil)},
		{name: "no list", v: []string{}},
		{name: "no URL", v: (*url.URL)(nil)},
		{name: "nil", v: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := showValue(tc.v)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("showValue(%#v) = %q, %v; want %q, %v", tc.v, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
