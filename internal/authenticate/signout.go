package authenticate

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// Sign-out changes state, so it is a POST, and a POST that a page of
// another origin made is refused (logout CSRF): otherwise any page could
// sign a person out with a link or an <img>. A GET shows a page with the
// button that sends the POST.
//
// The check is net/http's CrossOriginProtection (Authenticator.crossOrigin):
// a browser says where a request comes from (Sec-Fetch-Site, else Origin),
// and only same-origin requests pass; a request with neither header is not
// from a browser, so carries no cookie a page chose to send. A sibling
// host of the same site is another origin: SameSite cookies alone would
// let it through.

// purposeSignedOut seals the session a route's sign-out ended, for the
// sign-in service to end its side of the same session without asking
// again (see confirmSignOutAuthenticate).
const purposeSignedOut = "portcullis signed out"

// routeSignOut serves /.pomerium/sign_out on a route host.
func (a *Authenticator) routeSignOut(w http.ResponseWriter, r *http.Request, audience string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		a.confirmSignOut(w, r)
	case http.MethodPost:
		if !a.sameOrigin(w, r) {
			return
		}
		a.endRouteSession(w, r, audience)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		respond.Error(w, r, signOutWithPost)
	}
}

// endRouteSession ends the session everywhere: tokens issued for it stop
// working at once, and the sign-in service forgets it too.
func (a *Authenticator) endRouteSession(w http.ResponseWriter, r *http.Request, audience string) {
	var ended string
	sess, err := a.sessionToEnd(r, audience)
	if err == nil && sess != nil {
		err = a.opts.Store.Delete(r.Context(), sess.ID)
	}
	if err != nil {
		a.log.Error("sign-out refused: the session store failed", "error", err)
		RefuseStoreUnavailable(w, r)
		return
	}
	if sess != nil {
		a.log.Info("signed out", "email", sess.Email, "session", sess.ID[:min(8, len(sess.ID))])
		a.opts.Record(r, Activity{Action: ActivitySignOut, Email: sess.Email, Subject: sess.Subject, SessionID: sess.ID})
		ended = sess.ID
	}
	a.clearCookie(w, a.opts.CookieName)
	if a.opts.AuthenticateURL == nil {
		respond.Page(w, http.StatusOK, "Signed out", "You are signed out of Portcullis.")
		return
	}
	u := *a.opts.AuthenticateURL
	u.Path = strings.TrimSuffix(u.Path, "/") + "/.pomerium/sign_out"
	if ended != "" {
		u.RawQuery = url.Values{"pomerium_signed_out": {a.opts.Sealer.Seal(purposeSignedOut, []byte(ended), a.now().Add(handOffTTL))}}.Encode()
	}
	// 303: the browser follows with a GET, whatever method came here.
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// confirmSignOutAuthenticate serves GET /.pomerium/sign_out on the
// sign-in service. Coming from a route's sign-out, which already ended
// the session, it ends this host's side at once: the sealed
// pomerium_signed_out names the session, and only a sign-out that really
// happened can have sealed it. Otherwise it asks, as a route does.
func (a *Authenticator) confirmSignOutAuthenticate(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Query().Get("pomerium_signed_out"); p != "" {
		ended, err := a.opts.Sealer.Open(purposeSignedOut, p, a.now())
		sid, ok := a.sessionIDFromCookie(r, a.opts.AuthenticateURL.Host)
		if err == nil && ok && sid == string(ended) {
			a.endAuthenticateSession(w, r)
			return
		}
		if err == nil && !ok {
			// No session here (or a cookie from before a secret change):
			// the route's sign-out was all there was to do.
			a.clearCookie(w, a.opts.CookieName)
			respond.Page(w, http.StatusOK, "Signed out", "You are signed out of Portcullis.")
			return
		}
	}
	a.confirmSignOut(w, r)
}

// signOutAuthenticate serves POST /.pomerium/sign_out on the sign-in
// service.
func (a *Authenticator) signOutAuthenticate(w http.ResponseWriter, r *http.Request) {
	if !a.sameOrigin(w, r) {
		return
	}
	a.endAuthenticateSession(w, r)
}

// endAuthenticateSession ends the sign-in on the authenticate host and, if
// the provider has one, at the provider.
//
// A sign-out that starts on a route host has already revoked the session
// (so its tokens stop working even if nothing follows the redirect here):
// an authentic cookie whose session is gone still means this browser
// signed in, and is still sent on to the provider, without the ID token
// hint it no longer has (OpenID Connect RP-Initiated Logout 1.0, section 2,
// makes the hint optional).
func (a *Authenticator) endAuthenticateSession(w http.ResponseWriter, r *http.Request) {
	sid, signedIn := a.sessionIDFromCookie(r, a.opts.AuthenticateURL.Host)
	var hint string
	if signedIn {
		ended := Activity{Action: ActivitySignOut, SessionID: sid}
		if sess, err := a.opts.Store.Get(r.Context(), sid); err == nil {
			hint = sess.IDPIDToken
			ended.Email, ended.Subject = sess.Email, sess.Subject
		}
		// A sign-out that did not happen must not say it did (nor clear
		// the cookie): the session would come back with the store.
		if err := a.opts.Store.Delete(r.Context(), sid); err != nil {
			a.log.Error("sign-out refused: the session store failed", "error", err)
			RefuseStoreUnavailable(w, r)
			return
		}
		a.opts.Record(r, ended)
	}
	a.clearCookie(w, a.opts.CookieName)
	if p := a.provider(); signedIn && p != nil {
		if u := p.EndSessionURL(r.Context(), hint, ""); u != "" {
			http.Redirect(w, r, u, http.StatusSeeOther)
			return
		}
	}
	respond.Page(w, http.StatusOK, "Signed out", "You are signed out of Portcullis.")
}

// sameOrigin refuses, with a page or a Status, a state-changing request
// that a browser made for a page of another origin.
func (a *Authenticator) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	if err := a.crossOrigin.Check(r); err != nil {
		a.log.Info("refused a cross-origin request", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		respond.Error(w, r, respond.Problem{Code: http.StatusForbidden, Message: "portcullis: cross-origin request refused",
			Title: "Request refused", Text: "Another site asked your browser to do this. Nothing was changed."})
		return false
	}
	return true
}

// confirmSignOut answers a GET of a sign-out address: a page with the
// button that signs out (a POST from this origin), or, for a program, a
// Status saying to POST.
func (a *Authenticator) confirmSignOut(w http.ResponseWriter, r *http.Request) {
	if !respond.FromBrowser(r) {
		w.Header().Set("Allow", "GET, HEAD, POST")
		respond.Error(w, r, signOutWithPost)
		return
	}
	// respond.HTML forbids framing: the button must not be clickable
	// inside another site's frame.
	respond.HTML(w, http.StatusOK, signOutTemplate, nil)
}

// signOutWithPost answers a program that asks to sign out other than by
// POST.
var signOutWithPost = respond.Problem{Code: http.StatusMethodNotAllowed, Message: "portcullis: sign out with POST /.pomerium/sign_out"}

var signOutTemplate = template.Must(template.New("signout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign out · Portcullis</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + respond.Style + `</style>
</head><body><h1>Sign out of Portcullis?</h1>
<p>Your session ends everywhere: in this browser, and for kubectl credentials issued from it.</p>
<form method="post" action="/.pomerium/sign_out"><button type="submit" id="sign-out">Sign out</button></form>
</body></html>
`))

// EndUserSessions signs the person with this email out everywhere: every
// live session of theirs ends, on every replica. It returns how many
// ended. An administrator's act (the admin API), never a client's.
func (a *Authenticator) EndUserSessions(ctx context.Context, email string) (int, error) {
	n, err := a.opts.Store.DeleteUser(ctx, email)
	if err != nil {
		return n, fmt.Errorf("ending the sessions of %s: %w", email, err)
	}
	a.log.Info("an administrator ended a person's sessions", "email", email, "sessions", n)
	return n, nil
}
