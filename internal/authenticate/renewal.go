package authenticate

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/respond"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// Silent renewal. portcullis-cli asks, at sign-in, for a renewable
// credential: a short-lived token (AccessTokenLifetime) and a renewal
// credential, which it trades at pathToken for the next pair without a
// browser, for as long as the server-side session lives. Each renewal
// credential is good once (OAuth 2.0 Security BCP, RFC 9700 §4.14.2,
// refresh token rotation): it names its chain and generation, and the
// store spends each generation once (session.Store.RotateRenewal). A
// generation used twice means two parties hold the credential, the
// person's client and someone who copied it, and the server cannot tell
// which is which: it ends the session, which stops both.
//
// A client that does not ask (pomerium-cli, a browser) gets a token that
// lasts as long as the session, as Pomerium's do.

// pathToken is the route host's token endpoint for renewal.
const pathToken = "/.pomerium/api/v1/token"

// renewalGrantType is the grant that pathToken takes (RFC 6749 §6).
const renewalGrantType = "refresh_token"

// renewalPrefix starts every renewal credential, so that one pasted into
// the wrong place is recognised, and a Pomerium token never taken for one.
const renewalPrefix = "portcullis-renewal."

const purposeRenewal = "portcullis renewal"

// ReasonRenewalReused is the Activity.Reason of a session ended because
// its renewal credential was used twice.
const ReasonRenewalReused = "renewal credential reused"

// DefaultAccessTokenLifetime is how long a renewable token lasts when
// Options.AccessTokenLifetime is not set.
const DefaultAccessTokenLifetime = 5 * time.Minute

// maxRenewalForm bounds a renewal request's body: the credential is a few
// hundred bytes.
const maxRenewalForm = 8 << 10

// renewal is what a renewal credential carries, sealed.
type renewal struct {
	SessionID string
	Family    string // the chain: one per sign-in of one client
	Gen       uint64
}

func (rn renewal) seal(s *session.Sealer, expiry time.Time) string {
	// The session ID and family are random text without spaces.
	payload := rn.SessionID + " " + rn.Family + " " + strconv.FormatUint(rn.Gen, 10)
	return renewalPrefix + s.Seal(purposeRenewal, []byte(payload), expiry)
}

func openRenewal(s *session.Sealer, credential string, now time.Time) (renewal, error) {
	sealed, ok := strings.CutPrefix(credential, renewalPrefix)
	if !ok {
		return renewal{}, errors.New("not a Portcullis renewal credential")
	}
	raw, err := s.Open(purposeRenewal, sealed, now)
	if err != nil {
		return renewal{}, errors.New("the renewal credential is invalid or has expired")
	}
	f := strings.Split(string(raw), " ")
	if len(f) != 3 || f[0] == "" || f[1] == "" {
		return renewal{}, errors.New("the renewal credential is invalid")
	}
	gen, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return renewal{}, errors.New("the renewal credential is invalid")
	}
	return renewal{SessionID: f[0], Family: f[1], Gen: gen}, nil
}

// renewablePair is a short-lived token and the credential that renews it.
type renewablePair struct {
	Token   string
	Expiry  time.Time
	Renewal string
}

// issueRenewable returns a short-lived token of sess for the route
// audience, and the renewal credential of generation rn.Gen of the chain
// rn.Family (a new chain if rn.Family is empty).
func (a *Authenticator) issueRenewable(sess *session.Session, audience string, rn renewal) (renewablePair, error) {
	exp := a.now().Add(a.opts.AccessTokenLifetime)
	if sess.ExpiresAt.Before(exp) {
		exp = sess.ExpiresAt
	}
	tok, err := a.opts.Keys.Issue(a.tokenClaims(sess, audience, exp))
	if err != nil {
		return renewablePair{}, err
	}
	if rn.Family == "" {
		rn = renewal{Family: session.NewSessionID()}
	}
	rn.SessionID = sess.ID
	return renewablePair{Token: tok, Expiry: exp, Renewal: rn.seal(a.opts.Sealer, sess.ExpiresAt)}, nil
}

