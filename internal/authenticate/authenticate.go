package authenticate

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/idp"
	"github.com/portcullis-proxy/portcullis/internal/limit"
	"github.com/portcullis-proxy/portcullis/internal/respond"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// Options are what an Authenticator needs. Without a Provider (no
// IDP_PROVIDER) nobody can sign in, but tokens and cookies issued by
// another replica are still recognised.
type Options struct {
	// AuthenticateURL is the public URL of the sign-in service
	// (AUTHENTICATE_SERVICE_URL); the provider redirects to its
	// /oauth2/callback.
	AuthenticateURL *url.URL
	CookieName      string
	CookieExpire    time.Duration
	// AccessTokenLifetime is how long a renewable token lasts
	// (renewal.go); DefaultAccessTokenLifetime if zero.
	AccessTokenLifetime time.Duration
	// DeviceCodeLifetime and DevicePollInterval bound a device sign-in
	// (device.go); session.DeviceLifetime and session.DeviceInterval if
	// zero. DevicePollsPerMinute bounds each client address's polls;
	// DefaultDevicePollsPerMinute if zero.
	DeviceCodeLifetime, DevicePollInterval time.Duration
	DevicePollsPerMinute                   int
	Sealer                                 *session.Sealer
	Keys                                   *session.Keys
	// Verify checks a Portcullis token for an audience (Keys.Verify, or a
	// cache in front of it).
	Verify   func(token, audience string, now time.Time) (*session.Claims, error)
	Store    session.Store
	Provider idp.Provider
	// RouteAudience says whether host (a Host header) is a configured
	// route, and returns its token audience.
	RouteAudience func(host string) (audience string, ok bool)
	// KubernetesIdentity, if set, returns the user name and groups
	// Kubernetes sees for sess on the route of audience (groups nil when
	// the route's mapping leaves the provider's groups as they are), and
	// false for a route that is not a Kubernetes route or a person the
	// mapping gives no user name. Tokens for such routes carry them, for
	// a kube-apiserver that validates tokens itself (direct.go).
	KubernetesIdentity func(audience string, sess *session.Session) (user string, groups []string, ok bool)
	Logger             *slog.Logger

	// SignInRate bounds, per client, the sign-ins started and completed on
	// the authenticate service (sign_in, oauth2/callback); LoginRate the
	// programmatic login API of every route. Both are required.
	SignInRate, LoginRate *limit.Rate
	// PendingSignIns caps the sign-ins remembered (for stateTTL each) so
	// that their callback is not replayed; past it a callback is refused
	// with 503. At least 1.
	PendingSignIns int
	// Limited, if set, is told of every request refused at one of these
	// limits (LimitSignInRate, LimitLoginRate, LimitPendingSignIns,
	// LimitDevicePolls), and of the client refused.
	Limited func(limit string, client netip.Addr)
	// Record, if set, is told of every sign-in, refused sign-in, sign-out
	// and session ended by the identity provider, for the audit trail. r
	// is the request it happened in; nil for a session a background
	// refresh ended.
	Record func(r *http.Request, a Activity)
	// Refreshed, if set, is told the result of every refresh of a session
	// with the identity provider (a Refresh* constant), for metrics.
	Refreshed func(result string)
}

// The results of a refresh, as Options.Refreshed reports them.
const (
	RefreshOK          = "refreshed"
	RefreshRefused     = "refused"     // the provider refused; the session ended
	RefreshUnreachable = "unreachable" // the provider could not be reached; the session goes on within the grace
	RefreshGraceOver   = "grace_over"  // unreachable past the grace; the session ended
	RefreshOtherUser   = "other_user"  // the provider answered for someone else; the session ended
)

// Activity is a sign-in event the audit trail records.
type Activity struct {
	// Action is one of the Activity* constants.
	Action string
	// Email, Subject and SessionID name the person and their session, as
	// far as they are known (a refused sign-in may know none of them).
	Email, Subject, SessionID string
	// Reason says why a sign-in was refused or a session ended.
	Reason string
	// Route is the route (its host) a device sign-in was for.
	Route string
}

// The actions of Activity.
const (
	ActivitySignIn        = "sign-in"
	ActivitySignInRefused = "sign-in-refused"
	ActivitySignOut       = "sign-out"
	ActivitySessionEnded  = "session-ended" // by the identity provider, at a refresh
	// A person approved or denied a device sign-in in their browser; the
	// device that asked got its token (device.go).
	ActivityDeviceApproved = "device-approved"
	ActivityDeviceDenied   = "device-denied"
	ActivityDeviceSignIn   = "device-sign-in"
)

