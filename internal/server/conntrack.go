package server

import (
	"context"
	"errors"
	"net"
	"sync"
)

// connTracker keeps the connections handlers have hijacked. After a hijack
// net/http forgets a connection: http.Server.Shutdown does not wait for it
// and http.Server.Close does not close it. Kubernetes exec, attach and
// port-forward over SPDY or WebSocket are exactly such connections, so the
// server tracks them itself to drain them on shutdown (and, later, reload).
type connTracker struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
	empty chan struct{} // closed when conns becomes empty; nil while empty
}

func newConnTracker() *connTracker {
	return &connTracker{conns: make(map[*trackedConn]struct{})}
}

// track registers c until it is closed, and returns the conn to use in its
// place: closing that one is what untracks it.
func (t *connTracker) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, tracker: t}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.conns) == 0 {
		t.empty = make(chan struct{})
	}
	t.conns[tc] = struct{}{}
	return tc
}

func (t *connTracker) remove(tc *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[tc]; !ok {
		return
	}
	delete(t.conns, tc)
	if len(t.conns) == 0 {
		close(t.empty)
		t.empty = nil
	}
}

// len reports how many hijacked connections are open.
func (t *connTracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// wait returns nil once no hijacked connection is open, or ctx's error if
// ctx is done first.
func (t *connTracker) wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		empty := t.empty
		t.mu.Unlock()
		if empty == nil {
			return nil
		}
		select {
		case <-empty:
			// Loop: a request still in flight may have hijacked another
			// connection since.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// closeAll closes every tracked connection.
func (t *connTracker) closeAll() {
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.conns))
	for tc := range t.conns {
		conns = append(conns, tc)
	}
	t.mu.Unlock()
	for _, tc := range conns {
		tc.Close()
	}
}

// trackedConn is a hijacked connection that leaves its tracker when closed.
type trackedConn struct {
	net.Conn
	tracker *connTracker
	once    sync.Once
	err     error
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.err = c.Conn.Close()
		c.tracker.remove(c)
	})
	return c.err
}

// CloseWrite half-closes the connection if it can be (TLS sends its
// close_notify; TCP its FIN), for a stream that ends in order (see
// stream's clientConn).
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("the connection cannot be half-closed")
}
