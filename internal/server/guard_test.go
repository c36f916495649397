package server

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

// countingRoute is a route handler that counts the requests reaching it
// and answers 200 after reading the body.
type countingRoute struct{ n atomic.Int32 }

func (c *countingRoute) handler(*config.Route) (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("reached"))
	}), nil
}

// TestRefusesUnservableRequests: CONNECT (over HTTP/2, how the request
// smuggling attack came in, and over HTTP/1.1), TRACE and targets that are
// not a path are answered before any route sees them.
func TestRefusesUnservableRequests(t *testing.T) {
	certPEM, keyPEM, pool := selfSignedCert(t)
	logger, _ := testLogger(t)
	opts := testOptions(func(o *config.Options) {
		o.Certificate, o.CertificateKey = certPEM, keyPEM
		o.Routes = []config.Route{{From: mustURL(t, "https://127.0.0.1"), To: []*url.URL{mustURL(t, "https://127.0.0.1:6443")}}}
	})
	var route countingRoute
	s, err := newServer(opts, logger, route.handler)
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s, false)
	host := strings.TrimPrefix(ts.url, "https://")
	tlsConfig := &tls.Config{RootCAs: pool}

	t.Run("HTTP/2 CONNECT with a body", func(t *testing.T) {
		var protocols http.Protocols
		protocols.SetHTTP2(true)
		client := newClient(t, &http.Transport{TLSClientConfig: tlsConfig, Protocols: &protocols})
		pr, pw := io.Pipe()
		go func() {
			io.WriteString(pw, "GET /api/v1/namespaces/kube-system/secrets HTTP/1.1\r\nHost: x\r\nX-Ignore: ")
			pw.Close()
		}()
		req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Scheme: "https", Host: host}, Host: host,
			Header: http.Header{"Authorization": {"Bearer Pomerium-x.y.z"}}, Body: pr, ContentLength: -1}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Proto != "HTTP/2.0" || resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("got %s %d %s, want HTTP/2.0 405", resp.Proto, resp.StatusCode, body)
		}
		var st kubeStatus
		if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" || !strings.Contains(st.Message, "CONNECT method is not served") {
			t.Errorf("body: got %s, want a Status saying CONNECT is not served", body)
		}
	})

	// raw sends one HTTP/1.1 request as written and returns the status line.
	raw := func(t *testing.T, request string) string {
		t.Helper()
		conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, request); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		return strings.TrimSpace(line)
	}
	for _, tt := range []struct {
		name, request, want string
	}{
		{"HTTP/1.1 CONNECT", "CONNECT " + host + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"},
		{"TRACE", "TRACE /api HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"},
		{"asterisk target", "GET * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"asterisk target with a body", "POST * HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 400 Bad Request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := raw(t, tt.request); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if n := route.n.Load(); n != 0 {
		t.Errorf("the route handler saw %d of these requests, want none", n)
	}
	t.Run("a normal request still reaches the route", func(t *testing.T) {
		if got := raw(t, "GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); got != "HTTP/1.1 200 OK" {
			t.Errorf("got %q, want 200", got)
		}
	})
}

// TestBodyReadTimeout: a client that trickles a request body loses its
// connection once the body has taken too long; a body that arrived in time
// does not bound how long the answer may take, and upgrades are not
// bounded at all.
func TestBodyReadTimeout(t *testing.T) {
	logger, _ := testLogger(t)
	slowAnswer := make(chan struct{})
	s, err := newServer(insecureOptions(t, "http://127.0.0.1"), logger, infallible(func(*config.Route) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				http.Error(w, "reading the body: "+err.Error(), http.StatusRequestTimeout)
				return
			}
			if r.URL.Path == "/slow-answer" {
				<-slowAnswer
			}
			w.Write([]byte("done"))
		})
	}))
	if err != nil {
		t.Fatal(err)
	}
	s.bodyReadTimeout = 300 * time.Millisecond
	ts := serve(t, s, false)
	host := strings.TrimPrefix(ts.url, "http://")

	dial := func(t *testing.T) net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		return conn
	}

	t.Run("a trickled body is cut off", func(t *testing.T) {
		conn := dial(t)
		io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nx")
		// One more byte now and then, each well inside any per-read
		// timeout, the whole far beyond the body's.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					if _, err := io.WriteString(conn, "x"); err != nil {
						return
					}
				}
			}
		}()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("got 200: the trickled body was read to the end")
			}
		}
		// Whatever was answered, the server hangs up: an end of stream, or
		// a reset when the trickle's next byte reached a closed socket.
		if _, err := io.Copy(io.Discard, conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("waiting for the server to close the connection: %v", err)
		}
	})

	t.Run("a body in time, a slow answer", func(t *testing.T) {
		conn := dial(t)
		io.WriteString(conn, "POST /slow-answer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello")
		time.AfterFunc(4*s.bodyReadTimeout, func() { close(slowAnswer) })
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "done" {
			t.Errorf("got %d %q, want 200 done", resp.StatusCode, body)
		}
	})
}
