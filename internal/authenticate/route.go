package authenticate

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/limit"
	"github.com/portcullis-proxy/portcullis/internal/respond"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// RouteEndpoints serves the /.pomerium/ endpoints of a route host whose
// token audience is audience. It reports false for any other path.
func (a *Authenticator) RouteEndpoints(w http.ResponseWriter, r *http.Request, audience string) bool {
	switch r.URL.Path {
	case "/.pomerium/api/v1/login":
		a.programmaticLogin(w, r, audience)
	case pathDeviceAuthorize:
		a.deviceAuthorize(w, r, audience) // device.go
	case pathDeviceToken:
		a.deviceToken(w, r, audience)
	case pathToken:
		a.renewToken(w, r, audience) // renewal.go
	case pathDevice:
		a.devicePage(w, r, audience)
	case "/.pomerium/callback/", "/.pomerium/callback":
		a.routeCallback(w, r, audience)
	case "/.pomerium/sign_out":
		a.routeSignOut(w, r, audience) // signout.go
	case "/.pomerium/", "/.pomerium":
		a.whoAmI(w, r, audience)
	default:
		return false
	}
	return true
}

// programmaticLogin answers portcullis-cli with the URL to open in a
// browser; after sign-in the token goes to the loopback redirect URI.
func (a *Authenticator) programmaticLogin(w http.ResponseWriter, r *http.Request, audience string) {
	if !a.SignInConfigured() {
		respond.Error(w, r, respond.Problem{Code: http.StatusNotImplemented,
			Message: "portcullis: sign-in is not configured on this Portcullis: an administrator must set IDP_PROVIDER"})
		return
	}
	client := limit.Client(r)
	if ok, wait := a.opts.LoginRate.Allow(client, a.now()); !ok {
		a.opts.Limited(LimitLoginRate, client)
		respond.RetryAfter(w.Header(), wait)
		respond.Error(w, r, respond.Problem{Code: http.StatusTooManyRequests,
			Message: fmt.Sprintf("portcullis: too many sign-in requests from your address: try again in %s", respond.InWords(wait))})
		return
	}
	u, err := loopbackRedirect(r.URL.Query().Get("pomerium_redirect_uri"))
	if err != nil {
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Message: "portcullis: " + err.Error()})
		return
	}
	// portcullis-cli asks for a renewable credential; pomerium-cli does
	// not, and gets a token that lasts as long as the session.
	renewable := r.URL.Query().Get("portcullis_renewal") == "1"
	raw, _ := json.Marshal(programmaticLogin{Redirect: u.String(), Audience: audience, Renewable: renewable})
	sealed := a.opts.Sealer.Seal(purposeLogin, raw, a.now().Add(stateTTL))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(a.signInURL(url.Values{"pomerium_login": {sealed}})))
}

