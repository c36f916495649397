package authenticate

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/idp"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// Sessions are renewed through the identity provider.
//
// A session keeps the provider's refresh token and the expiry of the
// identity the provider last vouched for (Session.IDPExpiry). When a
// request's session (by cookie, or by the "sid" of a token) comes within
// refreshMargin of that expiry, Portcullis asks the provider again with the
// refresh token, and the session takes the answer: a new refresh token, a
// new expiry, and the person's email, name and groups as they are now. So
// a person removed from a group loses it within one provider token
// lifetime, not at the end of the Portcullis session (COOKIE_EXPIRE).
//
//   - Before the expiry, the refresh runs beside the request, which goes on
//     with the identity that is still valid. From the expiry on, a request
//     waits for the refresh (at most refreshWait while the provider is
//     slow).
//   - One refresh per session at a time: in this process every request of
//     the session that needs it shares it, and replicas sharing a session
//     store take a lease in it first, so that a provider that rotates
//     refresh tokens never sees one used twice; the others take the
//     refreshed session from the store.
//   - The provider refuses (invalid_grant: the person was removed, or the
//     refresh token was revoked or expired; or any answer that does not
//     verify, or is about someone else): the session ends at once, and with
//     it every token issued for it: the request gets 401.
//   - The provider cannot be reached (idp.ErrProviderUnavailable): the
//     session keeps the identity the provider last gave until
//     refreshGrace after its expiry, retrying at most every refreshRetry;
//     if the provider is still unreachable after that, the session ends.
//     Both are logged. The grace bounds how long a revoked person can go on
//     while the provider is down.
//   - A session whose provider gave no refresh token (or no expiry) is never
//     re-checked: it lasts until the Portcullis session's own expiry,
//     COOKIE_EXPIRE, as the identity it started with.
const (
	// refreshMargin is how long before the provider's expiry a session is
	// refreshed; never more than a quarter of the provider's token
	// lifetime (see margin), so that short-lived tokens are not refreshed
	// on every request.
	refreshMargin = time.Minute
	// refreshGrace is how long past the provider's expiry a session keeps
	// working while the provider cannot be reached.
	refreshGrace = 5 * time.Minute
	// refreshRetry spaces the attempts while the provider is unreachable.
	refreshRetry = 10 * time.Second
	// refreshTimeout bounds one refresh at the provider.
	refreshTimeout = 30 * time.Second
	// refreshWait bounds how long a request past the provider's expiry
	// waits for a slow refresh before it uses the grace.
	refreshWait = 10 * time.Second
	// refreshDefaultLife is how long an identity refreshed without an
	// expiry is used before it is checked again.
	refreshDefaultLife = time.Hour
)

// refresher runs at most one refresh per session at a time.
type refresher struct {
	mu      sync.Mutex
	flights map[string]*flight // by session id: running, or failed for want of the provider
	swept   time.Time
}

// flight is one refresh of one session. Its fields are written before
// done is closed and only read after.
type flight struct {
	done    chan struct{}
	outcome refreshOutcome
	sess    *session.Session // refreshed: the new session; unreachable: the one in use
	retryAt time.Time        // unreachable: no new attempt before this
}

type refreshOutcome int

const (
	refreshed   refreshOutcome = iota // the session is fresh (by this refresh or an earlier one)
	ended                             // the session was refused, signed out, or past its grace
	unreachable                       // the provider could not be reached; within the grace
	storeDown                         // the session store failed: the session is not ended, the request refused
)

func (f *flight) finished() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// liveSession returns the live session with this id, renewed with the
// provider if it is due. Every way a session ends gives ErrSessionEnded;
// a session store that cannot answer gives ErrStoreUnavailable, since the
// session may well be live.
func (a *Authenticator) liveSession(ctx context.Context, id string) (*session.Session, error) {
	return a.renewedSession(ctx, id, a.opts.Store.Get)
}

// viewLiveSession is liveSession without the copy (session.Store.View):
// the session is the store's, shared with every request of the session,
// and the caller only reads it. Identify reads one for every request a
// token makes. A refresh that is due reads its own copy (runRefresh), so
// nothing here changes the one viewed.
func (a *Authenticator) viewLiveSession(ctx context.Context, id string) (*session.Session, error) {
	return a.renewedSession(ctx, id, a.opts.Store.View)
}

// renewedSession reads the live session id by get (storeSession) and
// renews it if it is due.
func (a *Authenticator) renewedSession(ctx context.Context, id string, get func(context.Context, string) (*session.Session, error)) (*session.Session, error) {
	sess, err := a.storeSession(ctx, id, get)
	if err != nil {
		return nil, err
	}
	return a.renew(ctx, sess)
}