// writeRenewable answers a token request with pair (RFC 6749 §5.1), and
// for an exchange the presented chain's next credential.
func (a *Authenticator) writeRenewable(w http.ResponseWriter, pair renewablePair, next string) {
	writeJSON(w, http.StatusOK, struct {
		AccessToken string `json:"access_token"`
		// Pomerium: sent as "Authorization: Pomerium <token>" or
		// "Authorization: Bearer Pomerium-<token>".
		TokenType    string `json:"token_type"`
		ExpiresIn    int64  `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
		Next         string `json:"portcullis_renewal_next,omitempty"`
	}{pair.Token, "Pomerium", int64(pair.Expiry.Sub(a.now()) / time.Second), pair.Renewal, next})
}

// renewToken trades a renewal credential for the route's next token and
// credential. Every failure is an OAuth error (RFC 6749 §5.2);
// invalid_grant tells portcullis-cli to sign in again.
func (a *Authenticator) renewToken(w http.ResponseWriter, r *http.Request, audience string) {
	sess, rn, ok := a.spendRenewal(w, r, "renew with POST "+pathToken, func(url.Values) (string, string) { return audience, "" })
	if !ok {
		return
	}
	pair, err := a.issueRenewable(sess, audience, renewal{Family: rn.Family, Gen: rn.Gen + 1})
	if err != nil {
		a.serverError(w, err)
		return
	}
	a.writeRenewable(w, pair, "")
}

// exchangeToken serves pathToken on the authenticate host: a renewal
// credential of one route's sign-in, and the URL of another route
// ("resource", RFC 8707), give that route a token and a renewal chain of
// its own, with the same session; the presented credential is spent, and
// its chain's next comes back as "portcullis_renewal_next". So a second
// cluster behind the same Portcullis needs no browser. The credential is
// only ever sent here, to the sign-in service its token names as issuer,
// never to the other route: a route that is not this Portcullis's learns
// nothing, and gets nothing (its URL is not a route here).
func (a *Authenticator) exchangeToken(w http.ResponseWriter, r *http.Request) {
	var audience string
	sess, rn, ok := a.spendRenewal(w, r, "exchange with POST "+pathToken, func(form url.Values) (string, string) {
		res := form["resource"]
		if len(res) != 1 {
			return "", "want one resource: the URL of the route to get a token for"
		}
		var err error
		if _, audience, err = a.routeRedirect(res[0]); err != nil {
			return "", "resource: " + err.Error()
		}
		return audience, ""
	})
	if !ok {
		return
	}
	next := renewal{SessionID: sess.ID, Family: rn.Family, Gen: rn.Gen + 1}.seal(a.opts.Sealer, sess.ExpiresAt)
	pair, err := a.issueRenewable(sess, audience, renewal{})
	if err != nil {
		a.serverError(w, err)
		return
	}
	a.writeRenewable(w, pair, next)
}

// spendRenewal reads a token request's form (POST, with usage saying how
// to call it otherwise), checks it with check (which returns the audience
// the request is for, or why the form is invalid), opens its renewal
// credential and spends it, and returns the live session. On any failure
// it has answered, and reports false.
func (a *Authenticator) spendRenewal(w http.ResponseWriter, r *http.Request, usage string, check func(url.Values) (audience, invalid string)) (*session.Session, renewal, bool) {
	if !a.tokenRequest(w, r, usage) {
		return nil, renewal{}, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRenewalForm)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the request's form does not parse")
		return nil, renewal{}, false
	}
	// Only the body counts (RFC 6749 §3.2): a credential in the URL
	// would end up in logs.
	switch gt := r.PostForm.Get("grant_type"); {
	case gt == "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "missing grant_type")
		return nil, renewal{}, false
	case gt != renewalGrantType:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "this endpoint takes grant_type "+renewalGrantType)
		return nil, renewal{}, false
	}
	creds := r.PostForm["refresh_token"]
	if len(creds) != 1 || creds[0] == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "want one refresh_token")
		return nil, renewal{}, false
	}
	audience, invalid := check(r.PostForm)
	if invalid != "" {
		// Before the credential is spent: a mistake costs nothing.
		oauthError(w, http.StatusBadRequest, "invalid_target", invalid)
		return nil, renewal{}, false
	}
	rn, err := openRenewal(a.opts.Sealer, creds[0], a.now())
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", err.Error()+": sign in again")
		return nil, renewal{}, false
	}
	ctx := r.Context()
	switch err := a.opts.Store.RotateRenewal(ctx, rn.SessionID, rn.Family, rn.Gen); {
	case errors.Is(err, session.ErrNoSession):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "your session ended (signed out, expired or revoked): sign in again")
		return nil, renewal{}, false
	case errors.Is(err, session.ErrRenewalReused):
		// Two parties hold this credential: end the session for both.
		if err := a.opts.Store.Delete(ctx, rn.SessionID); err != nil {
			a.log.Error("ending a session whose renewal credential was reused failed", "session", rn.SessionID[:min(8, len(rn.SessionID))], "error", err)
			respond503(w)
			return nil, renewal{}, false
		}
		a.log.Warn("a renewal credential was used twice; the session is ended", "session", rn.SessionID[:min(8, len(rn.SessionID))],
			"client", clientAddress(r), "route", audience)
		a.opts.Record(r, Activity{Action: ActivitySessionEnded, SessionID: rn.SessionID, Reason: ReasonRenewalReused})
		oauthError(w, http.StatusBadRequest, "invalid_grant", "this renewal credential was used already, so someone else may hold it: your session is ended; sign in again")
		return nil, renewal{}, false
	case err != nil:
		a.log.Error("renewal refused: the session store failed", "error", err)
		respond503(w)
		return nil, renewal{}, false
	}
	// The provider's word on the person is checked as for any request.
	sess, err := a.liveSession(ctx, rn.SessionID)
	switch {
	case errors.Is(err, ErrStoreUnavailable):
		respond503(w)
		return nil, renewal{}, false
	case err != nil:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "your session ended (signed out, expired or revoked): sign in again")
		return nil, renewal{}, false
	}
	return sess, rn, true
}

// serverError answers a token request whose token could not be issued.
func (a *Authenticator) serverError(w http.ResponseWriter, err error) {
	a.log.Error("issuing token", "error", err)
	oauthError(w, http.StatusInternalServerError, "server_error", "Portcullis could not issue your credentials")
}

// respond503 answers a token request the session store could not serve.
func respond503(w http.ResponseWriter) {
	respond.RetryAfter(w.Header(), 5*time.Second)
	oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", ErrStoreUnavailable.Error())
}
