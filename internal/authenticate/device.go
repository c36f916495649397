package authenticate

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis-proxy/portcullis/internal/limit"
	"github.com/portcullis-proxy/portcullis/internal/respond"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// Device sign-in is the OAuth 2.0 Device Authorization Grant (RFC 8628),
// served by Portcullis itself so that it works whatever the identity
// provider: a client without a browser (portcullis-cli over SSH) asks a
// route for a device code and a user code; the person opens the route's
// verification page on any device, signs in there the usual way (the
// route's browser sign-in, nothing new), sees which client asked and
// approves or denies it; the client, polling with its device code, gets
// the route's token for the approving person's session, as the loopback
// login would have delivered it.
//
// Everything is on the route host, so that the token's audience is the
// route the client asked, and the verification page is one of the
// route's own pages, which its session cookie opens (as who-am-I):
//
//	POST /.pomerium/api/v1/device/authorize  the client asks (RFC 8628 §3.1)
//	POST /.pomerium/api/v1/device/token      the client polls (§3.4)
//	GET  /.pomerium/device[?user_code=…]     the person enters or follows the code (§3.3)
//	POST /.pomerium/device                   the person approves or denies
//
// What an attacker can do with it, and what stops them:
//
//   - Phishing with a user code: an attacker starts a device sign-in and
//     sends a person the link, hoping they approve and so sign the
//     attacker's client in as them. The confirmation page says, before
//     anything happens, which client asked (its address, its user agent,
//     when) and for which cluster, says to approve only a request the
//     person just made themselves, and needs an explicit Approve.
//   - Approving by cross-site request (CSRF): the decision is a POST that
//     must come from the route's own origin (Sec-Fetch-Site, else Origin)
//     and carry a token sealed for this session and this user code, which
//     only the confirmation page shows; the page may not be framed.
//   - Redeeming someone else's approval: only the device code redeems, a
//     256-bit secret only the requesting client holds; a user code is no
//     device code, and a device code works on its own route only.
//   - Guessing user codes: they are typed on a page behind sign-in, and
//     each code looked up counts against the client address's sign-in
//     rate (LIMIT_SIGN_INS_PER_MINUTE).
//   - Flooding: device authorizations count against the login rate
//     (LIMIT_LOGINS_PER_MINUTE) per client address, pending ones against
//     LIMIT_PENDING_SIGN_INS in all, and polls against
//     LIMIT_DEVICE_POLLS_PER_MINUTE per client address besides each
//     code's own interval.
//   - Replay: a grant is answered once; every later poll is refused, and
//     it expires after DEVICE_CODE_LIFETIME.

// DefaultDevicePollsPerMinute bounds the token endpoint's polls per
// client address (LIMIT_DEVICE_POLLS_PER_MINUTE): twelve clients behind
// one address polling every five seconds. A poll of an unknown code is a
// database query on a shared store, so even a flood of made-up codes
// must be bounded.
const DefaultDevicePollsPerMinute = 144

// deviceGrantType is the grant_type of a device code's poll (RFC 8628
// §3.4).
const deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// The device sign-in's paths on a route host.
const (
	pathDeviceAuthorize = "/.pomerium/api/v1/device/authorize"
	pathDeviceToken     = "/.pomerium/api/v1/device/token"
	pathDevice          = "/.pomerium/device"
)

// purposeDeviceCSRF seals the confirmation form's token: the session that
// saw the page and the user code it was for.
const purposeDeviceCSRF = "portcullis device confirmation"

// LimitDevicePolls names the device token endpoint's rate, as
// Options.Limited reports it.
const LimitDevicePolls = "device_polls_per_minute"