// routeCallback receives a signed-in session on the route host: the token
// must be for this route, its session live, and the hand-off bound to this
// browser (routeBinding in authenticate.go); it becomes this host's
// session cookie, and the browser goes back where it was going (on this
// host only).
func (a *Authenticator) routeCallback(w http.ResponseWriter, r *http.Request, audience string) {
	q := r.URL.Query()
	back := &url.URL{Path: "/"}
	if u, err := url.Parse(q.Get("pomerium_redirect_uri")); err == nil && u.Host == r.Host && strings.HasPrefix(u.Path, "/") && !strings.HasPrefix(u.Path, "//") {
		back = &url.URL{Path: u.Path, RawQuery: u.RawQuery}
	}
	tok := q.Get("pomerium_jwt")
	c, err := a.opts.Verify(tok, audience, a.now())
	if err != nil || c.SessionID == "" {
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Sign-in link invalid",
			Text: "This sign-in link is invalid or has expired. Open the address of your cluster again."})
		return
	}
	// startOver begins a sign-in from here, bound to this browser; one
	// already signed in on the sign-in service comes straight back.
	startOver := func() {
		full := *back
		full.Scheme, full.Host = a.routeScheme(r), r.Host
		a.redirectToSignIn(w, r, full.String())
	}
	bind := q.Get("pomerium_bind")
	if bind == "" {
		// A sign-in this route did not start: opened on the sign-in
		// service directly, or a link from someone else.
		startOver()
		return
	}
	if !a.boundToBrowser(r, audience, bind, tok) {
		if _, err := r.Cookie(a.bindCookie()); err == nil {
			// This browser started a sign-in here, but not this one: one
			// in another tab took its place, or this is a link from
			// someone else.
			startOver()
			return
		}
		// No sign-in started here at all, or long ago. Starting over
		// would loop if the browser refuses cookies, so say so instead.
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Sign-in not started here",
			Text: "This sign-in was not started in this browser, or took too long. Open the address of your cluster again to sign in. (If this keeps happening, your browser may be refusing cookies from this site.)"})
		return
	}
	sess, err := a.opts.Store.Get(r.Context(), c.SessionID)
	switch {
	case errors.Is(err, session.ErrNoSession):
		a.clearCookieAt(w, a.bindCookie(), callbackPath)
		respond.Error(w, r, respond.Problem{Code: http.StatusUnauthorized, Title: "Session ended",
			Text: "That session has ended. Open the address of your cluster to sign in again."})
		return
	case err != nil:
		// The hand-off can be tried again once the store answers.
		RefuseStoreUnavailable(w, r)
		return
	}
	a.clearCookieAt(w, a.bindCookie(), callbackPath)
	a.setCookie(w, a.opts.CookieName, a.opts.Sealer.Seal(a.sessionPurpose(audience), []byte(sess.ID), sess.ExpiresAt), sess.ExpiresAt)
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// boundToBrowser reports whether the hand-off seal bind ties tok to the
// nonce in this browser's sign-in cookie for audience.
func (a *Authenticator) boundToBrowser(r *http.Request, audience, bind, tok string) bool {
	want, err := a.opts.Sealer.Open(purposeHandOff+" "+audience, bind, a.now())
	if err != nil {
		return false
	}
	c, err := r.Cookie(a.bindCookie())
	if err != nil {
		return false
	}
	nonce, err := a.opts.Sealer.Open(purposeBindCookie+" "+audience, c.Value, a.now())
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(handOffBinding(string(nonce), tok), want) == 1
}

// whoAmI shows the signed-in person: HTML for people, JSON for scripts.
func (a *Authenticator) whoAmI(w http.ResponseWriter, r *http.Request, audience string) {
	id, _, err := a.Identify(r, audience, Token|Cookie)
	if errors.Is(err, ErrStoreUnavailable) {
		RefuseStoreUnavailable(w, r)
		return
	}
	if err != nil {
		if respond.FromBrowser(r) {
			a.RedirectToSignIn(w, r)
			return
		}
		respond.Error(w, r, respond.Unauthenticated(err.Error()))
		return
	}
	info := struct {
		Email     string    `json:"email"`
		Name      string    `json:"name,omitempty"`
		User      string    `json:"user"`
		Groups    []string  `json:"groups"`
		SessionID string    `json:"-"`
		Expiry    time.Time `json:"expires_at"`
	}{id.Email, id.Name, id.User, id.Groups, id.SessionID, id.Expiry}
	if info.Groups == nil {
		info.Groups = []string{}
	}
	if respond.FromBrowser(r) {
		respond.HTML(w, http.StatusOK, whoAmITemplate, info)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	// The answer quotes what the provider said (name, groups): never let a
	// browser read it as anything but JSON.
	h.Set("X-Content-Type-Options", "nosniff")
	json.NewEncoder(w).Encode(info)
}

var whoAmITemplate = template.Must(template.New("whoami").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed in · Portcullis</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + respond.Style + `</style>
</head><body><h1>Signed in to Portcullis</h1>
<dl><dt>Email</dt><dd id="email">{{.Email}}</dd>
{{if .Name}}<dt>Name</dt><dd>{{.Name}}</dd>{{end}}
<dt>Groups</dt><dd id="groups">{{range $i, $g := .Groups}}{{if $i}}, {{end}}{{$g}}{{else}}(none){{end}}</dd>
<dt>Session ends</dt><dd>{{.Expiry.Format "2006-01-02 15:04 MST"}}</dd></dl>
<form method="post" action="/.pomerium/sign_out"><button type="submit">Sign out</button></form></body></html>
`))
