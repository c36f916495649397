package limit

import (
	"net"
	"net/http"
	"net/netip"
)

// Client is the client address a request or a connection is counted
// under.
//
// It is the connection's address, never a header's (X-Forwarded-For,
// Forwarded): Portcullis terminates TLS itself, and any client can write a
// header. An IPv6 address counts as its /64, the smallest block a site is
// given (RFC 6177), since one host may choose any address in it. An
// address that does not parse (a Unix socket, a test's made-up
// RemoteAddr) is the zero Addr, and every such client shares one count,
// which fails closed.
func Client(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return clientOf(ap.Addr())
}

// ConnClient is Client for an accepted connection's remote address.
func ConnClient(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(ta.IP)
		if !ok {
			return netip.Addr{}
		}
		return clientOf(ip)
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return clientOf(ap.Addr())
}

func clientOf(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64) // cannot fail: 64 bits of an IPv6 address
		return p.Addr()
	}
	return a
}