// deviceAuthorization is the answer to a device authorization request
// (RFC 8628 §3.2).
type deviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// deviceAuthorize answers a client that starts a device sign-in for the
// route audience.
func (a *Authenticator) deviceAuthorize(w http.ResponseWriter, r *http.Request, audience string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "start a device sign-in with POST "+pathDeviceAuthorize)
		return
	}
	if !a.SignInConfigured() {
		oauthError(w, http.StatusNotImplemented, "invalid_request", "sign-in is not configured on this Portcullis: an administrator must set IDP_PROVIDER")
		return
	}
	client := limit.Client(r)
	if ok, wait := a.opts.LoginRate.Allow(client, a.now()); !ok {
		a.opts.Limited(LimitLoginRate, client)
		respond.RetryAfter(w.Header(), wait)
		oauthError(w, http.StatusTooManyRequests, "slow_down", fmt.Sprintf("too many sign-in requests from your address: try again in %s", respond.InWords(wait)))
		return
	}
	// client_id and scope (RFC 8628 §3.1) choose nothing: the route is
	// the client, and the token is the route's.
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the request's form does not parse")
		return
	}
	now := a.now()
	g := &session.DeviceGrant{
		DeviceCode: session.NewDeviceCode(), UserCode: session.NewUserCode(), Audience: audience,
		Client: clientAddress(r), UserAgent: userAgent(r),
		CreatedAt: now, ExpiresAt: now.Add(a.opts.DeviceCodeLifetime), Interval: a.opts.DevicePollInterval,
	}
	var err error
	// 20^8 codes: a second collision in a row means a store full of
	// codes, which the bound on pending grants prevents.
	for range 3 {
		if err = a.opts.Store.PutDeviceGrant(r.Context(), g, a.opts.PendingSignIns); !errors.Is(err, session.ErrUserCodeTaken) {
			break
		}
		g.UserCode = session.NewUserCode()
	}
	switch {
	case errors.Is(err, session.ErrTooManyPending), errors.Is(err, session.ErrUserCodeTaken):
		a.opts.Limited(LimitPendingSignIns, client)
		a.log.Warn("device sign-in refused: too many pending; raise LIMIT_PENDING_SIGN_INS if this is not an attack", "limit", a.opts.PendingSignIns)
		w.Header().Set("Retry-After", "60")
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "Portcullis is handling too many sign-ins right now: try again in a minute")
		return
	case err != nil:
		a.log.Error("device sign-in refused: the session store failed", "error", err)
		respond.RetryAfter(w.Header(), 5*time.Second)
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", ErrStoreUnavailable.Error())
		return
	}
	verify := url.URL{Scheme: a.routeScheme(r), Host: r.Host, Path: pathDevice}
	complete := verify
	complete.RawQuery = url.Values{"user_code": {session.FormatUserCode(g.UserCode)}}.Encode()
	a.log.Info("device sign-in requested", "route", audience, "client", g.Client)
	writeJSON(w, http.StatusOK, deviceAuthorization{
		DeviceCode: g.DeviceCode, UserCode: session.FormatUserCode(g.UserCode),
		VerificationURI: verify.String(), VerificationURIComplete: complete.String(),
		ExpiresIn: int(a.opts.DeviceCodeLifetime / time.Second), Interval: int(a.opts.DevicePollInterval / time.Second),
	})
}

// deviceToken answers a client's poll with its device code (RFC 8628
// §3.4, §3.5): the route's token once a person approved, else an OAuth
// error that says why not yet or not at all.
func (a *Authenticator) deviceToken(w http.ResponseWriter, r *http.Request, audience string) {
	if !a.tokenRequest(w, r, "poll with POST "+pathDeviceToken) {
		return
	}
	code, errCode, why := devicePoll(r)
	if errCode != "" {
		oauthError(w, http.StatusBadRequest, errCode, why)
		return
	}
	g, res, err := a.opts.Store.PollDeviceGrant(r.Context(), code, audience)
	switch {
	case errors.Is(err, session.ErrNoDeviceGrant):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "no such device sign-in on this route: start again")
		return
	case err != nil:
		a.log.Error("device sign-in poll failed: the session store failed", "error", err)
		respond.RetryAfter(w.Header(), 5*time.Second)
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", ErrStoreUnavailable.Error())
		return
	}
	switch res {
	case session.PollPending:
		oauthError(w, http.StatusBadRequest, "authorization_pending", "waiting for a person to approve the sign-in")
	case session.PollSlowDown:
		oauthError(w, http.StatusBadRequest, "slow_down", fmt.Sprintf("polled too soon: wait %s between polls", g.Interval))
	case session.PollDenied:
		a.log.Info("device sign-in denied", "route", audience, "client", g.Client, "by", g.Email)
		oauthError(w, http.StatusBadRequest, "access_denied", "the sign-in was denied")
	case session.PollExpired:
		oauthError(w, http.StatusBadRequest, "expired_token", "the sign-in expired before it was approved: start again")
	case session.PollApproved:
		a.redeemDevice(w, r, g)
	default: // session.PollAnswered
		oauthError(w, http.StatusBadRequest, "invalid_grant", "this device code was used already: start again")
	}
}