// Activities are the actions of Activity, in the order they are listed.
var Activities = []string{ActivitySignIn, ActivitySignInRefused, ActivitySignOut, ActivitySessionEnded,
	ActivityDeviceApproved, ActivityDeviceDenied, ActivityDeviceSignIn}

// The names of the limits an Authenticator enforces, as Options.Limited
// reports them.
const (
	LimitSignInRate     = "sign_ins_per_minute"
	LimitLoginRate      = "logins_per_minute"
	LimitPendingSignIns = "pending_sign_ins"
)

// Authenticator serves the sign-in endpoints and identifies requests.
type Authenticator struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	refresh refresher // sessions' refreshes with the provider (refresh.go)
	// idp is the identity provider (Options.Provider, until SetProvider).
	idp atomic.Pointer[providerRef]
	// refreshing counts the refreshes running (WaitForRefreshes).
	refreshing sync.WaitGroup
	// replica names this Authenticator as the holder of store leases.
	replica string

	// crossOrigin refuses state-changing requests a page of another
	// origin made (signout.go).
	crossOrigin *http.CrossOriginProtection
	// devicePolls bounds the device token endpoint's polls per client
	// (device.go).
	devicePolls *limit.Rate
}

// stateTTL bounds a sign-in round trip to the provider and back.
const stateTTL = 10 * time.Minute

// New returns an Authenticator.
func New(opts Options) (*Authenticator, error) {
	if opts.Provider != nil && opts.AuthenticateURL == nil {
		return nil, errors.New("sign-in: AUTHENTICATE_SERVICE_URL is not set: the identity provider needs it for its callback")
	}
	if opts.Sealer == nil || opts.Keys == nil || opts.Store == nil || opts.Verify == nil || opts.RouteAudience == nil ||
		opts.SignInRate == nil || opts.LoginRate == nil || opts.PendingSignIns < 1 {
		return nil, errors.New("sign-in: incomplete options")
	}
	if opts.Limited == nil {
		opts.Limited = func(string, netip.Addr) {}
	}
	if opts.Record == nil {
		opts.Record = func(*http.Request, Activity) {}
	}
	if opts.Refreshed == nil {
		opts.Refreshed = func(string) {}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.AccessTokenLifetime <= 0 {
		opts.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if opts.DeviceCodeLifetime <= 0 {
		opts.DeviceCodeLifetime = session.DeviceLifetime
	}
	if opts.DevicePollInterval <= 0 {
		opts.DevicePollInterval = session.DeviceInterval
	}
	if opts.DevicePollsPerMinute <= 0 {
		opts.DevicePollsPerMinute = DefaultDevicePollsPerMinute
	}
	a := &Authenticator{opts: opts, log: log, now: time.Now, replica: session.NewSessionID(),
		crossOrigin: http.NewCrossOriginProtection(), devicePolls: limit.NewRate(opts.DevicePollsPerMinute, 0)}
	a.SetProvider(opts.Provider)
	return a, nil
}

// loginState travels sealed in the OAuth state parameter.
type loginState struct {
	CSRF         string `json:"c"`
	Nonce        string `json:"n"`
	Verifier     string `json:"v"`
	Redirect     string `json:"r"`           // where the person goes after sign-in
	Audience     string `json:"a"`           // the route the token is for
	Programmatic bool   `json:"p,omitempty"` // deliver pomerium_jwt to a loopback URL
	// Renewable asks for a short-lived token and a renewal credential
	// (renewal.go) beside it: portcullis-cli, not pomerium-cli.
	Renewable bool `json:"rn,omitempty"`
	// Bind is the nonce of the route's sign-in cookie (routeBinding): the
	// hand-off is accepted only by the browser that holds it.
	Bind string `json:"b,omitempty"`
}

// programmaticLogin travels sealed in the sign-in URL the login API returns.
type programmaticLogin struct {
	Redirect  string `json:"r"`
	Audience  string `json:"a"`
	Renewable bool   `json:"rn,omitempty"`
}

const (
	purposeState = "portcullis state"
	purposeCSRF  = "portcullis csrf"
	purposeLogin = "portcullis programmatic login"
	// The three seals of a route's browser sign-in (see routeBinding): the
	// nonce in the sign-in URL, in the route host's cookie, and bound to
	// the token in the hand-off back to the route.
	purposeBindParam  = "portcullis route sign-in"
	purposeBindCookie = "portcullis route sign-in cookie"
	purposeHandOff    = "portcullis hand-off"
)

// callbackPath is the path of a route host's sign-in callback, and of the
// cookie that binds a sign-in to the browser (it covers
// "/.pomerium/callback/" as well).
const callbackPath = "/.pomerium/callback"

// handOffTTL bounds the redirect from the sign-in service back to the
// route: the browser follows it at once.
const handOffTTL = 2 * time.Minute

func (a *Authenticator) sessionPurpose(host string) string { return "portcullis session " + host }
func (a *Authenticator) csrfCookie() string                { return a.opts.CookieName + "_csrf" }
func (a *Authenticator) bindCookie() string                { return a.opts.CookieName + "_signin" }

// SignInConfigured reports whether people can sign in here.
func (a *Authenticator) SignInConfigured() bool { return a.provider() != nil }

// providerRef holds the identity provider, which a reload may replace.
type providerRef struct{ p idp.Provider }

// provider returns the identity provider in use now, or nil if sign-in is
// off.
func (a *Authenticator) provider() idp.Provider { return a.idp.Load().p }

// SetProvider replaces the identity provider (a reload changed the IDP_*
// settings): sign-ins started from now on, and every refresh, use p. A
// sign-in already at the old provider fails at its callback, and the
// person signs in again. nil turns sign-in off.
func (a *Authenticator) SetProvider(p idp.Provider) { a.idp.Store(&providerRef{p}) }

// AuthenticateHandler serves the authenticate host.
func (a *Authenticator) AuthenticateHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.pomerium/sign_in", a.signIn)
	mux.HandleFunc("GET /oauth2/callback", a.callback)
	mux.HandleFunc("GET /.pomerium/sign_out", a.confirmSignOutAuthenticate) // signout.go
	mux.HandleFunc("POST /.pomerium/sign_out", a.signOutAuthenticate)
	mux.HandleFunc(pathToken, a.exchangeToken) // renewal.go; it answers other methods itself
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		respond.Error(w, r, respond.Problem{Code: http.StatusNotFound, Title: "Not found",
			Text: "This is the Portcullis sign-in service. Open the address of your cluster instead."})
	})
	return mux
}

