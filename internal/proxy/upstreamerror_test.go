package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// secret stands for anything that must never reach a client's error
// message: it is put in request URLs and upstream URLs below.
const secret = "s3cr3t-t0ken"

// TestUpstreamProblem: what a client is told when the round trip to the
// upstream failed, for real errors where a test can make them.
func TestUpstreamProblem(t *testing.T) {
	tests := []struct {
		name     string
		err      func(t *testing.T) error // a real error where the test can make one
		upstream string
		wantCode int
		want     string // a substring of the message
	}{
		{
			name:     "connection refused",
			err:      func(t *testing.T) error { return get(t, nil, closedPort(t)) },
			upstream: "https://127.0.0.1:6443",
			wantCode: http.StatusBadGateway,
			want:     "portcullis: upstream https://127.0.0.1:6443: connection refused",
		},
		{
			name: "connection reset",
			err: func(t *testing.T) error {
				return get(t, nil, "http://"+rawServer(t, func(c *net.TCPConn) {
					c.Read(make([]byte, 4096)) // the request
					c.SetLinger(0)             // close with RST
				}))
			},
			wantCode: http.StatusBadGateway,
			want:     ": connection reset",
		},
		{
			name: "closed before a response",
			err: func(t *testing.T) error {
				return get(t, nil, "http://"+rawServer(t, func(c *net.TCPConn) {
					c.Read(make([]byte, 4096))
				}))
			},
			wantCode: http.StatusBadGateway,
			want:     ": connection closed before a response",
		},
		{
			name: "deadline of the request context",
			err: func(t *testing.T) error {
				srv := hangingServer(t)
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api?token="+secret, nil)
				_, err := srv.Client().Do(req)
				return err
			},
			wantCode: http.StatusGatewayTimeout,
			want:     ": timed out",
		},
		{
			name: "client timeout",
			err: func(t *testing.T) error {
				srv := hangingServer(t)
				c := srv.Client()
				c.Timeout = 50 * time.Millisecond
				return get(t, c, srv.URL)
			},
			wantCode: http.StatusGatewayTimeout,
			want:     ": timed out",
		},
		{
			name:     "bare context.DeadlineExceeded",
			err:      func(*testing.T) error { return context.DeadlineExceeded },
			wantCode: http.StatusGatewayTimeout,
			want:     ": timed out",
		},
		{
			name: "tls.Dial to a plain listener",
			err: func(t *testing.T) error {
				srv := httptest.NewServer(http.NotFoundHandler())
				t.Cleanup(srv.Close)
				conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
				if err == nil {
					conn.Close()
				}
				return err
			},
			wantCode: http.StatusBadGateway,
			want:     ": TLS handshake failed: the upstream did not answer with TLS",
		},
		{
			name: "https to a plain HTTP server",
			err: func(t *testing.T) error {
				srv := httptest.NewServer(http.NotFoundHandler())
				t.Cleanup(srv.Close)
				return get(t, nil, "https://"+srv.Listener.Addr().String())
			},
			wantCode: http.StatusBadGateway,
			want:     ": TLS handshake failed: the upstream did not answer with TLS",
		},
		{
			name: "unknown certificate authority",
			err: func(t *testing.T) error {
				srv := quietTLSServer(t, nil)
				return get(t, &http.Client{Transport: &http.Transport{}}, srv.URL)
			},
			wantCode: http.StatusBadGateway,
			want:     ": TLS handshake failed: x509: certificate signed by unknown authority (set tls_custom_ca",
		},
		{
			name: "wrong host name",
			err: func(t *testing.T) error {
				srv := quietTLSServer(t, nil)
				pool := x509.NewCertPool()
				pool.AddCert(srv.Certificate())
				c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "wrong.test"}}}
				return get(t, c, srv.URL)
			},
			wantCode: http.StatusBadGateway,
			want:     ", not wrong.test (set tls_server_name",
		},
		{
			name: "client certificate required",
			err: func(t *testing.T) error {
				srv := quietTLSServer(t, &tls.Config{ClientAuth: tls.RequireAnyClientCert})
				return get(t, srv.Client(), srv.URL)
			},
			wantCode: http.StatusBadGateway,
			want:     ": TLS handshake failed: the upstream sent tls: certificate required",
		},
		{
			name: "host does not resolve",
			err: func(*testing.T) error {
				return &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "k8s.invalid", IsNotFound: true}}
			},
			wantCode: http.StatusBadGateway,
			want:     ": cannot resolve host: lookup k8s.invalid: no such host",
		},
		{
			name:     "canceled",
			err:      func(*testing.T) error { return fmt.Errorf("proxying: %w", context.Canceled) },
			wantCode: http.StatusBadGateway,
			want:     ": request canceled",
		},
		{
			name:     "unknown error",
			err:      func(*testing.T) error { return errors.New("something odd about Bearer " + secret) },
			wantCode: http.StatusBadGateway,
			want:     ": request failed (the proxy's log has the details)",
		},
		{
			name:     "nil error",
			err:      func(*testing.T) error { return nil },
			wantCode: http.StatusBadGateway,
			want:     ": request failed",
		},
		{
			name:     "upstream with userinfo and query",
			err:      func(*testing.T) error { return context.DeadlineExceeded },
			upstream: "https://admin:" + secret + "@k8s.example.com:6443/?token=" + secret + "#" + secret,
			wantCode: http.StatusGatewayTimeout,
			want:     "portcullis: upstream https://k8s.example.com:6443/: timed out",
		},
		{
			name:     "unparsable upstream",
			err:      func(*testing.T) error { return context.DeadlineExceeded },
			upstream: "https://[" + secret,
			wantCode: http.StatusGatewayTimeout,
			want:     "portcullis: upstream (unparsable URL): timed out",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err(t)
			upstream := tt.upstream
			if upstream == "" {
				upstream = "https://kubernetes.default.svc"
			}
			p, _ := upstreamProblem(upstream, err)
			if p.Code != tt.wantCode {
				t.Errorf("got status %d, want %d; error was %v", p.Code, tt.wantCode, err)
			}
			if !strings.Contains(p.Message, tt.want) {
				t.Errorf("got message %q, want it to contain %q; error was %v", p.Message, tt.want, err)
			}
			if strings.Contains(p.Message, secret) {
				t.Errorf("message %q contains the secret", p.Message)
			}
		})
	}
}