// tokenRequest refuses a request to a token endpoint (device polls,
// renewals) that is not a POST (usage says how to call it), or that comes
// from a client past its rate of such requests, and reports whether to go
// on. Both endpoints share one rate: each is a client's loop.
func (a *Authenticator) tokenRequest(w http.ResponseWriter, r *http.Request, usage string) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", usage)
		return false
	}
	client := limit.Client(r)
	if ok, wait := a.devicePolls.Allow(client, a.now()); !ok {
		a.opts.Limited(LimitDevicePolls, client)
		respond.RetryAfter(w.Header(), wait)
		oauthError(w, http.StatusTooManyRequests, "slow_down", "too many token requests from your address")
		return false
	}
	return true
}

// devicePoll reads a poll's form: the device code, or the OAuth error
// code and description to answer with.
func devicePoll(r *http.Request) (deviceCode, errCode, why string) {
	if err := r.ParseForm(); err != nil {
		return "", "invalid_request", "the request's form does not parse"
	}
	// Only the body counts (RFC 6749 §3.2: parameters in the body): a
	// device code in the URL would end up in logs.
	switch gt := r.PostForm.Get("grant_type"); {
	case gt == "":
		return "", "invalid_request", "missing grant_type"
	case gt != deviceGrantType:
		return "", "unsupported_grant_type", "this endpoint takes grant_type " + deviceGrantType
	}
	codes := r.PostForm["device_code"]
	if len(codes) != 1 || codes[0] == "" {
		return "", "invalid_request", "want one device_code"
	}
	return codes[0], "", ""
}

// redeemDevice gives the client of an approved grant the route's token
// for the approving session, if that session is still live.
func (a *Authenticator) redeemDevice(w http.ResponseWriter, r *http.Request, g *session.DeviceGrant) {
	sess, err := a.liveSession(r.Context(), g.SessionID)
	switch {
	case errors.Is(err, ErrStoreUnavailable):
		// The approval is spent; the person approves a new request.
		respond.RetryAfter(w.Header(), 5*time.Second)
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", ErrStoreUnavailable.Error())
		return
	case err != nil:
		oauthError(w, http.StatusBadRequest, "access_denied", "the session that approved the sign-in has ended")
		return
	}
	// A device's client renews as portcullis-cli does (renewal.go).
	pair, err := a.issueRenewable(sess, g.Audience, renewal{})
	if err != nil {
		a.serverError(w, err)
		return
	}
	a.log.Info("device sign-in approved", "route", g.Audience, "client", g.Client, "email", sess.Email, "session", sess.ID[:min(8, len(sess.ID))])
	// r is the device's request: the event names where the token went.
	a.opts.Record(r, Activity{Action: ActivityDeviceSignIn, Email: sess.Email, Subject: sess.Subject, SessionID: sess.ID, Route: g.Audience})
	a.writeRenewable(w, pair, "")
}

// oauthError answers with an OAuth error (RFC 6749 §5.2, RFC 8628 §3.5).
func oauthError(w http.ResponseWriter, code int, errCode, description string) {
	writeJSON(w, code, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{errCode, description})
}

// writeJSON answers with v as JSON that no cache keeps (RFC 6749 §5.1):
// it may hold a token or a device code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// clientAddress is the address the confirmation page shows: the
// connection's own, all of it (limit.Client keeps only an IPv6 address's
// /64, for counting).
func clientAddress(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return "unknown"
	}
	return ap.Addr().Unmap().String()
}

// userAgent is the client's User-Agent as the confirmation page shows it:
// at most session.MaxUserAgent bytes of valid UTF-8, control characters
// dropped. html/template escapes it; this keeps it short and one line.
func userAgent(r *http.Request) string {
	ua := strings.ToValidUTF8(r.Header.Get("User-Agent"), "?")
	ua = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return -1
		}
		return c
	}, ua)
	if len(ua) > session.MaxUserAgent {
		ua = ua[:session.MaxUserAgent]
		for !utf8.ValidString(ua) {
			ua = ua[:len(ua)-1]
		}
	}
	if ua == "" {
		return "(none)"
	}
	return ua
}