// CurrentSession returns the live session with this id as the store has
// it now, without a refresh: for deciding whether a stream opened with it
// may go on. A session that ended gives ErrSessionEnded; a store that
// cannot say, ErrStoreUnavailable.
func (a *Authenticator) CurrentSession(ctx context.Context, id string) (*session.Session, error) {
	return a.storeSession(ctx, id, a.opts.Store.Get)
}

// storeSession reads the session id by get (the store's Get or View),
// and says what a failure means for the request.
func (a *Authenticator) storeSession(ctx context.Context, id string, get func(context.Context, string) (*session.Session, error)) (*session.Session, error) {
	sess, err := get(ctx, id)
	switch {
	case errors.Is(err, session.ErrNoSession):
		return nil, ErrSessionEnded
	case err != nil:
		if ctx.Err() == nil { // not just a client that went away
			a.log.Error("the session store could not say whether a session is live; refusing the request", "error", err)
		}
		return nil, ErrStoreUnavailable
	}
	return sess, nil
}

// sessionToEnd returns the live session a sign-out request names, by its
// token or its cookie, as Identify finds it but without a refresh: a
// sign-out must neither wait for the identity provider nor ask it about a
// session that is about to end. It returns nil if there is none, and
// ErrStoreUnavailable if the store cannot say.
func (a *Authenticator) sessionToEnd(r *http.Request, audience string) (*session.Session, error) {
	var sid string
	token, ok, err := session.TokenFromRequest(r.Header)
	switch {
	case err != nil:
		return nil, nil
	case ok:
		c, err := a.opts.Verify(token, audience, a.now())
		if err != nil {
			return nil, nil
		}
		sid = c.SessionID
	default:
		if sid, ok = a.sessionIDFromCookie(r, audience); !ok {
			return nil, nil
		}
	}
	if sid == "" {
		return nil, nil
	}
	sess, err := a.opts.Store.Get(r.Context(), sid)
	switch {
	case errors.Is(err, session.ErrNoSession):
		return nil, nil
	case err != nil:
		return nil, ErrStoreUnavailable
	}
	return sess, nil
}

