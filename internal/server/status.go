package server

import (
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// kubeStatus is the subset of Kubernetes' metav1.Status that kubectl reads
// from an error response; kubectl prints Message. The kube package will own
// this once it exists; the server needs it only for its own errors.
type kubeStatus struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Metadata   struct{} `json:"metadata"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Reason     string   `json:"reason"`
	Code       int      `json:"code"`
}

// writeStatus answers with a Kubernetes Status ("Failure") body: what
// kubectl and client-go understand and show to the user.
func writeStatus(w http.ResponseWriter, code int, reason, message string) {
	body, err := json.Marshal(kubeStatus{
		Kind:       "Status",
		APIVersion: "v1",
		Status:     "Failure",
		Message:    message,
		Reason:     reason,
		Code:       code,
	})
	if err != nil {
		// Strings and ints always marshal.
		panic(err)
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(body) // a failed write means the client went away; nothing to do
}

// writeText answers with a short plain-text message, for browsers.
func writeText(w http.ResponseWriter, code int, message string) {
	body := message + "\n"
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	// The message may echo what the client sent (its Host header); nosniff
	// keeps a browser from reading it as anything but text.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write([]byte(body))
}

// acceptsHTML reports whether the request's Accept header lists text/html,
// as a browser's does and kubectl's never does.
func acceptsHTML(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == "text/html" {
				return true
			}
		}
	}
	return false
}
