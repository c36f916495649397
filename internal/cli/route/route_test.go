package route

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw, want, wantErr string
	}{
		{raw: "https://k8s.example.com", want: "https://k8s.example.com"},
		{raw: "https://K8s.Example.COM/", want: "https://k8s.example.com"},
		{raw: "HTTPS://k8s.example.com:443", want: "https://k8s.example.com"},
		{raw: "https://127.0.0.1:8443", want: "https://127.0.0.1:8443"},
		{raw: "http://127.0.0.1:80/", want: "http://127.0.0.1"},
		{raw: "https://[::1]:8443", want: "https://[::1]:8443"},
		{raw: "https://[::1]", want: "https://[::1]"},
		{raw: "https://k8s.example.com/prefix/", want: "https://k8s.example.com/prefix"},
		{raw: " https://k8s.example.com ", want: "https://k8s.example.com"},
		{raw: "k8s.example.com", wantErr: "want the route's address"},
		{raw: "ftp://k8s.example.com", wantErr: "want the route's address"},
		{raw: "https://", wantErr: "no host"},
		{raw: "https://user:pw@k8s.example.com", wantErr: "credentials in the URL"},
		{raw: "https://k8s.example.com/?a=b", wantErr: "query or fragment"},
		{raw: "https://k8s.example.com/#x", wantErr: "query or fragment"},
		{raw: "https://k8s.example.com:port", wantErr: "bad server URL"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := ParseURL(tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v, want an error containing %q", u, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.String() != tt.want {
				t.Errorf("got %s, want %s", u, tt.want)
			}
		})
	}
}

