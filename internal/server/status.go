package server

import (
	"mime"
	"net/http"
	"strconv"
	"strings"
)

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