// devicePage serves the verification page: a form to enter the code,
// or the confirmation of the request the code names, to a signed-in
// person; a person not signed in is sent to sign in and comes back here
// with the code.
func (a *Authenticator) devicePage(w http.ResponseWriter, r *http.Request, audience string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		a.deviceDecision(w, r, audience)
		return
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		respond.Error(w, r, respond.Problem{Code: http.StatusMethodNotAllowed, Message: "portcullis: open " + pathDevice + " in a browser"})
		return
	}
	id, _, err := a.Identify(r, audience, Cookie)
	switch {
	case errors.Is(err, ErrStoreUnavailable):
		RefuseStoreUnavailable(w, r)
		return
	case err != nil:
		if respond.FromBrowser(r) {
			a.RedirectToSignIn(w, r)
			return
		}
		respond.Error(w, r, respond.Unauthenticated("open "+pathDevice+" in a browser to approve a device sign-in"))
		return
	}
	page := devicePageData{Route: a.routeScheme(r) + "://" + r.Host, Email: id.Email}
	typed := r.URL.Query().Get("user_code")
	if typed == "" {
		respond.HTML(w, http.StatusOK, deviceTemplate, page)
		return
	}
	if !a.allowSignIn(w, r) {
		return
	}
	page.Typed = typed
	code, ok := session.NormalizeUserCode(typed)
	if !ok {
		page.Problem = "That is not a code Portcullis gives out: a code is eight letters, such as BCDF-GHJK. Check it and try again."
		respond.HTML(w, http.StatusBadRequest, deviceTemplate, page)
		return
	}
	g, err := a.opts.Store.DeviceGrantByUserCode(r.Context(), code)
	switch {
	case errors.Is(err, session.ErrNoDeviceGrant) || err == nil && g.Audience != audience:
		// A code for another route is not found here either: this page
		// approves sign-ins to this route only.
		page.Problem = "No sign-in waits for that code here: it may be mistyped, expired (codes last ten minutes), already approved or denied, or for another cluster. Start the sign-in again to get a new code."
		respond.HTML(w, http.StatusNotFound, deviceTemplate, page)
		return
	case err != nil:
		a.storeUnavailable(w, r, "looking up a device sign-in", err)
		return
	}
	page.Code = session.FormatUserCode(code)
	page.Grant = &deviceGrantView{
		Client: g.Client, UserAgent: g.UserAgent,
		Requested: g.CreatedAt.UTC().Format("2006-01-02 15:04:05 MST"),
		Ago:       respond.InWords(max(a.now().Sub(g.CreatedAt), time.Second).Round(time.Second)),
		Expires:   respond.InWords(g.ExpiresAt.Sub(a.now()).Round(time.Second)),
	}
	page.CSRF = a.opts.Sealer.Seal(purposeDeviceCSRF+" "+audience, deviceCSRF(id.SessionID, code), g.ExpiresAt)
	respond.HTML(w, http.StatusOK, deviceTemplate, page)
}

// deviceCSRF is what the confirmation form's token seals: the session
// that saw the page and the code it shows, so that a token lifted from
// one page approves nothing else, for no one else.
func deviceCSRF(sessionID, userCode string) []byte { return []byte(sessionID + " " + userCode) }

