package config

import (
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// Hosts lists the Host header values, in canonical form (CanonicalHost),
// that a route whose from is u answers, or nil if u's host is not a valid
// host name or IP address. The router serves by exactly these, and
// validation refuses two routes that share one, so that what
// --check-config accepts the server can route.
//
// A from without a port, or with its scheme's default port, is reachable
// both as "host" and as "host:port" (clients omit the default port from
// Host; RFC 9110 §7.2); any other port must match exactly, so
// https://127.0.0.1:8443 answers Host "127.0.0.1:8443" and nothing else.
// The scheme does not take part otherwise: a Host header carries none.
func Hosts(u *url.URL) []string {
	if u == nil {
		return nil
	}
	name, port := u.Hostname(), u.Port()
	def := defaultPort(u.Scheme)
	var hosts []string
	switch {
	case port == "" && def == "":
		hosts = []string{name}
	case port == "" || port == def:
		hosts = []string{name, net.JoinHostPort(name, def)}
	default:
		hosts = []string{net.JoinHostPort(name, port)}
	}
	for i, h := range hosts {
		if hosts[i] = CanonicalHost(h); hosts[i] == "" {
			return nil
		}
	}
	return hosts
}

func defaultPort(scheme string) string {
	switch strings.ToLower(scheme) {
	case "https", "wss":
		return "443"
	case "http", "ws":
		return "80"
	}
	return ""
}

// CanonicalHost puts a Host header in canonical form: the name in lower
// case (DNS names are case-insensitive, RFC 4343) without the trailing dot
// of a fully qualified name, an IPv6 literal bracketed only when a port
// follows, the port kept as sent. Anything that is not a host name or an
// IP address with an optional numeric port becomes "", which no route has.
func CanonicalHost(host string) string {
	name, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		name, port = h, p // an empty port ("example.com:") means the default
	} else if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		name = host[1 : len(host)-1] // an IPv6 literal without a port
	}
	if strings.HasPrefix(host, "[") {
		// Brackets are for IPv6 literals only (RFC 3986 §3.2.2).
		if a, err := netip.ParseAddr(name); err != nil || !a.Is6() {
			return ""
		}
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if !validHostname(name) || !validPort(port) {
		return ""
	}
	if port == "" {
		return name
	}
	return net.JoinHostPort(name, port)
}

// validHostname accepts an IP address, or a name of letters, digits, '-',
// '_' and non-empty dot-separated labels. (Underscores are not allowed in
// DNS host names but occur in practice, and are harmless here.)
func validHostname(name string) bool {
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			switch c := label[i]; {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

func validPort(port string) bool {
	if len(port) > 5 {
		return false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}
