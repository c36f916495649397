package respond

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// status is the part of Kubernetes' metav1.Status
// (k8s.io/apimachinery/pkg/apis/meta/v1) that an error response carries.
// client-go turns such a body into an *errors.StatusError and kubectl
// prints its reason and message; a body that is not a Status shows as "the
// server has asked for the client to provide credentials" or similar, which
// tells the user nothing. It is written by hand rather than imported so
// that this package, and the proxy, do not pull in apimachinery; the tests
// check it against the real type and client-go.
type status struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Metadata   struct{} `json:"metadata"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Reason     string   `json:"reason,omitempty"`
	Code       int      `json:"code"`
}

// StatusReason returns the metav1.StatusReason for an HTTP status code, as
// client-go's errors.NewGenericServerResponse maps them, except that 502 is
// ServiceUnavailable: for kubectl a bad gateway means the API server cannot
// be reached, and client-go retries ServiceUnavailable where it would not
// retry InternalError. A code with no reason gives "" (StatusReasonUnknown).
func StatusReason(code int) string {
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

// Status is a Kubernetes Status (status "Failure") as JSON, carrying code,
// the reason for code and message: the body of an error response, and
// what a stream Portcullis ends carries as its last word (package stream).
func Status(code int, message string) []byte {
	body, err := json.Marshal(status{
		Kind:       "Status",
		APIVersion: "v1",
		Status:     "Failure",
		Message:    message,
		Reason:     StatusReason(code),
		Code:       code,
	})
	if err != nil {
		panic("respond: marshalling a Status: " + err.Error()) // strings and ints always marshal
	}
	return body
}

// writeStatus answers with a Kubernetes Status (status "Failure") JSON
// body carrying code, the reason for code and message.
func writeStatus(w http.ResponseWriter, code int, message string) {
	body := append(Status(code, message), '\n')
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
