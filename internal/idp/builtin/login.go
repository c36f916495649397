package builtin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-proxy/portcullis/internal/limit"
	"github.com/portcullis-proxy/portcullis/internal/respond"
)

const (
	// loginCookie binds a sign-in to the browser that opened its login
	// page: a form posted from another browser (login CSRF: signing the
	// victim in as the attacker) lacks it.
	loginCookie = "portcullis_idp_login"
	// maxLoginForm bounds the login form's body.
	maxLoginForm = 16 << 10
	// wrongCredentials is the one message for every failed password
	// check: it must not tell an unknown email from a wrong password.
	wrongCredentials = "Wrong email or password."
)

// serveLogin is the login page: GET shows the form for a sign-in request,
// POST checks the password and sends the browser back to op's callback.
func (p *Provider) serveLogin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		p.showLogin(w, r)
	case http.MethodPost:
		p.submitLogin(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		p.message(w, http.StatusMethodNotAllowed, "Method not allowed", "The sign-in page answers GET and POST only.")
	}
}

func (p *Provider) showLogin(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	if id == "" {
		p.message(w, http.StatusBadRequest, "No sign-in in progress",
			"Open the application you want to use; it will send you here to sign in.")
		return
	}
	browser := p.browserBinding(w, r)
	a, err := p.store.bindLogin(id, browser)
	if err != nil {
		p.loginError(w, err)
		return
	}
	p.loginForm(w, http.StatusOK, a, a.loginHint, "")
}

// loginForm shows the login form of request a, with the email typed and,
// after a post that did not sign in, why.
func (p *Provider) loginForm(w http.ResponseWriter, status int, a *authRequest, email, problem string) {
	p.render(w, status, "login", loginPage{
		Title:         "Sign in",
		Action:        p.prefix + "/login",
		AuthRequestID: a.id,
		Client:        a.clientID,
		Email:         email,
		Error:         problem,
	})
}