// signIn starts a sign-in, or hands an existing one to the route.
func (a *Authenticator) signIn(w http.ResponseWriter, r *http.Request) {
	if !a.SignInConfigured() {
		respond.Error(w, r, respond.Problem{Code: http.StatusNotImplemented, Title: "Sign-in is not configured",
			Text: "This Portcullis has no identity provider: an administrator must set IDP_PROVIDER."})
		return
	}
	if !a.allowSignIn(w, r) {
		return
	}
	q := r.URL.Query()
	var st loginState
	switch {
	case q.Get("pomerium_login") != "":
		raw, err := a.opts.Sealer.Open(purposeLogin, q.Get("pomerium_login"), a.now())
		var pl programmaticLogin
		if err != nil || json.Unmarshal(raw, &pl) != nil {
			respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Sign-in link expired",
				Text: "This sign-in link is invalid or has expired. Run the command again to get a new one."})
			return
		}
		if _, err := loopbackRedirect(pl.Redirect); err != nil {
			respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Bad sign-in link", Text: err.Error()})
			return
		}
		st = loginState{Redirect: pl.Redirect, Audience: pl.Audience, Programmatic: true, Renewable: pl.Renewable}
	default:
		target, audience, err := a.routeRedirect(q.Get("pomerium_redirect_uri"))
		if err != nil {
			respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Bad sign-in link", Text: err.Error()})
			return
		}
		st = loginState{Redirect: target, Audience: audience}
		// The route's nonce, if the sign-in started at the route (not
		// required: a sign-in opened here directly is bound when it gets
		// to the route, see routeCallback).
		if p := q.Get("pomerium_signin"); p != "" {
			nonce, err := a.opts.Sealer.Open(purposeBindParam+" "+audience, p, a.now())
			if err != nil {
				respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Sign-in link expired",
					Text: "This sign-in link is invalid or has expired. Open the address of your cluster again."})
				return
			}
			st.Bind = string(nonce)
		}
	}
	// Already signed in on the authenticate host: no provider round trip.
	switch sess, err := a.sessionFromCookie(r, a.opts.AuthenticateURL.Host); {
	case err == nil:
		a.handOff(w, r, sess, st)
		return
	case errors.Is(err, ErrStoreUnavailable):
		// A sign-in could not be stored either: say so now rather than
		// after a round trip to the provider.
		a.storeUnavailable(w, r, "reading the sign-in service's session", err)
		return
	}
	st.CSRF, st.Nonce, st.Verifier = rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	raw, _ := json.Marshal(st)
	state := a.opts.Sealer.Seal(purposeState, raw, a.now().Add(stateTTL))
	authURL, err := a.provider().AuthCodeURL(r.Context(), state, st.Nonce, st.Verifier)
	if err != nil {
		a.log.Warn("starting sign-in", "error", err)
		respond.Error(w, r, respond.Problem{Code: http.StatusBadGateway, Title: "Identity provider unavailable",
			Text: "Portcullis could not reach your identity provider. Try again in a moment."})
		return
	}
	// The CSRF cookie ties the callback to this browser: a state value
	// lifted from one browser does not complete a sign-in in another.
	a.setCookie(w, a.csrfCookie(), a.opts.Sealer.Seal(purposeCSRF, []byte(st.CSRF), a.now().Add(stateTTL)), a.now().Add(stateTTL))
	http.Redirect(w, r, authURL, http.StatusFound)
}