// get does a GET of url with a secret in the query, as a proxied request
// might carry one, and returns the error.
func get(t *testing.T, c *http.Client, url string) error {
	t.Helper()
	if c == nil {
		c = &http.Client{Transport: &http.Transport{}}
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/api/v1/pods?token="+secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET %s succeeded with %s, want an error", url, resp.Status)
	}
	return err
}

// rawServer accepts connections on loopback, calls handle on each and
// closes it; it returns the address.
func rawServer(t *testing.T, handle func(*net.TCPConn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			handle(c.(*net.TCPConn))
			c.Close()
		}
	}()
	return l.Addr().String()
}

// quietTLSServer starts a TLS test server with config (nil for the
// default) that does not log the handshake failures the tests cause.
func quietTLSServer(t *testing.T, config *tls.Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = config
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// hangingServer answers nothing until the client goes away.
func hangingServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestUpstreamFailureKinds: the kind of a failure, the metrics' label, is
// one of a few fixed words whatever the error says.
func TestUpstreamFailureKinds(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"deadline", context.DeadlineExceeded, "timeout"},
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "refused"},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "reset"},
		{"unknown CA", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, "tls"},
		{"early close", io.ErrUnexpectedEOF, "closed"},
		{"anything else", errors.New("a message that could say anything"), "other"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, kind := upstreamProblem("https://kubernetes.default.svc", tt.err); kind != tt.want {
				t.Errorf("got %q, want %q", kind, tt.want)
			}
		})
	}
}