func (p *Provider) submitLogin(w http.ResponseWriter, r *http.Request) {
	// Reject cross-origin posts outright (Sec-Fetch-Site, else Origin).
	if err := p.csrf.Check(r); err != nil {
		p.logger.Warn("sign-in form refused: posted from another site", "error", err)
		p.message(w, http.StatusForbidden, "Sign-in refused",
			"The sign-in form was sent from another site. Go back to the application and sign in again.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
	if err := r.ParseForm(); err != nil {
		p.message(w, http.StatusBadRequest, "Bad request", "The sign-in form could not be read.")
		return
	}
	// Credentials are read from the body only, never from the URL.
	id := r.PostForm.Get("authRequestID")
	email := strings.TrimSpace(r.PostForm.Get("email"))
	password := r.PostForm.Get("password")

	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" {
		p.loginError(w, errOtherBrowser)
		return
	}
	browser := sha256.Sum256([]byte(c.Value))
	a, err := p.store.checkLogin(id, browser)
	if err != nil {
		p.loginError(w, err)
		return
	}
	addr := limit.Client(r)
	acct, ok, err := p.tryPassword(r.Context(), addr, email, password)
	if err != nil {
		// Paused, or no CPU to check with: the password was not checked
		// and the request lives on, so the form comes back saying when
		// to try again.
		p.logger.Info("sign-in refused before the password was checked", "client_id", a.clientID,
			emailAttr(p.store.currentUsers().byEmailAddress(email)), "client", addr, "reason", err.Error())
		status, _, msg, wait := refusal(err)
		setRetryAfter(w, wait)
		p.loginForm(w, status, a, email, msg)
		return
	}
	if !ok {
		attrs := []any{"client_id", a.clientID, emailAttr(acct), "client", addr}
		if err := p.store.loginFailed(id, browser); err != nil {
			p.logger.Warn("sign-in refused: wrong email or password; sign-in request ended", append(attrs, "reason", err.Error())...)
			p.loginError(w, err)
			return
		}
		p.logger.Info("sign-in refused: wrong email or password", attrs...)
		p.loginForm(w, http.StatusUnauthorized, a, email, wrongCredentials)
		return
	}
	if err := p.store.completeLogin(id, browser, acct.subject); err != nil {
		p.loginError(w, err)
		return
	}
	p.logger.Info("signed in", "email", acct.Email, "client_id", a.clientID)
	// 303: the browser follows with a GET to op's callback, which issues
	// the code and redirects to the client.
	http.Redirect(w, r, p.callback(op.ContextWithIssuer(r.Context(), p.issuer), id), http.StatusSeeOther)
}

// tryPassword checks email and password within the limits on guessing
// (limits.go). Before any hashing, it refuses an email or a client address
// paused after too many wrong passwords (*pausedError); then it waits for
// a hashing slot, and refuses when none frees up in time (errHashBusy). A
// wrong password counts against both the email and the address, whether
// or not the email is a user's; the right one clears the email's count,
// not the address's (see backoff.clear).
//
// A paused email or address is told so (refusal), rather than answered
// "wrong email or password" as if its password had been checked: the
// pause tells an attacker nothing they do not know (the limits are public,
// and an unknown email is paused exactly like a user's), while the lie
// would tell the real person, typing the right password, that it is wrong,
// and hide from them that someone is guessing.
func (p *Provider) tryPassword(ctx context.Context, addr netip.Addr, email, password string) (acct *account, ok bool, err error) {
	key := accountKey(email)
	// The address first: a paused address adds no email to the table.
	if err := p.addrFailures.begin(p.store.now(), addr); err != nil {
		return nil, false, err
	}
	if err := p.accountFailures.begin(p.store.now(), key); err != nil {
		p.addrFailures.end(p.store.now(), addr, false)
		return nil, false, err
	}
	err = p.hashing.run(ctx, func() { acct, ok = p.checkPassword(email, password) })
	now := p.store.now()
	wrong := err == nil && !ok
	if d := p.addrFailures.end(now, addr, wrong); d > 0 {
		p.logger.Warn("wrong passwords: pausing sign-ins from the client address", "client", addr, "pause", d)
	}
	if d := p.accountFailures.end(now, key, wrong); d > 0 {
		p.logger.Warn("wrong passwords: pausing sign-ins for the email", emailAttr(acct), "pause", d)
	}
	if ok {
		p.accountFailures.clear(key)
	}
	return acct, ok, err
}

// emailAttr names the person of a sign-in in the log, only if the email
// is a user's: a password typed into the email field must not reach the
// log.
func emailAttr(acct *account) slog.Attr {
	if acct == nil {
		return slog.String("email", "(not a user)")
	}
	return slog.String("email", acct.Email)
}

// checkPassword returns the account with this email and whether pw is its
// password. It does one bcrypt comparison whether or not the email is
// known, and bcrypt compares in constant time, so that the answer's timing
// does not tell the two apart.
func (p *Provider) checkPassword(email, pw string) (*account, bool) {
	users := p.store.currentUsers()
	acct := users.byEmailAddress(email)
	hash := users.dummyHash
	if acct != nil {
		hash = []byte(acct.PasswordHash)
	}
	// bcrypt ignores bytes past 72: such a password would match on its
	// first 72 bytes alone. Refuse it, after the same work.
	usable := pw != "" && len(pw) <= 72
	if !usable {
		pw = "-"
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(pw))
	return acct, acct != nil && usable && err == nil
}

// dummyHash returns a hash of a random password at cost (the highest
// among the accounts), to compare against when an email is unknown.
func dummyHash(cost int) []byte {
	h, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		// Cannot happen: the cost was checked and the password is short.
		panic("builtin: making the dummy password hash: " + err.Error())
	}
	return h
}

// browserBinding returns the hash of the browser's login cookie, setting
// a new cookie when there is none. One cookie serves every sign-in of the
// browser, so that two tabs signing in at once do not undo each other.
func (p *Provider) browserBinding(w http.ResponseWriter, r *http.Request) [32]byte {
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) >= 26 && len(c.Value) <= 64 {
		return sha256.Sum256([]byte(c.Value))
	}
	v := rand.Text()
	http.SetCookie(w, &http.Cookie{
		Name:     loginCookie,
		Value:    v,
		Path:     p.prefix + "/login",
		HttpOnly: true,
		Secure:   p.secure,
		// Lax, not Strict: the login page is reached by a redirect from
		// the application's site, and Strict would withhold the cookie
		// there and so mint a new one for every sign-in.
		SameSite: http.SameSiteLaxMode,
	})
	return sha256.Sum256([]byte(v))
}

// loginError answers, with a page of its own, a step of a sign-in (the
// authorize call, the login page) that cannot go on.
func (p *Provider) loginError(w http.ResponseWriter, err error) {
	status, title, msg, wait := refusal(err)
	setRetryAfter(w, wait)
	p.message(w, status, title, msg)
}