// routeRedirect checks a browser flow's return address: an https (or
// http, for INSECURE_SERVER) URL on a configured route host.
func (a *Authenticator) routeRedirect(raw string) (target, audience string, err error) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return "", "", errors.New("the sign-in link has no valid pomerium_redirect_uri: open the address of your cluster to sign in")
	}
	// The hand-off carries a token for the route in this URL's query, and
	// the router matches a route's host whatever the scheme: over plain
	// http anyone on the path could read the token. Plain http is only for
	// a development setup whose sign-in service is itself plain http.
	if u.Scheme == "http" && !a.plainHTTP() {
		return "", "", fmt.Errorf("%q is plain http: Portcullis only sends your sign-in back over https", u.Host)
	}
	audience, ok := a.opts.RouteAudience(u.Host)
	if !ok {
		return "", "", fmt.Errorf("%q is not an address Portcullis serves, so it will not send you there", u.Host)
	}
	return u.String(), audience, nil
}

// callback completes a sign-in: it checks state and CSRF cookie, exchanges
// the code, creates the session and hands it off.
func (a *Authenticator) callback(w http.ResponseWriter, r *http.Request) {
	if !a.SignInConfigured() {
		respond.Error(w, r, respond.Problem{Code: http.StatusNotImplemented, Title: "Sign-in is not configured",
			Text: "This Portcullis has no identity provider: an administrator must set IDP_PROVIDER."})
		return
	}
	if !a.allowSignIn(w, r) {
		return
	}
	q := r.URL.Query()
	raw, err := a.opts.Sealer.Open(purposeState, q.Get("state"), a.now())
	var st loginState
	if err != nil || json.Unmarshal(raw, &st) != nil {
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Sign-in expired",
			Text: "This sign-in is invalid or took too long. Start again from the address of your cluster."})
		return
	}
	c, err := r.Cookie(a.csrfCookie())
	var csrf []byte
	if err == nil {
		csrf, err = a.opts.Sealer.Open(purposeCSRF, c.Value, a.now())
	}
	if err != nil || string(csrf) != st.CSRF {
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Sign-in not started here",
			Text: "This sign-in was not started in this browser. Start again from the address of your cluster."})
		return
	}
	// Redeemed in the store, so that a callback replayed against another
	// replica is refused too; for stateTTL, after which the sealed state
	// has expired and is refused by itself. Refusing the newest sign-in
	// past PendingSignIns keeps the store bounded and replay protection
	// whole.
	switch err := a.opts.Store.RedeemState(r.Context(), st.CSRF, stateTTL, a.opts.PendingSignIns); {
	case errors.Is(err, session.ErrTooManyPending):
		a.opts.Limited(LimitPendingSignIns, limit.Client(r))
		a.log.Warn("sign-in refused: too many sign-ins in the last ten minutes; raise LIMIT_PENDING_SIGN_INS if this is not an attack",
			"limit", a.opts.PendingSignIns)
		a.opts.Record(r, Activity{Action: ActivitySignInRefused, Reason: "too many sign-ins in progress (LIMIT_PENDING_SIGN_INS)"})
		w.Header().Set("Retry-After", "60")
		respond.Error(w, r, respond.Problem{Code: http.StatusServiceUnavailable, Title: "Too many sign-ins",
			Text: "Portcullis is handling too many sign-ins right now. Try again in a minute from the address of your cluster."})
		return
	case errors.Is(err, session.ErrStateUsed):
		a.opts.Record(r, Activity{Action: ActivitySignInRefused, Reason: "the sign-in's answer was used already (a replay)"})
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Sign-in already used",
			Text: "This sign-in was already completed. Start again from the address of your cluster."})
		return
	case err != nil:
		a.storeUnavailable(w, r, "redeeming the sign-in state", err)
		return
	}
	a.clearCookie(w, a.csrfCookie())
	if e := q.Get("error"); e != "" {
		a.opts.Record(r, Activity{Action: ActivitySignInRefused, Reason: "the identity provider refused: " + e})
		respond.Error(w, r, respond.Problem{Code: http.StatusForbidden, Title: "Sign-in refused",
			Text: "Your identity provider refused the sign-in: " + e + " " + q.Get("error_description")})
		return
	}
	id, toks, err := a.provider().Exchange(r.Context(), q.Get("code"), st.Verifier, st.Nonce)
	if err != nil {
		a.log.Warn("sign-in callback failed", "error", err)
		a.opts.Record(r, Activity{Action: ActivitySignInRefused, Reason: err.Error()})
		if errors.Is(err, idp.ErrProviderUnavailable) {
			respond.Error(w, r, respond.Problem{Code: http.StatusBadGateway, Title: "Identity provider unavailable",
				Text: "Portcullis could not reach your identity provider to finish signing you in. Try again in a moment."})
			return
		}
		if errors.Is(err, idp.ErrUnverifiedEmail) {
			respond.Error(w, r, respond.Problem{Code: http.StatusForbidden, Title: "Email address not verified",
				Text: "Your identity provider says your email address is not verified, and Portcullis only signs people in by an address they have proven they own. Verify it with your identity provider, then sign in again."})
			return
		}
		respond.Error(w, r, respond.Problem{Code: http.StatusUnauthorized, Title: "Sign-in failed",
			Text: "Your identity provider's answer could not be verified. Start again from the address of your cluster."})
		return
	}
	now := a.now()
	sess := &session.Session{
		ID: session.NewSessionID(), Subject: id.Subject, Email: id.Email, Name: id.Name, Groups: id.Groups, Claims: id.Claims,
		CreatedAt: now, ExpiresAt: now.Add(a.opts.CookieExpire),
		IDPRefreshToken: toks.RefreshToken, IDPIDToken: toks.IDToken, IDPExpiry: toks.Expiry,
	}
	if err := a.opts.Store.Put(r.Context(), sess); err != nil {
		a.storeUnavailable(w, r, "storing the new session", err)
		return
	}
	a.log.Info("signed in", "email", sess.Email, "session", sess.ID[:8])
	a.opts.Record(r, Activity{Action: ActivitySignIn, Email: sess.Email, Subject: sess.Subject, SessionID: sess.ID})
	if !a.renewable(sess) {
		a.log.Info("the identity provider gave no refresh token (or no expiry): this session is not re-checked with it and lasts until COOKIE_EXPIRE",
			"session", sess.ID[:8], "expires", sess.ExpiresAt)
	}
	a.setCookie(w, a.opts.CookieName, a.opts.Sealer.Seal(a.sessionPurpose(a.opts.AuthenticateURL.Host), []byte(sess.ID), sess.ExpiresAt), sess.ExpiresAt)
	a.handOff(w, r, sess, st)
}

