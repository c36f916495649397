package limit

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestClient(t *testing.T) {
	tests := []struct {
		name       string
		remoteAddr string
		want       netip.Addr
	}{
		{name: "IPv4", remoteAddr: "192.0.2.7:51234", want: netip.MustParseAddr("192.0.2.7")},
		{name: "IPv4 mapped into IPv6", remoteAddr: "[::ffff:192.0.2.7]:51234", want: netip.MustParseAddr("192.0.2.7")},
		{name: "IPv6 counts as its /64", remoteAddr: "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443", want: netip.MustParseAddr("2001:db8:1:2::")},
		{name: "IPv6 with a zone", remoteAddr: "[fe80::1%eth0]:443", want: netip.MustParseAddr("fe80::")},
		{name: "no port", remoteAddr: "192.0.2.7", want: netip.Addr{}},
		{name: "Unix socket", remoteAddr: "@", want: netip.Addr{}},
		{name: "empty", remoteAddr: "", want: netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remoteAddr}
			// A forwarding header is anyone's to write: it must not count.
			r.Header = http.Header{"X-Forwarded-For": {"198.51.100.1"}, "Forwarded": {"for=198.51.100.1"}}
			if got := Client(r); got != tt.want {
				t.Errorf("Client(%q): got %v, want %v", tt.remoteAddr, got, tt.want)
			}
			// The same address as a connection's.
			if ap, err := netip.ParseAddrPort(tt.remoteAddr); err == nil {
				if got := ConnClient(net.TCPAddrFromAddrPort(ap)); got != tt.want {
					t.Errorf("ConnClient(%q): got %v, want %v", tt.remoteAddr, got, tt.want)
				}
			}
		})
	}
}

func TestRateBurstAndRefill(t *testing.T) {
	r := NewRate(30, 0)
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1_000_000, 0)
	for i := range 30 {
		if ok, _ := r.Allow(a, now); !ok {
			t.Fatalf("event %d of the first 30 refused", i+1)
		}
	}
	ok, wait := r.Allow(a, now)
	if ok || wait != 2*time.Second {
		t.Fatalf("31st event at once: got allowed %v, wait %v; want refused, wait 2s", ok, wait)
	}
	// Another client is not affected.
	if ok, _ := r.Allow(netip.MustParseAddr("192.0.2.2"), now); !ok {
		t.Error("another client was refused")
	}
	// Refused events do not count: one token back after 2s.
	for range 1000 {
		r.Allow(a, now.Add(time.Second))
	}
	if ok, _ := r.Allow(a, now.Add(2*time.Second)); !ok {
		t.Error("refused 2s later: refusals must not push the refill back")
	}
	if ok, _ := r.Allow(a, now.Add(2*time.Second)); ok {
		t.Error("two events allowed after 2s, want one")
	}
	// A minute later, the whole burst again, not more.
	later := now.Add(3 * time.Minute)
	n := 0
	for {
		ok, _ := r.Allow(a, later)
		if !ok {
			break
		}
		n++
	}
	if n != 30 {
		t.Errorf("after a long pause: %d events allowed at once, want 30", n)
	}
}

// TestRateTableIsBounded sends events from a million distinct clients:
// the table never holds more than its maximum, and a client that is in
// debt stays remembered while others come and go.
func TestRateTableIsBounded(t *testing.T) {
	const max = 1000
	r := NewRate(5, max)
	now := time.Unix(1_000_000, 0)
	greedy := netip.MustParseAddr("198.51.100.1")
	for range 5 {
		r.Allow(greedy, now)
	}
	for i := range 1_000_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		r.Allow(a, now.Add(time.Duration(i)*time.Microsecond))
		if i%1000 == 0 && r.Len() > max {
			t.Fatalf("after %d clients the table holds %d, want at most %d", i, r.Len(), max)
		}
	}
	if r.Len() > max {
		t.Fatalf("table holds %d, want at most %d", r.Len(), max)
	}
	if ok, _ := r.Allow(greedy, now.Add(time.Second)); ok {
		t.Error("the client in debt was forgotten and let in again")
	}
}

func TestListenerCaps(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(raw, 3, 2)
	var mu sync.Mutex
	var refused []string
	ln.Refused = func(c netip.Addr, reason string) {
		mu.Lock()
		defer mu.Unlock()
		refused = append(refused, c.String()+" "+reason)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedByServer reports whether the server closed c at once.
	closedByServer := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !isTimeout(err)
	}
	a1, a2 := dial("127.0.0.1"), dial("127.0.0.1")
	s1, s2 := <-accepted, <-accepted
	a3 := dial("127.0.0.1") // third from one client: over perClient
	if !closedByServer(a3) {
		t.Error("a third connection from one client was not closed")
	}
	b1 := dial("127.0.0.2")
	<-accepted
	b2 := dial("127.0.0.2") // fourth in all: over max
	if !closedByServer(b2) {
		t.Error("a fourth connection in all was not closed")
	}
	if got := ln.Open(); got != 3 {
		t.Errorf("open: got %d, want 3", got)
	}
	// Closing frees a place, once, whichever side closes.
	s1.Close()
	s1.Close()
	if got := ln.Open(); got != 2 {
		t.Errorf("open after one close: got %d, want 2", got)
	}
	a4 := dial("127.0.0.1")
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("a connection within the caps after a close was not accepted")
	}
	mu.Lock()
	want := fmt.Sprint([]string{"127.0.0.1 " + ReasonConnectionsPerClient, "127.0.0.2 " + ReasonConnections})
	if got := fmt.Sprint(refused); got != want {
		t.Errorf("refused: got %s, want %s", got, want)
	}
	mu.Unlock()
	_, _, _, _ = a1, a2, b1, a4
	s2.Close()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
