package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/authenticate"
	"github.com/portcullis-proxy/portcullis/internal/respond"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// The admin API, on the metrics listener, for operators:
//
//	GET  /admin/v1/streams                   the long-lived requests open on this replica
//	POST /admin/v1/users/{email}/sign-out    end the person's sessions (every replica) and streams
//
// Both need `Authorization: Bearer ADMIN_TOKEN`; without ADMIN_TOKEN the
// API is off. It is JSON in and out, for curl and scripts.
const adminPrefix = "/admin/v1/"

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminPrefix+"streams", s.adminStreams)
	mux.HandleFunc("POST "+adminPrefix+"users/{email}/sign-out", s.adminSignOut)
	mux.HandleFunc(adminPrefix, func(w http.ResponseWriter, r *http.Request) {
		respond.Error(w, r, respond.Problem{Code: http.StatusNotFound,
			Message: "portcullis: the admin API serves GET /admin/v1/streams and POST /admin/v1/users/{email}/sign-out"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.adminAuthorized(w, r) {
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// adminAuthorized checks the request's bearer token against ADMIN_TOKEN
// (the current configuration's: a reload can rotate it), answering the
// request when it fails.
func (s *Server) adminAuthorized(w http.ResponseWriter, r *http.Request) bool {
	want := s.current().opts.AdminToken
	if want == "" {
		respond.Error(w, r, respond.Problem{Code: http.StatusNotFound,
			Message: "portcullis: the admin API is off: set ADMIN_TOKEN to turn it on"})
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	// Compared as hashes, in constant time: neither the token's length
	// nor its bytes leak through timing.
	gs, ws := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	if !ok || subtle.ConstantTimeCompare(gs[:], ws[:]) != 1 {
		s.logger.Warn("admin API request refused: wrong or missing bearer token", "remote_addr", r.RemoteAddr, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis admin"`)
		respond.Error(w, r, respond.Problem{Code: http.StatusUnauthorized,
			Message: "portcullis: the admin API needs Authorization: Bearer ADMIN_TOKEN"})
		return false
	}
	return true
}

// adminStream is one open stream as the admin API shows it. The session
// id is not shown: it is half of a credential.
type adminStream struct {
	ID     uint64    `json:"id"`
	Kind   string    `json:"kind"`
	Route  string    `json:"route"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	User   string    `json:"user,omitempty"`
	Email  string    `json:"email,omitempty"`
	Opened time.Time `json:"opened"`
	Ending string    `json:"ending,omitempty"`
}

func (s *Server) adminStreams(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Streams []adminStream `json:"streams"`
	}{Streams: []adminStream{}}
	for _, st := range s.streams.Snapshot() {
		a := adminStream{ID: st.ID, Kind: string(st.Info.Kind), Route: st.Info.Route, Method: st.Info.Method, Path: st.Info.Path,
			User: st.Info.User, Email: st.Info.Email, Opened: st.Opened}
		if e := st.Ended(); e != nil {
			a.Ending = e.Message
		}
		out.Streams = append(out.Streams, a)
	}
	writeJSON(w, http.StatusOK, out)
}

// adminSignOut ends every session of the person with this email, on every
// replica (through the session store), and their open streams here at
// once; other replicas end theirs when they see the sessions gone, within
// streamCheckInterval. Streams opened with a credential that names no
// session are ended here too.
func (s *Server) adminSignOut(w http.ResponseWriter, r *http.Request) {
	email := r.PathValue("email")
	if email == "" || len(email) > 320 {
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Message: "portcullis: name the person by email address"})
		return
	}
	n, err := s.auth.EndUserSessions(r.Context(), email)
	if errors.Is(err, session.ErrNoEmail) {
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Message: "portcullis: " + err.Error()})
		return
	}
	if err != nil {
		s.logger.Error("admin sign-out failed", "email", email, "error", err)
		respond.Error(w, r, respond.Problem{Code: http.StatusServiceUnavailable,
			Message: "portcullis: the sessions could not be ended: " + err.Error()})
		return
	}
	s.recordActivity(r, authenticate.Activity{Action: authenticate.ActivitySignOut, Email: email,
		Reason: "an administrator signed the person out everywhere (admin API)"})
	ended := 0
	for _, st := range s.streams.Snapshot() {
		if strings.EqualFold(st.Info.Email, email) && st.Ended() == nil {
			st.End(sessionEnded)
			ended++
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Email    string `json:"email"`
		Sessions int    `json:"sessions_ended"`
		Streams  int    `json:"streams_ended"`
	}{email, n, ended})
}

// writeJSON answers with v as JSON, for the admin API and the health
// endpoints: answers about this moment, which no cache may keep.
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic("server: marshalling an answer: " + err.Error()) // plain structs always marshal
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}
