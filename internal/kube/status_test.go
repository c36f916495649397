package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// secret stands for anything that must never reach a client's error
// message: it is put in request URLs and upstream URLs below.
const secret = "s3cr3t-t0ken"

// statusCases are the responses with golden files in testdata.
var statusCases = []struct {
	name     string
	write    func(w http.ResponseWriter)
	wantCode int
}{
	{
		name:     "401-unauthenticated",
		write:    func(w http.ResponseWriter) { Unauthenticated(w, "no bearer token or session cookie") },
		wantCode: http.StatusUnauthorized,
	},
	{
		name:     "401-session-expired",
		write:    SessionExpired,
		wantCode: http.StatusUnauthorized,
	},
	{
		name:     "403-forbidden",
		write:    func(w http.ResponseWriter) { Forbidden(w, "groups-unauthorized") },
		wantCode: http.StatusForbidden,
	},
	{
		name: "502-connection-refused",
		write: func(w http.ResponseWriter) {
			err := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
			UpstreamError(w, "https://kubernetes.default.svc", err)
		},
		wantCode: http.StatusBadGateway,
	},
	{
		name: "503-no-upstream",
		write: func(w http.ResponseWriter) {
			UpstreamError(w, "https://kubernetes.default.svc", fmt.Errorf("route 1: %w", ErrNoUpstream))
		},
		wantCode: http.StatusServiceUnavailable,
	},
	{
		name: "504-timeout",
		write: func(w http.ResponseWriter) {
			UpstreamError(w, "https://kubernetes.default.svc", context.DeadlineExceeded)
		},
		wantCode: http.StatusGatewayTimeout,
	},
}

func TestWriteStatusGolden(t *testing.T) {
	for _, tt := range statusCases {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tt.write(rec)
			if rec.Code != tt.wantCode {
				t.Errorf("got status %d, want %d", rec.Code, tt.wantCode)
			}
			wantHeader := http.Header{
				"Content-Type":           {"application/json"},
				"Content-Length":         {fmt.Sprint(rec.Body.Len())},
				"Cache-Control":          {"no-store"},
				"X-Content-Type-Options": {"nosniff"},
			}
			if diff := cmp.Diff(wantHeader, rec.Header()); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			golden(t, filepath.Join("testdata", "status-"+tt.name+".json"), rec.Body.Bytes())

			// The body is a metav1.Status with the same code.
			var st metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
				t.Fatalf("decoding the body as a metav1.Status: %v", err)
			}
			if st.Code != int32(tt.wantCode) || st.Status != metav1.StatusFailure || st.Kind != "Status" {
				t.Errorf("got Status{Kind: %q, Status: %q, Code: %d}, want {Status, Failure, %d}", st.Kind, st.Status, st.Code, tt.wantCode)
			}
		})
	}
}

// TestStatusSeenByClientGo sends each response through client-go, as
// kubectl receives it, and checks that client-go reads it as a Status
// error with our reason and message rather than a generic one.
func TestStatusSeenByClientGo(t *testing.T) {
	for _, tt := range statusCases {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tt.write(w) }))
			defer srv.Close()
			rec := httptest.NewRecorder()
			tt.write(rec)
			var want metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &want); err != nil {
				t.Fatal(err)
			}

			err := newRESTClient(t, srv.URL).Get().Resource("pods").Do(t.Context()).Error()
			var statusErr apierrors.APIStatus
			if !errors.As(err, &statusErr) {
				t.Fatalf("client-go returned %T %v, want an APIStatus", err, err)
			}
			got := statusErr.Status()
			if got.Reason != want.Reason || got.Message != want.Message || got.Code != want.Code {
				t.Errorf("client-go saw reason %q, message %q, code %d; want %q, %q, %d",
					got.Reason, got.Message, got.Code, want.Reason, want.Message, want.Code)
			}
		})
	}
}

