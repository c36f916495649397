package route

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ParseURL checks the server URL a person gave (`exec-credential URL`,
// `setup URL`) and returns it in canonical form: scheme and host in lower
// case, no default port, no trailing slash. Two spellings of one server
// share a cache entry that way.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("bad server URL %q: %w", raw, err)
	}
	const want = "want the route's address, such as https://k8s.example.com"
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("bad server URL %q: %s", raw, want)
	case u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("bad server URL %q: no host; %s", raw, want)
	case u.User != nil:
		return nil, fmt.Errorf("bad server URL %q: credentials in the URL are not used; %s", raw, want)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("bad server URL %q: a query or fragment is not used; %s", raw, want)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return nil, fmt.Errorf("bad server URL %q: no host; %s", raw, want)
	}
	port := u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	c := &url.URL{Scheme: strings.ToLower(u.Scheme), Host: host, Path: strings.TrimRight(u.Path, "/")}
	if strings.Contains(host, ":") {
		c.Host = "[" + host + "]"
	}
	if port != "" {
		c.Host = net.JoinHostPort(host, port)
	}
	return c, nil
}
