package config

import (
	"net/url"
	"slices"
	"testing"
)

func TestCanonicalHost(t *testing.T) {
	tests := []struct {
		host string
		want string
	}{
		{"k8s.example.com", "k8s.example.com"},
		{"K8S.Example.COM", "k8s.example.com"},
		{"k8s.example.com:443", "k8s.example.com:443"},
		{"k8s.example.com.", "k8s.example.com"},
		{"k8s.example.com.:8443", "k8s.example.com:8443"},
		{"k8s.example.com:", "k8s.example.com"},
		{"127.0.0.1:8443", "127.0.0.1:8443"},
		{"[::1]:9443", "[::1]:9443"},
		{"[::1]", "::1"},
		{"[FE80::1%eth0]:443", "[fe80::1%eth0]:443"},
		{"127.0.0.1.", "127.0.0.1"},
		// Not hosts: match nothing.
		{"", ""},
		{"k8s..example.com", ""},
		{"k8s.example.com..", ""},
		{"k8s.example.com:https", ""},
		{"a b", ""},
		{"[k8s.example.com]", ""},
		{"[127.0.0.1]:443", ""},
		{"[[::1]]", ""},
	}
	for _, tt := range tests {
		if got := CanonicalHost(tt.host); got != tt.want {
			t.Errorf("CanonicalHost(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}

// TestHosts: the Host values a from answers, as the router serves them
// and validation compares them.
func TestHosts(t *testing.T) {
	tests := []struct {
		from string
		want []string
	}{
		{"https://k8s.example.com", []string{"k8s.example.com", "k8s.example.com:443"}},
		{"https://K8S.Example.com.:443", []string{"k8s.example.com", "k8s.example.com:443"}},
		{"http://k8s.example.com", []string{"k8s.example.com", "k8s.example.com:80"}},
		{"https://127.0.0.1:8443", []string{"127.0.0.1:8443"}},
		{"https://[::1]:9443", []string{"[::1]:9443"}},
		{"https://bad_host..example.com", nil},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.from)
		if err != nil {
			t.Fatal(err)
		}
		if got := Hosts(u); !slices.Equal(got, tt.want) {
			t.Errorf("Hosts(%s) = %q, want %q", tt.from, got, tt.want)
		}
	}
	if got := Hosts(nil); got != nil {
		t.Errorf("Hosts(nil) = %q, want nil", got)
	}
}
