package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"log/slog"
	"strings"
)

// errNoCertificate is what New reports when TLS is wanted and nothing to
// serve it with was configured. It names every way out.
var errNoCertificate = errors.New("no TLS certificate configured: set CERTIFICATE and CERTIFICATE_KEY " +
	"(base64 of PEM) or CERTIFICATE_FILE and CERTIFICATE_KEY_FILE, " +
	"or set INSECURE_SERVER=true to serve plain HTTP behind a proxy that terminates TLS")

// newTLSConfig builds the main listener's TLS configuration. The
// certificate is the current generation's, looked up at each handshake,
// so a reload (a renewed certificate file, say) reaches the next new
// connection while the connections open go on with the one they began
// with.
func (s *Server) newTLSConfig() *tls.Config {
	return &tls.Config{
		// TLS 1.0 and 1.1 are deprecated (RFC 8996); kubectl and every
		// current browser speak 1.2 and 1.3. Go's default cipher suites
		// for 1.2 are all AEAD with forward secrecy.
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.current().cert, nil
		},
		// h2 first: client-go multiplexes watches over one HTTP/2
		// connection. SPDY clients offer only http/1.1 and get it.
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// newErrorLog routes a *log.Logger's output, such as net/http's own error
// log (http.Server.ErrorLog), through slog.
func newErrorLog(logger *slog.Logger) *log.Logger {
	return log.New(errorLogWriter{logger}, "", 0)
}

// errorLogWriter turns each line net/http logs into a slog record.
type errorLogWriter struct{ logger *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	// Port scanners, load-balancer TCP probes and clients that give up
	// mid-handshake produce these all day; they are not the operator's
	// problem unless debugging.
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		level = slog.LevelDebug
	}
	w.logger.Log(context.Background(), level, msg)
	return len(p), nil
}
