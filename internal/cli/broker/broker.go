package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/cli/cache"
	"github.com/portcullis-proxy/portcullis/internal/cli/credential"
	"github.com/portcullis-proxy/portcullis/internal/cli/route"
)

// RenewBefore is how long before its exp a cached token is replaced.
const RenewBefore = time.Minute

// A Broker gets credentials for one route.
type Broker struct {
	// URL is the route's canonical URL, the cache key.
	URL   string
	Cache *cache.Cache
	// Check asks the server whether it still accepts a token: nil if it
	// does, an error wrapping route.ErrRejected if not, another error if
	// it could not tell (route.Client.WhoAmI).
	Check func(ctx context.Context, jwt string) error
	// Login runs a browser (or device) sign-in and returns the new grant
	// (login.Login, login.Device).
	Login func(ctx context.Context) (route.Grant, error)
	// Renew trades a renewal credential for the next grant, without a
	// browser (route.Client.Renew): an error wrapping route.ErrRejected
	// if the session is over.
	Renew func(ctx context.Context, renewal string) (route.Grant, error)
	// Issuer asks the route which sign-in service issues its tokens
	// (route.Client.Issuer), and Exchange trades, at that service, the
	// renewal credential of another route's sign-in to it for this
	// route's grant, returning that credential's next too
	// (route.Client.Exchange): the first command for a second cluster
	// behind the same Portcullis opens no browser. Either nil: every
	// route signs in on its own.
	Issuer   func(ctx context.Context) (string, error)
	Exchange func(ctx context.Context, issuer, renewal string) (g route.Grant, next string, err error)
	// Caller identifies the process the token is for: kubectl's process
	// ID. kubectl runs the plugin once per command, and again only when
	// the server refused the token it got (client-go's exec plugin, on a
	// 401): the same caller asking again for the same token is how a
	// renewable token that the server stopped accepting is noticed
	// without asking the server on every command. 0: no caller known.
	Caller int
	// Stderr receives messages for the person.
	Stderr io.Writer
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

func (b *Broker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Broker) say(format string, args ...any) {
	if b.Stderr != nil {
		fmt.Fprintf(b.Stderr, format+"\n", args...)
	}
}

// Token returns a good token for the route, signing in if needed.
func (b *Broker) Token(ctx context.Context) (credential.Token, error) {
	tok, why, err := b.cached(ctx, "")
	if err != nil || why == "" {
		return tok, err
	}
	rejected := tok.Raw

	unlock, err := b.Cache.Lock(ctx, b.URL, func() {
		b.say("Another portcullis-cli is signing in to %s; waiting for it to finish...", b.URL)
	})
	if err != nil {
		return credential.Token{}, err
	}
	defer unlock()
	// Someone else may have signed in, or renewed, while this process
	// waited.
	tok, why, err = b.cached(ctx, rejected)
	if err != nil || why == "" {
		return tok, err
	}
	// Renew without a browser while the session lasts.
	if e, _ := b.Cache.Load(b.URL); e != nil && e.Renewal != "" && b.Renew != nil {
		tok, renewed, err := b.renewLocked(ctx, e.Renewal)
		if err != nil || renewed {
			return tok, err
		}
	} else if why != "none" {
		b.say("The cached credential for %s %s; signing in again.", b.URL, why)
	} else {
		// Nothing cached for this route: the session of another route
		// of the same Portcullis may serve. Only a route with nothing
		// cached looks (holding its own lock, it then takes the other's),
		// and a route with something cached never does: no two
		// processes can wait for each other.
		tok, ok, err := b.fromAnotherRoute(ctx)
		if err != nil || ok {
			return tok, err
		}
	}
	return b.signInLocked(ctx)
}

// SignIn signs in even if a good token is cached, and caches the result
// (for `portcullis-cli login`).
func (b *Broker) SignIn(ctx context.Context) (credential.Token, error) {
	unlock, err := b.Cache.Lock(ctx, b.URL, func() {
		b.say("Another portcullis-cli is signing in to %s; waiting for it to finish...", b.URL)
	})
	if err != nil {
		return credential.Token{}, err
	}
	defer unlock()
	return b.signInLocked(ctx)
}

func (b *Broker) signInLocked(ctx context.Context) (credential.Token, error) {
	g, err := b.Login(ctx)
	if err != nil {
		return credential.Token{}, err
	}
	tok, err := b.keep(g, "signing in to")
	if err == nil && tok.Email != "" {
		b.say("Signed in to %s as %s.", b.URL, tok.Email)
	}
	return tok, err
}

// fromAnotherRoute gets this route's first grant with the session of
// another cached route whose tokens the same sign-in service issued. It
// reports ok false, with no error, when there is none to use.
func (b *Broker) fromAnotherRoute(ctx context.Context) (tok credential.Token, ok bool, err error) {
	if b.Issuer == nil || b.Exchange == nil {
		return credential.Token{}, false, nil
	}
	entries, err := b.Cache.Entries()
	if err != nil {
		return credential.Token{}, false, nil
	}
	// Other routes that can renew, by their token's issuer; the route is
	// asked for its issuer only if there are any.
	sources := map[string]string{}
	for _, e := range entries {
		if st, err := credential.ParseToken(e.Token); e.URL != b.URL && e.Renewal != "" && err == nil && st.Issuer != "" {
			sources[e.URL] = st.Issuer
		}
	}
	if len(sources) == 0 {
		return credential.Token{}, false, nil
	}
	iss, err := b.Issuer(ctx)
	if err != nil || iss == "" {
		// A server that does not say: sign in to it on its own.
		return credential.Token{}, false, nil
	}
	for _, src := range entries {
		if sources[src.URL] != iss {
			continue
		}
		if tok, ok, err := b.exchangeFrom(ctx, src.URL, iss); err != nil || ok {
			return tok, ok, err
		}
	}
	return credential.Token{}, false, nil
}

// exchangeFrom spends the renewal credential cached for srcURL, under its
// lock, for this route's grant at the sign-in service iss, and caches
// both the grant and srcURL's next credential.
func (b *Broker) exchangeFrom(ctx context.Context, srcURL, iss string) (credential.Token, bool, error) {
	unlock, err := b.Cache.Lock(ctx, srcURL, func() {
		b.say("Another portcullis-cli is using your session at %s; waiting for it to finish...", srcURL)
	})
	if err != nil {
		return credential.Token{}, false, err
	}
	defer unlock()
	src, err := b.Cache.Load(srcURL)
	if err != nil || src == nil || src.Renewal == "" {
		return credential.Token{}, false, nil
	}
	g, next, err := b.Exchange(ctx, iss, src.Renewal)
	switch {
	case errors.Is(err, route.ErrRejected):
		// That session is over, or this route is not that service's:
		// sign in here on its own.
		return credential.Token{}, false, nil
	case err != nil:
		return credential.Token{}, false, err
	}
	src.Renewal = next
	if err := b.Cache.Store(*src); err != nil {
		b.say("portcullis-cli: warning: %v", err)
	}
	tok, err := b.keep(g, "signing in to")
	if err != nil {
		return credential.Token{}, false, err
	}
	b.say("Signed in to %s as %s, with your session at %s.", b.URL, tok.Email, srcURL)
	return tok, true, nil
}

// renewLocked trades the cached renewal credential for a new grant. It
// reports renewed false, with no error, if the session is over and the
// person must sign in again.
func (b *Broker) renewLocked(ctx context.Context, renewal string) (tok credential.Token, renewed bool, err error) {
	g, err := b.Renew(ctx, renewal)
	switch {
	case errors.Is(err, route.ErrRejected):
		b.say("Your session at %s has ended (%v); signing in again.", b.URL, err)
		return credential.Token{}, false, nil
	case err != nil:
		return credential.Token{}, false, err
	}
	tok, err = b.keep(g, "renewing the credential for")
	return tok, err == nil, err
}

// keep checks a grant the server sent and caches it, as given to the
// caller.
func (b *Broker) keep(g route.Grant, doing string) (credential.Token, error) {
	tok, err := credential.ParseToken(g.Token)
	if err != nil {
		return credential.Token{}, fmt.Errorf("%s %s: the server sent a credential portcullis-cli cannot read: %w", doing, b.URL, err)
	}
	now := b.now()
	if !tok.ValidFor(now, 0) {
		return credential.Token{}, fmt.Errorf("%s %s: the server sent a credential that expired at %s; is this computer's clock right?", doing, b.URL, tok.Expiry.Format(time.RFC3339))
	}
	if err := b.Cache.Store(cache.Entry{URL: b.URL, Token: tok.Raw, Expiry: tok.Expiry, Obtained: now, Renewal: g.Renewal}); err != nil {
		// The token is good; only the next command will sign in again.
		b.say("portcullis-cli: warning: %v", err)
	}
	b.given(tok.Raw)
	return tok, nil
}

// given records that the caller got token (Broker.Caller).
func (b *Broker) given(token string) {
	if b.Caller == 0 {
		return
	}
	if err := b.Cache.MarkGiven(b.URL, b.Caller, token); err != nil {
		b.say("portcullis-cli: warning: %v", err)
	}
}

// renewBefore is how long before its exp the token of e is replaced: a
// minute, or half its life if that is shorter (a token of a minute is
// renewed at 30 seconds).
func renewBefore(e *cache.Entry) time.Duration {
	if life := e.Expiry.Sub(e.Obtained); e.Renewal != "" && life > 0 && life/2 < RenewBefore {
		return life / 2
	}
	return RenewBefore
}

// cached returns the cached token if it is good (why == ""), or why not:
// "none" if there is none, else a phrase for the person. err is set
// only when the server could not tell, which ends the command. A token
// equal to knownRejected is not sent again: the server just refused it.
func (b *Broker) cached(ctx context.Context, knownRejected string) (tok credential.Token, why string, err error) {
	e, err := b.Cache.Load(b.URL)
	if errors.Is(err, cache.ErrCorrupt) {
		return credential.Token{}, "could not be read", nil
	}
	if err != nil {
		return credential.Token{}, "", err
	}
	if e == nil {
		return credential.Token{}, "none", nil
	}
	tok, err = credential.ParseToken(e.Token)
	if err != nil {
		return credential.Token{}, "could not be read", nil
	}
	if now, before := b.now(), renewBefore(e); !tok.ValidFor(now, before) {
		if tok.ValidFor(now, 0) {
			return tok, "expires in less than " + before.String(), nil
		}
		return tok, "has expired", nil
	}
	if knownRejected != "" && tok.Raw == knownRejected {
		return tok, "is no longer accepted by the server (signed out, or the session ended)", nil
	}
	// A renewable token is short-lived: it is handed out without asking
	// the server, unless this caller had it already (Broker.Caller).
	if e.Renewal != "" && (b.Caller == 0 || b.Cache.GivenTo(b.URL, tok.Raw) != b.Caller) {
		b.given(tok.Raw)
		return tok, "", nil
	}
	if err := b.Check(ctx, tok.Raw); err != nil {
		if errors.Is(err, route.ErrRejected) {
			return tok, "is no longer accepted by the server (signed out, or the session ended)", nil
		}
		return credential.Token{}, "", err
	}
	return tok, "", nil
}