// RefuseStoreUnavailable answers a request whose session the store could
// not look up (ErrStoreUnavailable): 503 with Retry-After. Not a 401: the
// session may be live, and kubectl must not send the person to sign in
// again, which could not work until the store is back either.
func RefuseStoreUnavailable(w http.ResponseWriter, r *http.Request) {
	respond.RetryAfter(w.Header(), 5*time.Second)
	respond.Error(w, r, respond.Problem{Code: http.StatusServiceUnavailable,
		Message: "portcullis: " + ErrStoreUnavailable.Error(), Title: "Temporarily unavailable",
		Text: "Portcullis cannot reach its session database right now. Try again in a moment."})
}

// storeUnavailable refuses a sign-in the session store could not record
// (a shared store's database is down): 503, naming the cause, and the
// full error in the log. The person has lost nothing but this attempt.
func (a *Authenticator) storeUnavailable(w http.ResponseWriter, r *http.Request, doing string, err error) {
	a.log.Error("sign-in refused: the session store failed", "doing", doing, "error", err)
	respond.RetryAfter(w.Header(), 5*time.Second)
	respond.Error(w, r, respond.Problem{Code: http.StatusServiceUnavailable, Title: "Sign-in unavailable",
		Text: "Portcullis cannot reach its session database, so it cannot complete sign-ins right now. Sessions already signed in keep working. Try again in a moment."})
}