func newRESTClient(t *testing.T, host string) *rest.RESTClient {
	t.Helper()
	scheme := runtime.NewScheme()
	gv := schema.GroupVersion{Version: "v1"}
	metav1.AddToGroupVersion(scheme, gv)
	c, err := rest.RESTClientFor(&rest.Config{
		Host:    host,
		APIPath: "/api",
		ContentConfig: rest.ContentConfig{
			GroupVersion:         &gv,
			NegotiatedSerializer: serializer.NewCodecFactory(scheme).WithoutConversion(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStatusMessages(t *testing.T) {
	tests := []struct {
		name  string
		write func(w http.ResponseWriter)
		want  string
	}{
		{
			name:  "unauthenticated",
			write: func(w http.ResponseWriter) { Unauthenticated(w, "token signature is invalid") },
			want:  "portcullis: no valid credentials: token signature is invalid: run any kubectl command to sign in again",
		},
		{
			name:  "unauthenticated without detail",
			write: func(w http.ResponseWriter) { Unauthenticated(w, "") },
			want:  "portcullis: no valid credentials: run any kubectl command to sign in again",
		},
		{
			name:  "session expired",
			write: SessionExpired,
			want:  "portcullis: your session expired: run any kubectl command to sign in again",
		},
		{
			name:  "forbidden",
			write: func(w http.ResponseWriter) { Forbidden(w, "groups-unauthorized") },
			want:  "portcullis: access denied by policy: groups-unauthorized",
		},
		{
			name:  "forbidden without reason",
			write: func(w http.ResponseWriter) { Forbidden(w, "") },
			want:  "portcullis: access denied by policy",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tt.write(rec)
			if got := decodeStatus(t, rec).Message; got != tt.want {
				t.Errorf("got message %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStatusReason(t *testing.T) {
	tests := []struct {
		code int
		want metav1.StatusReason
	}{
		{400, metav1.StatusReasonBadRequest},
		{401, metav1.StatusReasonUnauthorized},
		{403, metav1.StatusReasonForbidden},
		{404, metav1.StatusReasonNotFound},
		{405, metav1.StatusReasonMethodNotAllowed},
		{406, metav1.StatusReasonNotAcceptable},
		{409, metav1.StatusReasonConflict},
		{410, metav1.StatusReasonGone},
		{413, metav1.StatusReasonRequestEntityTooLarge},
		{415, metav1.StatusReasonUnsupportedMediaType},
		{422, metav1.StatusReasonInvalid},
		{429, metav1.StatusReasonTooManyRequests},
		{500, metav1.StatusReasonInternalError},
		{501, metav1.StatusReasonInternalError},
		{502, metav1.StatusReasonServiceUnavailable},
		{503, metav1.StatusReasonServiceUnavailable},
		{504, metav1.StatusReasonTimeout},
		{418, metav1.StatusReasonUnknown},
	}
	for _, tt := range tests {
		if got := statusReason(tt.code); got != string(tt.want) {
			t.Errorf("statusReason(%d) = %q, want %q", tt.code, got, tt.want)
		}
	}
}

func TestUpstreamError(t *testing.T) {
	tests := []struct {
		name     string
		err      func(t *testing.T) error // a real error where the test can make one
		upstream string
		wantCode int
		want     string // a substring of the message
	}{
		{
			name:     "connection refused",
			err:      func(t *testing.T) error { return get(t, nil, "http://"+closedPort(t)) },
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
			name:     "no upstream",
			err:      func(*testing.T) error { return fmt.Errorf("route %q: %w", "https://k8s.example.com", ErrNoUpstream) },
			wantCode: http.StatusServiceUnavailable,
			want:     ": no upstream available",
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
			rec := httptest.NewRecorder()
			UpstreamError(rec, upstream, err)
			st := decodeStatus(t, rec)
			if rec.Code != tt.wantCode || int(st.Code) != tt.wantCode {
				t.Errorf("got status %d (body code %d), want %d; error was %v", rec.Code, st.Code, tt.wantCode, err)
			}
			if !strings.Contains(st.Message, tt.want) {
				t.Errorf("got message %q, want it to contain %q; error was %v", st.Message, tt.want, err)
			}
			if strings.Contains(st.Message, secret) {
				t.Errorf("message %q contains the secret", st.Message)
			}
		})
	}
}

func TestWantsKubernetesStatus(t *testing.T) {
	const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
	tests := []struct {
		name   string
		header http.Header
		want   bool
	}{
		{name: "kubectl", header: http.Header{
			"Accept":        {"application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
			"Authorization": {"Bearer Pomerium-x.y.z"},
		}, want: true},
		{name: "kubectl with no token yet", header: http.Header{"Accept": {"application/json, */*"}}, want: true},
		{name: "curl", header: http.Header{"Accept": {"*/*"}}, want: true},
		{name: "no Accept", header: http.Header{}, want: true},
		{name: "browser", header: http.Header{"Accept": {browserAccept}}, want: false},
		{name: "browser with session cookie", header: http.Header{
			"Accept": {browserAccept}, "Cookie": {"_pomerium=x"},
		}, want: false},
		{name: "html with a bearer token", header: http.Header{
			"Accept": {browserAccept}, "Authorization": {"Bearer x"},
		}, want: true},
		{name: "html with Pomerium authorization scheme", header: http.Header{
			"Accept": {"text/html"}, "Authorization": {"Pomerium x.y.z"},
		}, want: true},
		{name: "html with X-Pomerium-Authorization", header: http.Header{
			"Accept": {"text/html"}, "X-Pomerium-Authorization": {"x.y.z"},
		}, want: true},
		{name: "html refused with q=0", header: http.Header{"Accept": {"text/html;q=0, application/json"}}, want: true},
		{name: "html in a second Accept line", header: http.Header{"Accept": {"application/json", "TEXT/HTML; charset=utf-8"}}, want: false},
		{name: "malformed Accept", header: http.Header{"Accept": {";;;,text/html/x"}}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "https://k8s.example.com/api/v1/pods", nil)
			r.Header = tt.header
			if got := WantsKubernetesStatus(r); got != tt.want {
				t.Errorf("WantsKubernetesStatus(%v) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func decodeStatus(t *testing.T, rec *httptest.ResponseRecorder) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("decoding %q: %v", rec.Body.String(), err)
	}
	return st
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

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
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

// golden compares got with the golden file at path, or rewrites the file
// under -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}