// tlsServer is a route stand-in over TLS with its CA written to a file.
func tlsServer(t *testing.T, h http.Handler) (srv *httptest.Server, caFile string) {
	t.Helper()
	srv = httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes fail on purpose
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

func client(t *testing.T, rawURL string, opts TLSOptions) *Client {
	t.Helper()
	u, err := ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(u, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestTLSOptions(t *testing.T) {
	srv, caFile := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"email":"someuser@example.com","groups":[],"expires_at":"2026-11-28T04:00:00Z"}`))
	}))
	pemBytes, _ := os.ReadFile(caFile)
	for _, tt := range []struct {
		name    string
		opts    TLSOptions
		wantErr string
	}{
		{"--ca-cert file", TLSOptions{CACert: caFile}, ""},
		{"--ca-cert base64 (pomerium-cli)", TLSOptions{CACert: base64.StdEncoding.EncodeToString(pemBytes)}, ""},
		{"--ca-cert PEM", TLSOptions{CACert: string(pemBytes)}, ""},
		{"--alternate-ca-path", TLSOptions{AlternateCAPath: caFile}, ""},
		{"--disable-tls-verification", TLSOptions{InsecureSkipVerify: true}, ""},
		{"no CA", TLSOptions{}, "--ca-cert FILE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client(t, srv.URL, tt.opts).WhoAmI(context.Background(), "a.b.c")
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	for _, tt := range []struct {
		name    string
		opts    TLSOptions
		wantErr string
	}{
		{"--ca-cert missing", TLSOptions{CACert: "/nonexistent/ca.pem"}, `reading --ca-cert: "/nonexistent/ca.pem" is neither a file nor base64-encoded PEM`},
		{"--ca-cert not PEM", TLSOptions{CACert: writeFile(t, "junk")}, "holds no PEM certificate"},
		{"--alternate-ca-path missing", TLSOptions{AlternateCAPath: "/nonexistent/ca.pem"}, "reading --alternate-ca-path"},
		{"--alternate-ca-path not PEM", TLSOptions{AlternateCAPath: writeFile(t, "junk")}, "holds no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.opts.Config(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func writeFile(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLSOptionsArgs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("ca.pem", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := TLSOptions{CACert: "ca.pem", AlternateCAPath: "alt.pem", InsecureSkipVerify: true}.Args()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--ca-cert", filepath.Join(dir, "ca.pem"), "--alternate-ca-path", filepath.Join(dir, "alt.pem"), "--disable-tls-verification"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// Base64 is passed on as it is.
	got, _ = TLSOptions{CACert: "TFMwdExT"}.Args()
	if fmt.Sprint(got) != "[--ca-cert TFMwdExT]" {
		t.Errorf("got %q, want the base64 value unchanged", got)
	}
}

func TestWhoAmI(t *testing.T) {
	var gotAuth, gotAccept string
	srv, caFile := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotAccept = r.Header.Get("Authorization"), r.Header.Get("Accept")
		switch {
		case r.URL.Path != "/.pomerium/":
			http.NotFound(w, r)
		case gotAuth == "Bearer Pomerium-good":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"email":"someuser@example.com","user":"u1","groups":["sre"],"expires_at":"2026-11-28T04:00:00Z"}`))
		case gotAuth == "Bearer Pomerium-broken":
			http.Error(w, "oops", http.StatusInternalServerError)
		case gotAuth == "Bearer Pomerium-redirect":
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"session expired: sign in again","reason":"Unauthorized","code":401}`))
		}
	}))
	c := client(t, srv.URL, TLSOptions{CACert: caFile})
	id, err := c.WhoAmI(context.Background(), "good")
	if err != nil {
		t.Fatal(err)
	}
	if id.Email != "someuser@example.com" || len(id.Groups) != 1 || id.ExpiresAt.IsZero() {
		t.Errorf("got %+v", id)
	}
	if gotAuth != "Bearer Pomerium-good" || gotAccept != "application/json" {
		t.Errorf("sent Authorization %q Accept %q, want the bearer token and JSON", gotAuth, gotAccept)
	}
	_, err = c.WhoAmI(context.Background(), "signed-out")
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "session expired: sign in again") {
		t.Errorf("revoked token: got %v, want ErrRejected with the server's message", err)
	}
	for _, tok := range []string{"broken", "redirect"} {
		_, err = c.WhoAmI(context.Background(), tok)
		if err == nil || errors.Is(err, ErrRejected) {
			t.Errorf("%s: got %v, want an error that is not ErrRejected (the server did not say)", tok, err)
		}
	}
}

func TestLoginURL(t *testing.T) {
	var gotRedirect string
	answer := func(w http.ResponseWriter, r *http.Request) {}
	srv, caFile := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.pomerium/api/v1/login" {
			http.NotFound(w, r)
			return
		}
		gotRedirect = r.URL.Query().Get("pomerium_redirect_uri")
		answer(w, r)
	}))
	c := client(t, srv.URL, TLSOptions{CACert: caFile})
	for _, tt := range []struct {
		name    string
		answer  func(w http.ResponseWriter, r *http.Request)
		want    string
		wantErr string
	}{
		{"sign-in URL", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("https://localhost:8443/.pomerium/sign_in?pomerium_login=sealed\n"))
		}, "https://localhost:8443/.pomerium/sign_in?pomerium_login=sealed", ""},
		{"sign-in not configured", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotImplemented)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",` +
				`"message":"portcullis: sign-in is not configured on this Portcullis: an administrator must set IDP_PROVIDER","reason":"InternalError","code":501}` + "\n"))
		}, "", "the server answered 501 Not Implemented: portcullis: sign-in is not configured on this Portcullis: an administrator must set IDP_PROVIDER"},
		{"sign-in not configured, in plain text (an older server)", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "sign-in is not configured on this Portcullis: an administrator must set IDP_PROVIDER", http.StatusNotImplemented)
		}, "", "the server answered 501 Not Implemented: sign-in is not configured on this Portcullis: an administrator must set IDP_PROVIDER"},
		{"not a URL", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("file:///etc/passwd"))
		}, "", "not a web address"},
		{"control characters are not echoed", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "bad\x1b[31m thing", http.StatusBadRequest)
		}, "", "answered 400 Bad Request: bad[31m thing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			answer = tt.answer
			u, err := c.LoginURL(context.Background(), "http://127.0.0.1:1234/portcullis-cli/abc")
			if gotRedirect != "http://127.0.0.1:1234/portcullis-cli/abc" {
				t.Errorf("sent pomerium_redirect_uri %q", gotRedirect)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v, want an error containing %q", u, err, tt.wantErr)
				}
				return
			}
			if err != nil || u.String() != tt.want {
				t.Fatalf("got %v, %v, want %s", u, err, tt.want)
			}
		})
	}
	// A server that is not Portcullis.
	u, _ := url.Parse(srv.URL + "/nothing-here")
	c2, _ := New(u, TLSOptions{CACert: caFile})
	if _, err := c2.LoginURL(context.Background(), "http://127.0.0.1:1/"); err == nil || !strings.Contains(err.Error(), "no login endpoint") {
		t.Errorf("404: got %v, want it to say there is no login endpoint", err)
	}
}

func TestErrorsForPeople(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + ln.Addr().String()
	ln.Close()
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	for _, tt := range []struct {
		name, url, want string
	}{
		{"unreachable", closed, "cannot reach the server (connection refused); check the URL and that Portcullis is running"},
		{"plain HTTP on an https URL", strings.Replace(plain.URL, "http:", "https:", 1), "does not speak TLS there"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client(t, tt.url, TLSOptions{}).LoginURL(context.Background(), "http://127.0.0.1:1/")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "asking "+tt.url+" for a sign-in URL") {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	srv, _ := tlsServer(t, http.NotFoundHandler())
	_, err = client(t, srv.URL, TLSOptions{}).WhoAmI(context.Background(), "x")
	if err == nil || !strings.Contains(err.Error(), "--ca-cert FILE") {
		t.Errorf("unknown authority: got %v, want it to name --ca-cert", err)
	}
}
