package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

// upstreamTLS builds the client TLS configuration of a route from
// tls_skip_verify, tls_custom_ca, tls_server_name and the client
// certificate. A custom CA replaces the system roots: a route that names
// its CA trusts that CA only.
func upstreamTLS(r *config.Route) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         r.TLSServerName,
		InsecureSkipVerify: r.TLSSkipVerify, //nolint:gosec // the operator asked for it; config warns at start
	}
	if len(r.TLSCustomCA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(r.TLSCustomCA) {
			return nil, errors.New("tls_custom_ca: no PEM certificate found")
		}
		c.RootCAs = pool
	}
	if len(r.TLSClientCert) > 0 {
		cert, err := tls.X509KeyPair(r.TLSClientCert, r.TLSClientKey)
		if err != nil {
			return nil, fmt.Errorf("tls_client_cert: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// newTransports returns the two transports of a route: one that may use
// HTTP/2 (kube-apiserver speaks it; many requests share one connection),
// and one that never does, for upgrades: SPDY and WebSocket need HTTP/1.1
// (RFC 8441 WebSocket over HTTP/2 is not what kube-apiserver serves).
func newTransports(tlsConfig *tls.Config) (h2, h1 *http.Transport) {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	base := func() *http.Transport {
		return &http.Transport{
			Proxy:                 nil, // the upstream is reached directly; HTTPS_PROXY from the environment must not divert it
			DialContext:           dialer.DialContext,
			TLSClientConfig:       tlsConfig.Clone(),
			TLSHandshakeTimeout:   10 * time.Second,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   128,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			// No ResponseHeaderTimeout: a watch may wait long for its
			// first event and kube-apiserver sends headers only then.
		}
	}
	h2 = base()
	h2.ForceAttemptHTTP2 = true
	h1 = base()
	h1.TLSClientConfig.NextProtos = []string{"http/1.1"}
	h1.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // disables HTTP/2
	return h2, h1
}

// byProtocol sends upgrade requests over the HTTP/1.1 transport and the
// rest over the HTTP/2-capable one.
type byProtocol struct{ h2, h1 http.RoundTripper }

func (t byProtocol) RoundTrip(r *http.Request) (*http.Response, error) {
	if IsUpgrade(r.Header) {
		return t.h1.RoundTrip(r)
	}
	return t.h2.RoundTrip(r)
}

// IsUpgrade reports whether a request with header h asks to switch
// protocols (SPDY or WebSocket): an Upgrade header and "upgrade" among the
// Connection tokens, as net/http and ReverseProxy read them.
func IsUpgrade(h http.Header) bool {
	return httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") && h.Get("Upgrade") != ""
}

// failover spreads requests over a route's upstreams round-robin and, when
// a connection to one cannot be made, tries the next. Only dial failures
// are retried, and only while the request body is untouched: then the
// upstream has seen nothing of the request, so trying again cannot apply
// it twice.
type failover struct {
	targets []*url.URL
	next    atomic.Uint32
	rt      http.RoundTripper
}

// pick returns the upstream a new request starts with.
func (f *failover) pick() *url.URL {
	// Modulo in uint32: int(counter) is negative past 2^31 where int has
	// 32 bits.
	return f.targets[(f.next.Add(1)-1)%uint32(len(f.targets))]
}

func (f *failover) RoundTrip(r *http.Request) (*http.Response, error) {
	if len(f.targets) == 1 {
		return f.rt.RoundTrip(r)
	}
	start := 0
	for i, t := range f.targets {
		if t.Host == r.URL.Host && t.Scheme == r.URL.Scheme {
			start = i
		}
	}
	var body *untouchedBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &untouchedBody{ReadCloser: r.Body}
		r.Body = body
	}
	var err error
	for i := range f.targets {
		out := r
		if i > 0 {
			t := f.targets[(start+i)%len(f.targets)]
			out = r.Clone(r.Context())
			out.URL.Scheme, out.URL.Host = t.Scheme, t.Host
		}
		var resp *http.Response
		resp, err = f.rt.RoundTrip(out)
		if err != nil && i > 0 {
			// The error handler sees r, addressed to the first upstream
			// tried; the error must name the one that gave it.
			err = &failoverError{upstream: out.URL.Scheme + "://" + out.URL.Host, err: err}
		}
		if err == nil || !isDialError(err) || (body != nil && body.touched.Load()) {
			return resp, err
		}
	}
	return nil, err
}

// failoverError is a round-trip error from an upstream other than the one
// the request was addressed to, naming it (scheme://host).
type failoverError struct {
	upstream string
	err      error
}

func (e *failoverError) Error() string { return e.upstream + ": " + e.err.Error() }
func (e *failoverError) Unwrap() error { return e.err }

// untouchedBody records whether the transport read the request body, and
// keeps the transport from closing it after a failed dial so that the next
// upstream can read it. The server closes the request body itself.
type untouchedBody struct {
	io.ReadCloser
	touched atomic.Bool
}

func (b *untouchedBody) Read(p []byte) (int, error) {
	b.touched.Store(true)
	return b.ReadCloser.Read(p)
}

func (b *untouchedBody) Close() error { return nil }

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