// refusal is what a person is told when a step of a sign-in is refused
// for err: the status, a title and a sentence, and when to try again (0:
// no time to give). Every refusal's words are here.
func refusal(err error) (status int, title, msg string, wait time.Duration) {
	var paused *pausedError
	switch {
	case errors.Is(err, errOtherBrowser):
		return http.StatusForbidden, "Sign-in refused",
			"This sign-in was started in another browser, or this browser does not keep cookies. Go back to the application and sign in again.", 0
	case errors.Is(err, errTooManyAttempts):
		return http.StatusTooManyRequests, "Too many attempts",
			"The email or password was wrong too many times. Go back to the application and sign in again.", 0
	case errors.As(err, &paused):
		return http.StatusTooManyRequests, "Too many attempts",
			"Too many wrong passwords for this email or from your network. Try again in " + respond.InWords(paused.wait) + ".", paused.wait
	case errors.Is(err, errHashBusy), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "Server busy",
			"The server is busy checking other sign-ins. Try again in a moment.", time.Second
	case errors.Is(err, errTooManySignIns):
		return http.StatusTooManyRequests, "Too many sign-ins in progress",
			"Too many sign-ins are in progress from your network. Finish one, or try again in a minute.", time.Minute
	case errors.Is(err, errSignInsFull):
		return http.StatusServiceUnavailable, "Too many sign-ins in progress",
			"Too many sign-ins are in progress. Try again in a minute.", time.Minute
	}
	return http.StatusBadRequest, "Sign-in expired",
		"This sign-in has expired or was already completed. Go back to the application and sign in again.", 0
}

// setRetryAfter says when to try again, if wait is known.
func setRetryAfter(w http.ResponseWriter, wait time.Duration) {
	if wait > 0 {
		respond.RetryAfter(w.Header(), wait)
	}
}

// serveSignedOut is where end_session sends the browser when the client
// gave no post_logout_redirect_uri.
func (p *Provider) serveSignedOut(w http.ResponseWriter, r *http.Request) {
	p.message(w, http.StatusOK, "Signed out", "You are signed out of the built-in identity provider.")
}

type loginPage struct {
	Title         string
	Action        string
	AuthRequestID string
	Client        string
	Email         string
	Error         string
}

type messagePage struct {
	Title   string
	Message string
}

func (p *Provider) message(w http.ResponseWriter, status int, title, msg string) {
	p.render(w, status, "message", messagePage{Title: title, Message: msg})
}

// render writes one of the pages. Every page is sent not cached, not
// framed (clickjacking) and with no script at all; referrers stay on this
// origin, since the login page's URL names the sign-in request.
func (p *Provider) render(w http.ResponseWriter, status int, name string, data any) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		p.logger.Error("rendering the login page", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// pages are plain HTML: labelled fields, a visible focus ring, an error
// announced to screen readers (role=alert) and tied to the fields, no
// script.
var pages = template.Must(template.New("").Parse(`
{{- define "top" -}}
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{{.Title}} – Portcullis</title>
<style>
body { font-family: system-ui, sans-serif; font-size: 1.05rem; line-height: 1.5; color: #1a1a1a; background: #f4f5f7; margin: 0; }
main { max-width: 24rem; margin: 3rem auto; padding: 2rem; background: #fff; border: 1px solid #d0d4da; border-radius: 8px; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
label { display: block; font-weight: 600; margin-top: 1rem; }
input { box-sizing: border-box; width: 100%; font: inherit; padding: .5rem; margin-top: .25rem; border: 1px solid #6b7280; border-radius: 4px; }
input:focus, button:focus { outline: 3px solid #1d4ed8; outline-offset: 2px; }
button { font: inherit; font-weight: 600; margin-top: 1.5rem; width: 100%; padding: .6rem; color: #fff; background: #1d4ed8; border: 0; border-radius: 4px; cursor: pointer; }
.error { color: #991b1b; background: #fef2f2; border: 1px solid #991b1b; border-radius: 4px; padding: .5rem .75rem; }
.note { font-size: .9rem; color: #4b5563; margin-top: 2rem; }
</style>
</head>
<body>
<main>
{{- end}}

{{- define "bottom"}}
<p class="note">Portcullis built-in identity provider, for development and demos.</p>
</main>
</body>
</html>
{{end}}

{{- define "login"}}{{template "top" .}}
<h1>Sign in</h1>
<p>to continue to <strong>{{.Client}}</strong></p>
{{- if .Error}}
<p class="error" id="login-error" role="alert">{{.Error}}</p>
{{- end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="authRequestID" value="{{.AuthRequestID}}">
<label for="email">Email</label>
<input id="email" name="email" type="email" value="{{.Email}}" autocomplete="username" autocapitalize="none" spellcheck="false" required{{if .Error}} aria-invalid="true" aria-describedby="login-error"{{else}} autofocus{{end}}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required{{if .Error}} aria-invalid="true" aria-describedby="login-error" autofocus{{end}}>
<button type="submit">Sign in</button>
</form>
{{- template "bottom" .}}{{end}}

{{- define "message"}}{{template "top" .}}
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{- template "bottom" .}}{{end}}
`))