// renew refreshes sess with the provider if it is due (see the rules at
// the top of this file), and returns the session to use.
func (a *Authenticator) renew(ctx context.Context, sess *session.Session) (*session.Session, error) {
	if !a.renewable(sess) {
		return sess, nil
	}
	now := a.now()
	// The common case first, without reading the ID token: margin is at
	// most refreshMargin.
	if now.Before(sess.IDPExpiry.Add(-refreshMargin)) || now.Before(renewAt(sess)) {
		return sess, nil
	}
	f := a.startRefresh(ctx, sess, now)
	if now.Before(sess.IDPExpiry) {
		// Still valid: the refresh goes on without this request.
		return sess, nil
	}
	graceEnds := sess.IDPExpiry.Add(refreshGrace)
	var timeout <-chan time.Time
	if now.Before(graceEnds) {
		t := time.NewTimer(refreshWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-f.done:
	case <-timeout:
		// The provider is slow to answer: like an unreachable one, within
		// the grace the identity it last gave still serves.
		return sess, nil
	case <-ctx.Done():
		return nil, ErrSessionEnded
	}
	switch f.outcome {
	case refreshed:
		return f.sess, nil
	case unreachable:
		if a.now().Before(graceEnds) {
			return sess, nil
		}
	case storeDown:
		return nil, ErrStoreUnavailable
	}
	return nil, ErrSessionEnded
}

// storeFailed ends a refresh the session store could not take part in:
// the session is neither refreshed nor ended (a store that is down is no
// reason to sign anyone out), and the request waiting for it is refused
// as unavailable. The next request tries again.
func (a *Authenticator) storeFailed(f *flight, doing string, err error) {
	a.log.Error("could not refresh a session: the session store failed", "doing", doing, "error", err)
	f.outcome = storeDown
}

// WaitForRefreshes waits, until ctx is done, for the refreshes running
// beside requests to store their results: at shutdown, before the session
// store closes, so that an answer the provider gave (perhaps a rotated
// refresh token) is not lost.
func (a *Authenticator) WaitForRefreshes(ctx context.Context) {
	done := make(chan struct{})
	go func() { a.refreshing.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// awaitOtherRefresh waits, at most refreshWait, for the refresh of session
// id that another replica holds the lease for, and takes its outcome from
// the store (whose notifications bring the refreshed session here). If it
// does not finish in time, the identity in use stands within the grace,
// as when the provider cannot be reached from here.
func (a *Authenticator) awaitOtherRefresh(ctx context.Context, id string, cur *session.Session, f *flight) {
	deadline := time.Now().Add(refreshWait)
	for {
		s, err := a.opts.Store.Get(ctx, id)
		switch {
		case errors.Is(err, session.ErrNoSession):
			f.outcome = ended
			return
		case err != nil:
			a.storeFailed(f, "reading the session", err)
			return
		case a.now().Before(renewAt(s)):
			f.outcome, f.sess = refreshed, s
			return
		}
		if !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if now := a.now(); now.Before(cur.IDPExpiry.Add(refreshGrace)) {
		f.outcome, f.sess, f.retryAt = unreachable, cur, now.Add(refreshRetry)
	}
}

// renewable reports whether sess can be refreshed at all: without a
// provider, a refresh token or an expiry there is nothing to renew, and
// the session lasts until COOKIE_EXPIRE.
func (a *Authenticator) renewable(sess *session.Session) bool {
	return a.provider() != nil && sess.IDPRefreshToken != "" && !sess.IDPExpiry.IsZero()
}

// renewAt is when sess is due for a refresh.
func renewAt(sess *session.Session) time.Time {
	return sess.IDPExpiry.Add(-margin(sess))
}

// margin is refreshMargin, but at most a quarter of the lifetime of the
// provider's tokens, which the ID token tells (exp - iat): with tokens
// that live five seconds, a one-minute margin would refresh on every
// request. Without an ID token (GitHub) it is refreshMargin.
func margin(sess *session.Session) time.Duration {
	life, ok := idTokenLifetime(sess.IDPIDToken)
	if !ok {
		return refreshMargin
	}
	return min(refreshMargin, life/4)
}

// idTokenLifetime reads exp - iat from a JWT's payload. The token was
// verified when the provider gave it and has been kept server-side since;
// the answer only times the next refresh and never decides who anyone is.
func idTokenLifetime(raw string) (time.Duration, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(parts[1]) > 16<<10 {
		return 0, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0, false
	}
	var c struct {
		IssuedAt float64 `json:"iat"`
		Expiry   float64 `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil || c.IssuedAt <= 0 || c.Expiry <= c.IssuedAt {
		return 0, false
	}
	return time.Duration((c.Expiry - c.IssuedAt) * float64(time.Second)), true
}

// startRefresh returns the refresh of sess in flight, starting one if
// there is none. While the provider is unreachable the last attempt
// stands for refreshRetry, within the grace; past it, every request tries.
func (a *Authenticator) startRefresh(ctx context.Context, sess *session.Session, now time.Time) *flight {
	r := &a.refresh
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.flights[sess.ID]; ok {
		if !f.finished() || now.Before(f.retryAt) && now.Before(sess.IDPExpiry.Add(refreshGrace)) {
			return f
		}
	}
	if r.flights == nil {
		r.flights = map[string]*flight{}
	}
	// Failed attempts are kept for refreshRetry: drop the stale ones now
	// and then, so that sessions nobody uses any more leave nothing behind.
	if now.Sub(r.swept) > refreshGrace {
		for id, f := range r.flights {
			if f.finished() && !now.Before(f.retryAt) {
				delete(r.flights, id)
			}
		}
		r.swept = now
	}
	f := &flight{done: make(chan struct{})}
	r.flights[sess.ID] = f
	// Not bound to this request: others of the session wait for the same
	// refresh, and the provider's answer must be stored even if the
	// request that started it is gone.
	a.refreshing.Go(func() { a.runRefresh(context.WithoutCancel(ctx), sess.ID, f) })
	return f
}

// runRefresh refreshes session id with the provider and stores the result.
func (a *Authenticator) runRefresh(ctx context.Context, id string, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	defer func() {
		r := &a.refresh
		r.mu.Lock()
		if f.outcome != unreachable && r.flights[id] == f {
			delete(r.flights, id)
		}
		r.mu.Unlock()
		close(f.done)
	}()
	f.outcome = ended
	// One refresh per session across replicas too: a provider that
	// rotates refresh tokens may treat a second use of one as theft and
	// end the session. The lease outlives the refresh's own timeout, so
	// that a replica that dies holding it blocks the others only that
	// long. (Named by a hash: the store need not hold session ids in
	// clear.)
	sum := sha256.Sum256([]byte(id))
	lease := "refresh " + hex.EncodeToString(sum[:16])
	took, err := a.opts.Store.TryLease(ctx, lease, a.replica, refreshTimeout+refreshWait)
	switch {
	case err != nil:
		a.storeFailed(f, "taking the refresh lease", err)
		return
	case !took:
		cur, err := a.opts.Store.Get(ctx, id)
		if err != nil {
			a.storeFailed(f, "reading the session", err)
			return
		}
		a.awaitOtherRefresh(ctx, id, cur, f)
		return
	}
	defer a.opts.Store.ReleaseLease(context.WithoutCancel(ctx), lease, a.replica)
	// Read the session again, from the store itself and under the lease:
	// another replica may have refreshed it a moment ago and stored a new
	// refresh token (this replica's copy may not have heard yet, and the
	// old token may be rotated out), and a sign-out may have ended it.
	cur, err := a.opts.Store.Refetch(ctx, id)
	if err != nil {
		a.storeFailed(f, "reading the session", err)
		return
	}
	if !a.renewable(cur) || a.now().Before(renewAt(cur)) {
		f.outcome, f.sess = refreshed, cur
		return
	}
	log := a.log.With("email", cur.Email, "session", id[:min(8, len(id))])
	provider := a.provider()
	if provider == nil {
		// Sign-in was turned off by a reload since renewable said yes:
		// the session goes on as it is, as it would without a provider.
		f.outcome, f.sess = refreshed, cur
		return
	}
	got, toks, err := provider.Refresh(ctx, cur.IDPRefreshToken)
	now := a.now()
	switch {
	case errors.Is(err, idp.ErrProviderUnavailable):
		graceEnds := cur.IDPExpiry.Add(refreshGrace)
		if !now.Before(graceEnds) {
			log.Warn("ending the session: the identity provider could not be reached to refresh it, and the grace after its identity expired is over",
				"idp_expiry", cur.IDPExpiry, "grace", refreshGrace, "error", err)
			a.opts.Store.Delete(ctx, id)
			a.sessionEnded(cur, "the identity provider could not be reached past the grace")
			a.opts.Refreshed(RefreshGraceOver)
			return
		}
		log.Warn("could not reach the identity provider to refresh the session; it keeps its identity until the grace ends",
			"idp_expiry", cur.IDPExpiry, "grace_ends", graceEnds, "error", err)
		f.outcome, f.sess, f.retryAt = unreachable, cur, now.Add(refreshRetry)
		a.opts.Refreshed(RefreshUnreachable)
		return
	case err != nil:
		log.Warn("the identity provider refused to refresh the session; ending it", "error", err)
		a.opts.Store.Delete(ctx, id)
		a.sessionEnded(cur, "the identity provider refused to refresh it: "+err.Error())
		a.opts.Refreshed(RefreshRefused)
		return
	case got.Subject != cur.Subject:
		// OpenID Connect Core 1.0 section 12.2: the subject must not
		// change. An answer about someone else is not this person's.
		log.Error("the identity provider's refresh answered for another user; ending the session")
		a.opts.Store.Delete(ctx, id)
		a.sessionEnded(cur, "the identity provider's refresh answered for another user")
		a.opts.Refreshed(RefreshOtherUser)
		return
	}
	next := *cur
	next.Email, next.Name, next.Groups, next.Claims = got.Email, got.Name, got.Groups, got.Claims
	next.IDPExpiry = toks.Expiry
	if next.IDPExpiry.IsZero() {
		// No expiry this time: check again later rather than never.
		next.IDPExpiry = now.Add(refreshDefaultLife)
	}
	if toks.RefreshToken != "" {
		next.IDPRefreshToken = toks.RefreshToken
	}
	if toks.IDToken != "" {
		next.IDPIDToken = toks.IDToken // the hint for signing out at the provider
	}
	// A sign-out while the provider answered must not be undone by
	// storing the session again: Update stores it only if it is live. It
	// gets time of its own: a provider that answered late must not cost
	// the answer (it may have rotated the refresh token).
	uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer ucancel()
	switch err := a.opts.Store.Update(uctx, &next); {
	case errors.Is(err, session.ErrNoSession):
		return
	case err != nil:
		// The store keeps the old refresh token, which the provider may
		// have rotated out: the next refresh may fail and end the
		// session then. Serving the new identity here meanwhile is
		// still right.
		log.Error("storing the refreshed session", "error", err)
	}
	log.Info("refreshed the session with the identity provider",
		"idp_expiry", next.IDPExpiry, "email_changed", next.Email != cur.Email, "groups_changed", !slices.Equal(next.Groups, cur.Groups))
	f.outcome, f.sess = refreshed, &next
	a.opts.Refreshed(RefreshOK)
}

// sessionEnded records a session a refresh ended.
func (a *Authenticator) sessionEnded(sess *session.Session, reason string) {
	a.opts.Record(nil, Activity{Action: ActivitySessionEnded, Email: sess.Email, Subject: sess.Subject, SessionID: sess.ID, Reason: reason})
}
