package limit

import (
	"net"
	"net/netip"
	"sync"
)

// Refusal reasons, for logs and metrics.
const (
	ReasonConnections          = "connections"
	ReasonConnectionsPerClient = "connections_per_client"
)

// Listener caps the connections open through it: max in all, perClient for
// one client (Client's notion of a client). A connection past either cap
// is closed as soon as it is accepted, before its TLS handshake, so that
// it costs a file descriptor for an instant and nothing more; Accept goes
// on to the next one. A connection counts until it is closed, whoever
// closes it (net/http, or a handler that took it over for an upgrade).
//
// It is not a queue: waiting in Accept would stop every client, including
// the ones under their cap, behind the one that filled it.
type Listener struct {
	net.Listener
	max, perClient int
	// Refused, if set, is called (outside any lock) for each connection
	// closed at a cap, with the reason.
	Refused func(client netip.Addr, reason string)
	// Opened and Closed, if set, are called as connections are admitted
	// and released: a gauge of open connections.
	Opened, Closed func()

	mu      sync.Mutex
	open    int
	clients map[netip.Addr]int
}

// NewListener returns ln with at most maxConns connections open, perClient of
// them from one client (each at least 1).
func NewListener(ln net.Listener, maxConns, perClient int) *Listener {
	return &Listener{Listener: ln, max: max(maxConns, 1), perClient: max(perClient, 1), clients: make(map[netip.Addr]int)}
}

// Accept returns the next connection within the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := ConnClient(c.RemoteAddr())
		if reason := l.admit(client); reason != "" {
			c.Close()
			if l.Refused != nil {
				l.Refused(client, reason)
			}
			continue
		}
		if l.Opened != nil {
			l.Opened()
		}
		return &conn{Conn: c, l: l, client: client}, nil
	}
}

func (l *Listener) admit(client netip.Addr) (reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.open >= l.max:
		return ReasonConnections
	case l.clients[client] >= l.perClient:
		return ReasonConnectionsPerClient
	}
	l.open++
	l.clients[client]++
	return ""
}

func (l *Listener) release(client netip.Addr) {
	l.mu.Lock()
	l.open--
	if l.clients[client]--; l.clients[client] <= 0 {
		delete(l.clients, client)
	}
	l.mu.Unlock()
	if l.Closed != nil {
		l.Closed()
	}
}

// Open reports how many connections are open through l.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// conn is an admitted connection; closing it (the first time) frees its
// place.
type conn struct {
	net.Conn
	l      *Listener
	client netip.Addr
	once   sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.client) })
	return err
}

// CloseWrite half-closes a TCP connection, as net/http and the proxy's
// upgraded streams expect of one (a TLS connection has its own).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
