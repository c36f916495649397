package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// status is the part of Kubernetes' metav1.Status
// (k8s.io/apimachinery/pkg/apis/meta/v1) that an error response carries.
// client-go turns such a body into an *errors.StatusError and kubectl
// prints its reason and message; a body that is not a Status shows as "the
// server has asked for the client to provide credentials" or similar, which
// tells the user nothing.
type status struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Metadata   struct{} `json:"metadata"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Reason     string   `json:"reason,omitempty"`
	Code       int      `json:"code"`
}

// statusReason returns the metav1.StatusReason for an HTTP status code, as
// client-go's errors.NewGenericServerResponse maps them, except that 502 is
// ServiceUnavailable: for kubectl a bad gateway means the API server cannot
// be reached, and client-go retries ServiceUnavailable where it would not
// retry InternalError. A code with no reason gives "" (StatusReasonUnknown).
func statusReason(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusUnauthorized:
		return "Unauthorized"
	case http.StatusForbidden:
		return "Forbidden"
	case http.StatusNotFound:
		return "NotFound"
	case http.StatusMethodNotAllowed:
		return "MethodNotAllowed"
	case http.StatusNotAcceptable:
		return "NotAcceptable"
	case http.StatusConflict:
		return "Conflict"
	case http.StatusGone:
		return "Gone"
	case http.StatusRequestEntityTooLarge:
		return "RequestEntityTooLarge"
	case http.StatusUnsupportedMediaType:
		return "UnsupportedMediaType"
	case http.StatusUnprocessableEntity:
		return "Invalid"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusGatewayTimeout:
		return "Timeout"
	}
	if code >= 500 {
		// metav1 has no NotImplemented; client-go calls every other 5xx
		// an InternalError.
		return "InternalError"
	}
	return ""
}

// WriteStatus answers with a Kubernetes Status (status "Failure") JSON
// body carrying code, the reason for code and message. The message is
// shown to the user as is: it must say what happened and what to do, and
// must never hold a token or a header value.
func WriteStatus(w http.ResponseWriter, code int, message string) {
	body, err := json.Marshal(status{
		Kind:       "Status",
		APIVersion: "v1",
		Status:     "Failure",
		Message:    message,
		Reason:     statusReason(code),
		Code:       code,
	})
	if err != nil {
		panic("kube: marshalling a Status: " + err.Error()) // strings and ints always marshal
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	// The message can quote what the client or the identity provider sent;
	// nosniff keeps a browser from reading it as anything but JSON.
	h.Set("X-Content-Type-Options", "nosniff")
	// A denial is about this request and this session; no cache may replay it.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(body) // a failed write means the client went away: nothing to do
}

// signInAgain is what a kubectl user does about a missing or expired
// session: the exec-credential plugin (portcullis-cli) opens the browser
// on the next call once kubectl has seen a 401.
const signInAgain = "run any kubectl command to sign in again"

// Unauthenticated answers 401 for a request with no usable credential;
// detail says what was wrong with it (e.g. "no token or session cookie",
// "token signature is invalid") and must not quote the credential.
func Unauthenticated(w http.ResponseWriter, detail string) {
	msg := "portcullis: no valid credentials"
	if detail != "" {
		msg += ": " + detail
	}
	WriteStatus(w, http.StatusUnauthorized, msg+": "+signInAgain)
}

// SessionExpired answers 401 for a session or token that was valid and
// has expired.
func SessionExpired(w http.ResponseWriter) {
	WriteStatus(w, http.StatusUnauthorized, "portcullis: your session expired: "+signInAgain)
}

// Forbidden answers 403 for an authenticated user whom the route's policy
// denies; reason is the policy's reason (e.g. "groups-unauthorized"), which
// the audit log shows too. kubectl prints it as
// "Error from server (Forbidden): portcullis: access denied by policy: …".
func Forbidden(w http.ResponseWriter, reason string) {
	msg := "portcullis: access denied by policy"
	if reason != "" {
		msg += ": " + reason
	}
	WriteStatus(w, http.StatusForbidden, msg)
}

// ErrNoUpstream is the error a proxy gives UpstreamError when a route has
// no upstream that can take the request (none configured, or all marked
// down); it becomes a 503.
var ErrNoUpstream = errors.New("no upstream available")

// UpstreamError answers for a request whose round trip to upstream (the
// route's "to" URL) failed with err, as httputil.ReverseProxy's
// ErrorHandler would:
//
//   - 503 ServiceUnavailable for ErrNoUpstream;
//   - 504 Timeout for a timeout or context.DeadlineExceeded;
//   - 502 (reason ServiceUnavailable) for everything else: connection
//     refused or reset, host unreachable, a name that does not resolve, a
//     TLS handshake or certificate failure, a connection closed early.
//
// The message names the upstream (without any userinfo or query) and the
// cause. It is built from the kind of error, not from err.Error(), which
// for a *url.Error quotes the request URL; and it never holds a token or a
// header value. The full err belongs in the caller's log.
func UpstreamError(w http.ResponseWriter, upstream string, err error) {
	code, cause := classifyUpstreamError(err)
	WriteStatus(w, code, "portcullis: upstream "+redactURL(upstream)+": "+cause)
}

// classifyUpstreamError returns the status code and a safe, human cause
// for a round-trip error.
func classifyUpstreamError(err error) (int, string) {
	if err == nil {
		return http.StatusBadGateway, "request failed"
	}
	if errors.Is(err, ErrNoUpstream) {
		return http.StatusServiceUnavailable, ErrNoUpstream.Error()
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &netErr) && netErr.Timeout()) {
		return http.StatusGatewayTimeout, "timed out: the API server did not answer in time"
	}
	if cause, ok := tlsCause(err); ok {
		return http.StatusBadGateway, cause
	}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return http.StatusBadGateway, "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return http.StatusBadGateway, "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return http.StatusBadGateway, "host unreachable"
	case errors.As(err, &dnsErr):
		// DNSError's text names the host and the resolver's answer only.
		return http.StatusBadGateway, "cannot resolve host: " + dnsErr.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadGateway, "connection closed before a response"
	case errors.Is(err, context.Canceled):
		return http.StatusBadGateway, "request canceled"
	}
	return http.StatusBadGateway, "request failed (the proxy's log has the details)"
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

// WantsKubernetesStatus reports whether an error for r should be a Status
// JSON body rather than a browser's redirect or HTML page. Only a browser
// gets the latter: it lists text/html in Accept and sends no bearer token
// (no Authorization or X-Pomerium-Authorization header). kubectl, curl
// and client-go accept application/json or */*, and carry a token.
func WantsKubernetesStatus(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" || r.Header.Get("X-Pomerium-Authorization") != "" {
		return true
	}
	return !acceptsHTML(r.Header.Values("Accept"))
}

// acceptsHTML reports whether the Accept header values list text/html with
// a quality above zero (RFC 9110 §12.5.1).
func acceptsHTML(accept []string) bool {
	for _, v := range accept {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "text/html" {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}
