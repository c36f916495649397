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
	// Login runs a browser sign-in and returns the new raw JWT
	// (login.Login).
	Login func(ctx context.Context) (string, error)
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
	// Someone else may have signed in while this process waited.
	tok, why, err = b.cached(ctx, rejected)
	if err != nil || why == "" {
		return tok, err
	}
	if why != "none" {
		b.say("The cached credential for %s %s; signing in again.", b.URL, why)
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
	raw, err := b.Login(ctx)
	if err != nil {
		return credential.Token{}, err
	}
	tok, err := credential.ParseToken(raw)
	if err != nil {
		return credential.Token{}, fmt.Errorf("signing in to %s: the server sent a credential portcullis-cli cannot read: %w", b.URL, err)
	}
	now := b.now()
	if !tok.ValidFor(now, 0) {
		return credential.Token{}, fmt.Errorf("signing in to %s: the server sent a credential that expired at %s; is this computer's clock right?", b.URL, tok.Expiry.Format(time.RFC3339))
	}
	if err := b.Cache.Store(cache.Entry{URL: b.URL, Token: tok.Raw, Expiry: tok.Expiry, Obtained: now}); err != nil {
		// The token is good; only the next command will sign in again.
		b.say("portcullis-cli: warning: %v", err)
	}
	if tok.Email != "" {
		b.say("Signed in to %s as %s.", b.URL, tok.Email)
	}
	return tok, nil
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
	if now := b.now(); !tok.ValidFor(now, RenewBefore) {
		if tok.ValidFor(now, 0) {
			return tok, "expires in less than " + RenewBefore.String(), nil
		}
		return tok, "has expired", nil
	}
	if knownRejected != "" && tok.Raw == knownRejected {
		return tok, "is no longer accepted by the server (signed out, or the session ended)", nil
	}
	if err := b.Check(ctx, tok.Raw); err != nil {
		if errors.Is(err, route.ErrRejected) {
			return tok, "is no longer accepted by the server (signed out, or the session ended)", nil
		}
		return credential.Token{}, "", err
	}
	return tok, "", nil
}
