package authenticate

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// loopbackRedirect checks a programmatic login's pomerium_redirect_uri: an
// http URL on the loopback interface (127.0.0.1, [::1] or localhost), where
// portcullis-cli listens. Anything else could send the token to another
// machine.
func loopbackRedirect(raw string) (*url.URL, error) {
	const want = "pomerium_redirect_uri must be a loopback http URL such as http://127.0.0.1:8000/callback"
	if raw == "" {
		return nil, errors.New("missing pomerium_redirect_uri: " + want)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Opaque != "" || u.Fragment != "" {
		return nil, errors.New("bad pomerium_redirect_uri: " + want)
	}
	host := u.Hostname()
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() || (ip.To4() != nil && host != "127.0.0.1") {
			// Only the canonical spellings: "127.1", "0x7f.1" and the like
			// are loopback to some parsers and names to others.
			return nil, errors.New("pomerium_redirect_uri is not on this machine: " + want)
		}
	}
	if strings.ContainsAny(u.Host, "@\\") {
		return nil, errors.New("bad pomerium_redirect_uri: " + want)
	}
	return u, nil
}
