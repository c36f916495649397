package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// upstreamProblem is the answer to a request whose round trip to upstream
// (the route's "to" URL) failed with err, as httputil.ReverseProxy's
// ErrorHandler would give it:
//
//   - 504 Timeout for a timeout or context.DeadlineExceeded;
//   - 502 (reason ServiceUnavailable) for everything else: connection
//     refused or reset, host unreachable, a name that does not resolve, a
//     TLS handshake or certificate failure, a connection closed early.
//
// The message names the upstream (without any userinfo or query) and the
// cause. It is built from the kind of error, not from err.Error(), which
// for a *url.Error quotes the request URL; and it never holds a token or a
// header value. The full err belongs in the caller's log.
//
// It also returns the kind of failure, one of a few fixed words (timeout,
// tls, refused, reset, unreachable, dns, closed, canceled, other), for the
// metrics.
func upstreamProblem(upstream string, err error) (respond.Problem, string) {
	code, cause, kind := classifyUpstreamError(err)
	return respond.Problem{Code: code, Message: "portcullis: upstream " + redactURL(upstream) + ": " + cause}, kind
}

// classifyUpstreamError returns the status code, a safe, human cause and
// the kind of failure (see upstreamProblem) for a round-trip error.
func classifyUpstreamError(err error) (code int, cause, kind string) {
	if err == nil {
		return http.StatusBadGateway, "request failed", "other"
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &netErr) && netErr.Timeout()) {
		return http.StatusGatewayTimeout, "timed out: the API server did not answer in time", "timeout"
	}
	if cause, ok := tlsCause(err); ok {
		return http.StatusBadGateway, cause, "tls"
	}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return http.StatusBadGateway, "connection refused", "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return http.StatusBadGateway, "connection reset", "reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return http.StatusBadGateway, "host unreachable", "unreachable"
	case errors.As(err, &dnsErr):
		// DNSError's text names the host and the resolver's answer only.
		return http.StatusBadGateway, "cannot resolve host: " + dnsErr.Error(), "dns"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadGateway, "connection closed before a response", "closed"
	case errors.Is(err, context.Canceled):
		return http.StatusBadGateway, "request canceled", "canceled"
	}
	return http.StatusBadGateway, "request failed (the proxy's log has the details)", "other"
}

// tlsCause recognises a failed TLS handshake with the upstream and
// describes it. The texts of these errors name certificates, hosts and
// alerts, never request data.
func tlsCause(err error) (string, bool) {
	var (
		recErr    tls.RecordHeaderError
		verifyErr *tls.CertificateVerificationError
		alertErr  tls.AlertError
		opErr     *net.OpError
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	const prefix = "TLS handshake failed: "
	switch {
	case errors.As(err, &recErr),
		// http.Transport turns a RecordHeaderError whose bytes look like
		// an HTTP response into this plain error (net/http transport.go).
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return prefix + "the upstream did not answer with TLS (is it plain HTTP?)", true
	case errors.As(err, &unknownCA):
		return prefix + unknownCA.Error() + " (set tls_custom_ca to the API server's CA)", true
	case errors.As(err, &hostErr):
		return prefix + hostErr.Error() + " (set tls_server_name to a name in the certificate)", true
	case errors.As(err, &invalid):
		return prefix + invalid.Error(), true
	case errors.As(err, &verifyErr):
		return prefix + verifyErr.Err.Error(), true
	case errors.As(err, &alertErr):
		return prefix + alertErr.Error(), true
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// crypto/tls reports an alert from the peer this way, e.g.
		// "tls: bad certificate" when the API server rejects the route's
		// client certificate.
		return prefix + "the upstream sent " + opErr.Err.Error(), true
	}
	return "", false
}

// redactURL returns upstream without userinfo, query or fragment, or
// "(unparsable URL)" when it does not parse: only the scheme, host and path
// are shown to a client.
func redactURL(upstream string) string {
	u, err := url.Parse(upstream)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	u.ForceQuery = false
	u.Fragment = ""
	u.RawFragment = ""
	return u.String()
}