// deviceDecision takes the person's Approve or Deny.
func (a *Authenticator) deviceDecision(w http.ResponseWriter, r *http.Request, audience string) {
	if !a.sameOrigin(w, r) {
		return
	}
	id, _, err := a.Identify(r, audience, Cookie)
	switch {
	case errors.Is(err, ErrStoreUnavailable):
		RefuseStoreUnavailable(w, r)
		return
	case err != nil:
		respond.Error(w, r, respond.Problem{Code: http.StatusUnauthorized, Message: "portcullis: not signed in",
			Title: "Not signed in", Text: "Your session ended before you decided. Open the sign-in link again."})
		return
	}
	if err := r.ParseForm(); err != nil {
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Bad request", Text: "The form did not arrive whole. Go back and try again."})
		return
	}
	code, ok := session.NormalizeUserCode(r.PostForm.Get("user_code"))
	sealed, err := a.opts.Sealer.Open(purposeDeviceCSRF+" "+audience, r.PostForm.Get("csrf"), a.now())
	if !ok || err != nil || string(sealed) != string(deviceCSRF(id.SessionID, code)) {
		a.log.Info("refused a device sign-in decision without this page's token", "email", id.Email)
		respond.Error(w, r, respond.Problem{Code: http.StatusForbidden, Message: "portcullis: the decision did not come from the confirmation page",
			Title: "Request refused", Text: "This decision did not come from the confirmation page Portcullis showed you. Nothing was approved. Open the sign-in link again."})
		return
	}
	var approve bool
	switch r.PostForm.Get("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		respond.Error(w, r, respond.Problem{Code: http.StatusBadRequest, Title: "Bad request", Text: "Choose Approve or Deny."})
		return
	}
	sid := ""
	if approve {
		sid = id.SessionID
	}
	switch err := a.opts.Store.DecideDeviceGrant(r.Context(), code, approve, sid, id.Email); {
	case errors.Is(err, session.ErrNoDeviceGrant):
		respond.Page(w, http.StatusConflict, "Already decided", "This sign-in was already approved or denied, or it expired. Nothing changed.")
		return
	case err != nil:
		a.storeUnavailable(w, r, "deciding a device sign-in", err)
		return
	}
	route := a.routeScheme(r) + "://" + r.Host
	act := Activity{Action: ActivityDeviceDenied, Email: id.Email, Subject: id.User, SessionID: id.SessionID, Route: audience}
	if approve {
		act.Action = ActivityDeviceApproved
	}
	a.opts.Record(r, act)
	if approve {
		a.log.Info("device sign-in approved by a person", "route", audience, "email", id.Email)
		respond.Page(w, http.StatusOK, "Approved", "The device that asked is signed in to "+route+" as "+id.Email+" within a few seconds. You can close this page.")
		return
	}
	a.log.Info("device sign-in denied by a person", "route", audience, "email", id.Email)
	respond.Page(w, http.StatusOK, "Denied", "The device that asked gets nothing. If you did not start this sign-in, someone may be trying to get you to sign them in: tell your administrator.")
}

// devicePageData is what the verification page shows.
type devicePageData struct {
	Route, Email string
	Typed        string // what the person typed, shown back in the form
	Problem      string // why the code was not found
	Code         string // the user code, as shown, with Grant
	Grant        *deviceGrantView
	CSRF         string
}

type deviceGrantView struct {
	Client, UserAgent, Requested, Ago, Expires string
}

var deviceTemplate = template.Must(template.New("device").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Device sign-in · Portcullis</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + respond.Style + `.warn{background:#fff4e5;border-left:4px solid #e67e00;padding:.6rem 1rem}button{font-size:1rem;padding:.4rem 1.2rem;margin-right:1rem}code{font-size:1.2rem}</style>
</head><body>
{{- if .Grant}}
<h1>Sign a device in to {{.Route}}?</h1>
<p>A program asked to be signed in to <b>{{.Route}}</b> as <b id="email">{{.Email}}</b>, with the code <code id="code">{{.Code}}</code>.</p>
<dl>
<dt>Asked from address</dt><dd id="client">{{.Grant.Client}}</dd>
<dt>Program</dt><dd id="user-agent">{{.Grant.UserAgent}}</dd>
<dt>Asked at</dt><dd id="requested">{{.Grant.Requested}} ({{.Grant.Ago}} ago)</dd>
<dt>Cluster</dt><dd id="route">{{.Route}}</dd>
</dl>
<p class="warn">Approve only if <b>you</b> just started this sign-in, on a machine of yours at that address. If someone sent you this link or code, choose Deny: approving would let them act on the cluster as you.</p>
<form method="post" action="/.pomerium/device">
<input type="hidden" name="user_code" value="{{.Code}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
<p>This request expires in {{.Grant.Expires}}.</p>
{{- else}}
<h1>Sign a device in to {{.Route}}</h1>
{{if .Problem}}<p class="warn" id="problem">{{.Problem}}</p>{{end}}
<p>Enter the code the program showed you. You are signed in as {{.Email}}.</p>
<form method="get" action="/.pomerium/device">
<input name="user_code" id="user_code" value="{{.Typed}}" autocomplete="off" autocapitalize="characters" spellcheck="false" placeholder="BCDF-GHJK" required>
<button type="submit">Continue</button>
</form>
{{- end}}
</body></html>
`))
