package server

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/proxy"
	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// defaultBodyReadTimeout bounds how long a client may take to send the body of a
// request that is not an upgrade. kube-apiserver gives a whole request 60
// seconds (--request-timeout), so a body that takes longer would be
// refused there anyway; here it keeps a client that trickles a body from
// holding a connection and a goroutine without end.
const defaultBodyReadTimeout = time.Minute

// refuseUnservable answers, before anything else looks at it, a request
// that no upstream Portcullis serves could take as meant (see
// proxy.Servable: CONNECT, TRACE, a target that is not a path). Refused
// here, such a request never reaches authentication, the policy or the
// proxy; the proxy refuses it again (defence in depth).
func refuseUnservable(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := proxy.Servable(r); err != nil {
			code := http.StatusBadRequest
			if r.Method == http.MethodConnect || r.Method == http.MethodTrace {
				code = http.StatusMethodNotAllowed
			}
			respond.Error(w, r, respond.Problem{Code: code, Message: "portcullis: " + err.Error()})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// boundBodyRead gives the body of a request that is not an upgrade
// s.bodyReadTimeout to arrive. The server has no ReadTimeout (it would cut
// watches and exec sessions), so without this a client could send its
// headers, then one byte of body a minute, for ever, before anyone has
// checked who it is.
//
// The deadline is lifted once the body has been read to its end, so that
// it cannot end a slow response: net/http's HTTP/1 server goes on reading
// the connection after the body, to notice a client that leaves. Upgrades
// (exec, attach, port-forward) are left alone: after the switch the
// connection is a stream of its own, and a deadline set now would stay on
// it.
func (s *Server) boundBodyRead(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || proxy.IsUpgrade(r.Header) {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(s.bodyReadTimeout)) == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, clear: func() { rc.SetReadDeadline(time.Time{}) }}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline when the body has been read to its
// end. Closing it early does not: net/http then discards the rest of the
// body itself, and that must stay bounded too.
type deadlineBody struct {
	io.ReadCloser
	once  sync.Once
	clear func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.clear)
	}
	return n, err
}