// allowSignIn takes one sign-in from the request's client, or refuses the
// request with 429.
func (a *Authenticator) allowSignIn(w http.ResponseWriter, r *http.Request) bool {
	client := limit.Client(r)
	ok, wait := a.opts.SignInRate.Allow(client, a.now())
	if !ok {
		a.opts.Limited(LimitSignInRate, client)
		respond.RetryAfter(w.Header(), wait)
		respond.Error(w, r, respond.Problem{Code: http.StatusTooManyRequests, Title: "Too many sign-ins",
			Text: fmt.Sprintf("Too many sign-ins from your address. Try again in %s.", respond.InWords(wait))})
	}
	return ok
}

// handOff gives a session to the route it was for: a token to a loopback
// listener for portcullis-cli, or the route host's callback for a browser.
func (a *Authenticator) handOff(w http.ResponseWriter, r *http.Request, sess *session.Session, st loginState) {
	var (
		tok  string
		pair renewablePair
		err  error
	)
	if st.Programmatic && st.Renewable {
		pair, err = a.issueRenewable(sess, st.Audience, renewal{})
		tok = pair.Token
	} else {
		tok, err = a.issue(sess, st.Audience)
	}
	if err != nil {
		a.log.Error("issuing token", "error", err)
		respond.Error(w, r, respond.Problem{Code: http.StatusInternalServerError, Title: "Sign-in failed",
			Text: "Portcullis could not issue your credentials."})
		return
	}
	if st.Programmatic {
		u, err := loopbackRedirect(st.Redirect)
		if err != nil {
			respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Bad sign-in link", Text: err.Error()})
			return
		}
		q := u.Query()
		q.Set("pomerium_jwt", tok)
		if pair.Renewal != "" {
			// In a URL, so in the browser's history: portcullis-cli
			// spends it at once (login.Login), and whoever finds it there
			// later ends the session by using it (renewal.go).
			q.Set("portcullis_renewal", pair.Renewal)
		}
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
		return
	}
	// The return address was checked when the sign-in started; check it
	// again against the routes of now (a reload may have removed it), so a
	// token is only ever sent to a host that serves its audience.
	back, audience, err := a.routeRedirect(st.Redirect)
	if err != nil || audience != st.Audience {
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Bad sign-in link",
			Text: "The address this sign-in was for is no longer served here. Open the address of your cluster again."})
		return
	}
	target, _ := url.Parse(back)
	cb := &url.URL{Scheme: target.Scheme, Host: target.Host, Path: "/.pomerium/callback/"}
	q := url.Values{"pomerium_jwt": {tok}, "pomerium_redirect_uri": {st.Redirect}}
	if st.Bind != "" {
		q.Set("pomerium_bind", a.opts.Sealer.Seal(purposeHandOff+" "+st.Audience, handOffBinding(st.Bind, tok), a.now().Add(handOffTTL)))
	}
	cb.RawQuery = q.Encode()
	http.Redirect(w, r, cb.String(), http.StatusFound)
}

// issue returns a token of sess for the route audience: what every
// sign-in delivers, by whichever way (hand-off, loopback, device).
func (a *Authenticator) issue(sess *session.Session, audience string) (string, error) {
	return a.opts.Keys.Issue(a.tokenClaims(sess, audience, sess.ExpiresAt))
}

// tokenClaims are the claims of every token of sess for the route
// audience, expiring at exp.
func (a *Authenticator) tokenClaims(sess *session.Session, audience string, exp time.Time) session.Claims {
	c := session.Claims{
		Subject: sess.Subject, Email: sess.Email, Name: sess.Name, Groups: sess.Groups,
		SessionID: sess.ID, Audience: audience, Expiry: exp,
	}
	if a.opts.KubernetesIdentity != nil {
		if user, groups, ok := a.opts.KubernetesIdentity(audience, sess); ok {
			c.KubernetesUser, c.KubernetesGroups = user, groups
			c.KubernetesSession = a.opts.Sealer.Seal(purposeReviewedSession, []byte(sess.ID), sess.ExpiresAt)
		}
	}
	return c
}

// handOffBinding ties a route's sign-in nonce to the token handed off for
// it: the token's hash, so that the seal cannot be paired with another
// token, and so that the token itself is not sealed a second time.
func handOffBinding(nonce, token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return []byte(nonce + "." + base64.RawURLEncoding.EncodeToString(sum[:]))
}

// sessionIDFromCookie returns the session id sealed in the cookie for
// host, whether or not that session is still live.
func (a *Authenticator) sessionIDFromCookie(r *http.Request, host string) (string, bool) {
	c, err := r.Cookie(a.opts.CookieName)
	if err != nil {
		return "", false
	}
	sid, err := a.opts.Sealer.Open(a.sessionPurpose(host), c.Value, a.now())
	if err != nil {
		return "", false
	}
	return string(sid), true
}

// sessionFromCookie returns the live session named by the cookie for host,
// refreshed with the provider if it was due: ErrSessionEnded if there is
// none, or ErrStoreUnavailable.
func (a *Authenticator) sessionFromCookie(r *http.Request, host string) (*session.Session, error) {
	sid, ok := a.sessionIDFromCookie(r, host)
	if !ok {
		return nil, ErrSessionEnded
	}
	return a.liveSession(r.Context(), sid)
}

// Cookies are Secure unless the service itself is plain http (a
// development setup), HttpOnly, and SameSite=Lax: the provider's redirect
// back is a top-level GET, which Lax lets through, while cross-site
// subrequests carry no session.
func (a *Authenticator) setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	a.setCookieAt(w, name, value, "/", expires)
}

// setCookieAt sets a cookie sent only to path and below.
func (a *Authenticator) setCookieAt(w http.ResponseWriter, name, value, path string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: path, Expires: expires,
		Secure: a.secureCookies(), HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func (a *Authenticator) clearCookie(w http.ResponseWriter, name string) {
	a.clearCookieAt(w, name, "/")
}

// clearCookieAt removes the cookie name set for path.
func (a *Authenticator) clearCookieAt(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1,
		Secure: a.secureCookies(), HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func (a *Authenticator) secureCookies() bool { return !a.plainHTTP() }

// plainHTTP reports a development setup whose sign-in service is plain
// http: only then do cookies go without Secure and sign-ins return to
// plain http addresses.
func (a *Authenticator) plainHTTP() bool {
	return a.opts.AuthenticateURL != nil && a.opts.AuthenticateURL.Scheme == "http"
}

// ErrNoCredentials means the request carries no token and no session cookie.
var ErrNoCredentials = errors.New("the request has no Portcullis token or session cookie")

// ErrCookieNotAccepted means the request carries only the session cookie
// where a token is required: the Kubernetes API of a Kubernetes route.
var ErrCookieNotAccepted = errors.New("a browser's session cookie does not open the Kubernetes API: " +
	"use kubectl with a Portcullis credential (portcullis-cli k8s setup)")

// ErrSessionEnded means the token or cookie names a session that expired or
// was signed out.
var ErrSessionEnded = errors.New("your session ended (expired or signed out)")

// ErrStoreUnavailable means the session store could not say whether the
// request's session is live (a shared store's database is down, past the
// grace its cache covers): the request is refused, but the session is not
// ended.
var ErrStoreUnavailable = errors.New("cannot reach the session database right now; try again in a moment")

// Credential is what proved who a request is from.
type Credential uint8

const (
	// Token is a Portcullis token in a request header: a program sent it
	// on purpose.
	Token Credential = 1 << iota
	// Cookie is the session cookie: a browser sends it by itself with
	// every request to the host, whichever page made the request, so it
	// proves who the browser belongs to, not what they meant to do.
	Cookie
)

// Identify returns who a route request is from, and by which of the
// credentials in accept: a Portcullis token for the route (whose session,
// if it names one, must still be live), or the route host's session
// cookie. A session due for a refresh with the identity provider is
// refreshed first (refresh.go). A request with a cookie only, where
// cookies are not accepted, gets ErrCookieNotAccepted.
func (a *Authenticator) Identify(r *http.Request, audience string, accept Credential) (*identity.Identity, Credential, error) {
	token, ok, err := session.TokenFromRequest(r.Header)
	if err != nil {
		return nil, 0, err
	}
	if ok && accept&Token != 0 {
		c, err := a.opts.Verify(token, audience, a.now())
		if err != nil {
			return nil, 0, err
		}
		if c.SessionID != "" {
			sess, err := a.viewLiveSession(r.Context(), c.SessionID)
			if errors.Is(err, ErrStoreUnavailable) {
				return nil, 0, err
			}
			if err != nil || sess.Subject != c.Subject {
				return nil, 0, ErrSessionEnded
			}
			// The session holds the person as the provider last described
			// them: a group removed there since the token was issued no
			// longer counts, as it would not for the session's cookie.
			return &identity.Identity{User: c.Subject, Email: sess.Email, Name: sess.Name, Groups: sess.Groups, Claims: sess.Claims, SessionID: c.SessionID, Expiry: c.Expiry}, Token, nil
		}
		return &identity.Identity{User: c.Subject, Email: c.Email, Name: c.Name, Groups: c.Groups, SessionID: c.SessionID, Expiry: c.Expiry}, Token, nil
	}
	if _, err := r.Cookie(a.opts.CookieName); err != nil {
		return nil, 0, ErrNoCredentials
	}
	if accept&Cookie == 0 {
		return nil, 0, ErrCookieNotAccepted
	}
	sess, err := a.sessionFromCookie(r, audience)
	if err != nil {
		return nil, 0, err
	}
	return SessionIdentity(sess), Cookie, nil
}

// SessionIdentity is the person as sess describes them now.
func SessionIdentity(sess *session.Session) *identity.Identity {
	return &identity.Identity{User: sess.Subject, Email: sess.Email, Name: sess.Name, Groups: sess.Groups, Claims: sess.Claims, SessionID: sess.ID, Expiry: sess.ExpiresAt}
}

// RedirectToSignIn sends a browser on a route host to sign in and come
// back to r's URL, bound to this browser (see routeBinding).
func (a *Authenticator) RedirectToSignIn(w http.ResponseWriter, r *http.Request) {
	back := &url.URL{Scheme: a.routeScheme(r), Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	a.redirectToSignIn(w, r, back.String())
}

// routeScheme is the scheme a browser reached r's host with: https unless
// the whole setup is plain http. Behind a load balancer that terminates
// TLS (INSECURE_SERVER) r.TLS is nil though the browser is on https, and
// sign-in never returns to plain http otherwise (see routeRedirect).
func (a *Authenticator) routeScheme(r *http.Request) string {
	if r.TLS == nil && a.plainHTTP() {
		return "http"
	}
	return "https"
}

// redirectToSignIn sends a browser on a route host to sign in and come
// back to back, an address on that host.
//
// routeBinding: the hand-off back to the route carries a token, and a
// token alone must not make a browser's session. Otherwise anyone could
// send a link to the route's callback with their own token and have the
// victim's browser signed in as them (login CSRF, session fixation), to
// see what the victim then types or uploads. So the route host gives the
// browser a random nonce in a cookie of its own (HttpOnly, for the
// callback path only) and sends the nonce, sealed, with the sign-in; the
// sign-in service seals it together with the token's hash into the
// hand-off; the callback accepts the token only from the browser whose
// cookie holds that nonce.
func (a *Authenticator) redirectToSignIn(w http.ResponseWriter, r *http.Request, back string) {
	if !a.SignInConfigured() {
		respond.Error(w, r, respond.Problem{Code: http.StatusUnauthorized, Title: "Sign-in is not configured",
			Text: "This Portcullis has no identity provider: an administrator must set IDP_PROVIDER."})
		return
	}
	q := url.Values{"pomerium_redirect_uri": {back}}
	if audience, ok := a.opts.RouteAudience(r.Host); ok {
		nonce := rand.Text()
		exp := a.now().Add(stateTTL)
		a.setCookieAt(w, a.bindCookie(), a.opts.Sealer.Seal(purposeBindCookie+" "+audience, []byte(nonce), exp), callbackPath, exp)
		q.Set("pomerium_signin", a.opts.Sealer.Seal(purposeBindParam+" "+audience, []byte(nonce), exp))
	}
	http.Redirect(w, r, a.signInURL(q), http.StatusFound)
}

func (a *Authenticator) signInURL(q url.Values) string {
	u := *a.opts.AuthenticateURL
	u.Path = strings.TrimSuffix(u.Path, "/") + "/.pomerium/sign_in"
	u.RawQuery = q.Encode()
	return u.String()
}
