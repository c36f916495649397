package builtin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

const (
	// authRequestTTL is how long a person has to sign in, counted from the
	// authorize call, once a browser has opened the login page.
	authRequestTTL = 10 * time.Minute
	// unboundTTL is how long a sign-in request lives until a browser opens
	// its login page (bindLogin). A browser is redirected there at once, so
	// a minute is ample; a request no browser opens is what a script
	// flooding the authorize endpoint leaves, and it is gone in a minute.
	unboundTTL = time.Minute
	// codeTTL is how long an authorization code can be exchanged; RFC 6749
	// section 4.1.2 asks for a short life, at most ten minutes.
	codeTTL = time.Minute
	// maxLoginFailures wrong passwords end a sign-in: the person must go
	// back to the application. A script starts a new request instead: what
	// stops guessing is the count across requests (limits.go).
	maxLoginFailures = 5

	// Bounds on what the storage holds. Expired entries are swept at most
	// every sweepInterval, and at once when a bound is reached; if it is
	// still reached, new sign-ins or tokens are refused until entries
	// expire, rather than memory growing without end.
	maxAuthRequests = 10_000
	maxTokens       = 100_000 // each of access tokens, refresh tokens
	maxSpent        = 100_000 // remembered used codes and refresh tokens
	sweepInterval   = 30 * time.Second
)

var (
	errUnknownRequest   = errors.New("the sign-in request is unknown, expired or already used")
	errOtherBrowser     = errors.New("the sign-in request was opened in another browser")
	errTooManyAttempts  = errors.New("too many wrong passwords")
	errBusy             = errors.New("too many tokens in flight; try again later")
	errInvalidToken     = errors.New("token is invalid, expired or revoked")
	errUnknownClient    = errors.New("unknown client")
	errClientCredential = errors.New("wrong client_id or client_secret")
)

// account is a User with its subject (the sub claim).
type account struct {
	User
	subject string
}

// accessToken is an issued access token. op hands the client an encrypted
// "id:subject"; the record behind id is what makes it valid.
type accessToken struct {
	id       string
	grantID  string // the sign-in (auth request id) it descends from
	clientID string
	subject  string
	scopes   []string
	expires  time.Time
}

// refreshToken is an issued refresh token, keyed by its value. Rotation
// replaces it; the chain of tokens of one sign-in shares grantID.
type refreshToken struct {
	token    string
	grantID  string
	clientID string
	subject  string
	scopes   []string // the scopes granted at sign-in, never narrowed
	amr      []string
	authTime time.Time
	accessID string // the access token issued with it
	expires  time.Time
}

// spent remembers a used authorization code or a rotated refresh token
// until the tokens it could have led to have expired, so that its replay
// is recognized as one and the whole grant revoked.
type spent struct {
	grantID string
	expires time.Time
}

// storage is op.Storage in memory. Everything that changes is under mu,
// except the people, an immutable set swapped whole (setAccounts); clients
// and the key are fixed at construction.
type storage struct {
	now func() time.Time
	// users is the current set of people. It is replaced, never changed,
	// and replaced under mu, so that a locked section sees no token issued
	// to a person after the swap that removed them.
	users atomic.Pointer[accountSet]
	// reload, if set, looks at the users file (at most once a second) and
	// swaps in its new contents. It takes mu: call it before locking.
	reload     func()
	clients    map[string]*client
	key        *signingKey
	accessTTL  time.Duration
	refreshTTL time.Duration

	mu           sync.Mutex
	authRequests map[string]*authRequest
	// byAddr holds, per client address, its requests in authRequests and
	// the room held for ones about to be made (admission); reserved is the
	// room held in all. Together they bound one address's share of the
	// table (maxSignInsPerAddr).
	byAddr        map[netip.Addr]*addrSignIns
	reserved      int
	codes         map[string]string // code → auth request id
	spentCodes    map[string]spent
	accessTokens  map[string]*accessToken
	refreshTokens map[string]*refreshToken
	spentRefresh  map[string]spent
	lastSweep     time.Time
}

var (
	_ op.Storage                   = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest = (*storage)(nil)
)

func newStorage(accounts []*account, clients []*client, key *signingKey, accessTTL, refreshTTL time.Duration) *storage {
	s := &storage{
		now:           time.Now,
		clients:       map[string]*client{},
		key:           key,
		accessTTL:     accessTTL,
		refreshTTL:    refreshTTL,
		authRequests:  map[string]*authRequest{},
		byAddr:        map[netip.Addr]*addrSignIns{},
		codes:         map[string]string{},
		spentCodes:    map[string]spent{},
		accessTokens:  map[string]*accessToken{},
		refreshTokens: map[string]*refreshToken{},
		spentRefresh:  map[string]spent{},
	}
	s.users.Store(newAccountSet(accounts, nil))
	for _, c := range clients {
		s.clients[c.ID] = c
	}
	return s
}

// snapshot copies a for op; the slices are never changed in place.
func snapshot(a *authRequest) *authRequest {
	c := *a
	return &c
}

// sweepLocked drops expired entries, at most every sweepInterval unless
// force is set.
func (s *storage) sweepLocked(now time.Time, force bool) {
	if !force && now.Sub(s.lastSweep) < sweepInterval {
		return
	}
	s.lastSweep = now
	for id, a := range s.authRequests {
		if !now.Before(a.expires) {
			s.deleteAuthRequestLocked(id)
		}
	}
	for id, t := range s.accessTokens {
		if !now.Before(t.expires) {
			delete(s.accessTokens, id)
		}
	}
	for v, t := range s.refreshTokens {
		if !now.Before(t.expires) {
			delete(s.refreshTokens, v)
		}
	}
	for _, m := range []map[string]spent{s.spentCodes, s.spentRefresh} {
		for k, sp := range m {
			if !now.Before(sp.expires) {
				delete(m, k)
			}
		}
	}
}

// roomLocked reports whether a map of size n may grow, sweeping first when
// it is full.
func (s *storage) roomLocked(now time.Time, n func() int, limit int) bool {
	s.sweepLocked(now, false)
	if n() < limit {
		return true
	}
	s.sweepLocked(now, true)
	return n() < limit
}

func (s *storage) deleteAuthRequestLocked(id string) {
	a, ok := s.authRequests[id]
	if !ok {
		return
	}
	if a.code != "" {
		delete(s.codes, a.code)
	}
	if as := s.byAddr[a.addr]; as != nil {
		if i := slices.Index(as.ids, id); i >= 0 {
			as.ids = slices.Delete(as.ids, i, i+1)
		}
		s.dropAddrIfIdleLocked(a.addr, as)
	}
	delete(s.authRequests, id)
}

// revokeGrantLocked deletes every token that descends from one sign-in.
func (s *storage) revokeGrantLocked(grantID string) {
	for id, t := range s.accessTokens {
		if t.grantID == grantID {
			delete(s.accessTokens, id)
		}
	}
	for v, t := range s.refreshTokens {
		if t.grantID == grantID {
			delete(s.refreshTokens, v)
		}
	}
}

// rememberLocked records a used code or refresh token, if there is room;
// without room the replay is still refused, only not recognized as one.
func (s *storage) rememberLocked(m map[string]spent, key, grantID string, expires time.Time) {
	if len(m) < maxSpent {
		m[key] = spent{grantID: grantID, expires: expires}
	}
}

// --- room for sign-in requests ---

// addrSignIns is one client address's share of the sign-in requests.
type addrSignIns struct {
	ids      []string // its requests in authRequests
	reserved int      // admissions held and not yet used or released
}

// An admission is room held in the table for the one sign-in request an
// authorize call may make, counted against the client address. It lets
// the refusal of a full table come before op runs, as a page for the
// person (serveAuthorize), rather than from CreateAuthRequest, which op
// would turn into an error redirect to the application.
type admission struct {
	addr netip.Addr
	used bool // a request was made with it, or it was released
}

// admissionKey is the context key of the *admission that op's context
// carries into CreateAuthRequest.
type admissionKey struct{}

// admit holds room for a sign-in request from addr. It fails with
// errTooManySignIns when addr has maxSignInsPerAddr requests in progress,
// and with errSignInsFull when the table holds maxAuthRequests. The
// caller must release the admission.
func (s *storage) admit(addr netip.Addr) (*admission, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.admitLocked(s.now(), addr)
}

func (s *storage) admitLocked(now time.Time, addr netip.Addr) (*admission, error) {
	if as := s.byAddr[addr]; as != nil && len(as.ids)+as.reserved >= maxSignInsPerAddr {
		// The address's own expired requests make room first: that looks
		// at maxSignInsPerAddr entries, where a sweep would look at all.
		for _, id := range slices.Clone(as.ids) {
			if a := s.authRequests[id]; a != nil && !now.Before(a.expires) {
				s.deleteAuthRequestLocked(id)
			}
		}
		if len(as.ids)+as.reserved >= maxSignInsPerAddr {
			return nil, errTooManySignIns
		}
	}
	// The global ceiling is the last line of defence: reaching it takes
	// many addresses, each at its own limit.
	if !s.roomLocked(now, func() int { return len(s.authRequests) + s.reserved }, maxAuthRequests) {
		return nil, errSignInsFull
	}
	as := s.byAddr[addr] // looked up again: making room may have dropped it
	if as == nil {
		as = &addrSignIns{}
		s.byAddr[addr] = as
	}
	as.reserved++
	s.reserved++
	return &admission{addr: addr}, nil
}

// release gives back the room of an admission no request was made with.
func (s *storage) release(adm *admission) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if adm.used {
		return
	}
	adm.used = true
	as := s.byAddr[adm.addr]
	as.reserved--
	s.reserved--
	s.dropAddrIfIdleLocked(adm.addr, as)
}

// addLocked stores request a in the room held by adm.
func (s *storage) addLocked(a *authRequest, adm *admission) {
	adm.used = true
	as := s.byAddr[adm.addr] // kept by the admission's room
	as.reserved--
	s.reserved--
	as.ids = append(as.ids, a.id)
	a.addr = adm.addr
	s.authRequests[a.id] = a
}

// dropAddrIfIdleLocked forgets an address with no requests and no room
// held, so that byAddr is no larger than the table.
func (s *storage) dropAddrIfIdleLocked(addr netip.Addr, as *addrSignIns) {
	if len(as.ids) == 0 && as.reserved == 0 {
		delete(s.byAddr, addr)
	}
}

// --- the login page's part ---

// bindLogin returns the pending request id for the login page, binding it
// to the browser (the hash of its login cookie) on first sight.
func (s *storage) bindLogin(id string, browser [32]byte) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.pendingLocked(id, browser)
	if err != nil {
		return nil, err
	}
	if !a.bound {
		// Bound to a browser, the request gets the full time to sign in;
		// until then it had only unboundTTL.
		a.browser, a.bound = browser, true
		a.expires = a.created.Add(authRequestTTL)
	}
	return snapshot(a), nil
}

// pendingLocked returns the live request id if it is waiting for a login
// from this browser.
func (s *storage) pendingLocked(id string, browser [32]byte) (*authRequest, error) {
	a, ok := s.authRequests[id]
	if !ok || a.done || !s.now().Before(a.expires) {
		return nil, errUnknownRequest
	}
	if a.bound && subtle.ConstantTimeCompare(a.browser[:], browser[:]) != 1 {
		return nil, errOtherBrowser
	}
	return a, nil
}

// checkLogin says whether a login may be tried for request id from this
// browser: it must have opened the login page (bindLogin) first.
func (s *storage) checkLogin(id string, browser [32]byte) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.pendingLocked(id, browser)
	if err != nil {
		return nil, err
	}
	if !a.bound {
		return nil, errOtherBrowser
	}
	return snapshot(a), nil
}

// loginFailed counts a wrong password; the last allowed one ends the
// request.
func (s *storage) loginFailed(id string, browser [32]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.pendingLocked(id, browser)
	if err != nil {
		return err
	}
	a.failures++
	if a.failures >= maxLoginFailures {
		s.deleteAuthRequestLocked(id)
		return errTooManyAttempts
	}
	return nil
}

// completeLogin marks request id as signed in by subject.
func (s *storage) completeLogin(id string, browser [32]byte, subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.pendingLocked(id, browser)
	if err != nil {
		return err
	}
	if !a.bound {
		return errOtherBrowser
	}
	a.done, a.subject, a.authTime = true, subject, s.now()
	return nil
}

// currentUsers returns the people as they are now, looking at the users
// file first if it is followed. It must not be called with mu held.
func (s *storage) currentUsers() *accountSet {
	if s.reload != nil {
		s.reload()
	}
	return s.users.Load()
}

// knownLocked reports whether subject is one of the people now. mu must
// be held, so that the answer holds until it is released.
func (s *storage) knownLocked(subject string) bool {
	_, ok := s.users.Load().bySubject[subject]
	return ok
}

// --- op.AuthStorage ---

func (s *storage) CreateAuthRequest(ctx context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	// The userID argument comes from an id_token_hint. It is ignored: this
	// provider keeps no browser session, so every sign-in asks for the
	// password.
	if slices.Contains(r.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired().WithDescription("the built-in provider keeps no session: the person must sign in")
	}
	if !slices.Contains(r.Scopes, oidc.ScopeOpenID) {
		return nil, oidc.ErrInvalidScope().WithDescription("the openid scope is required")
	}
	// PKCE with S256 is required of every client (RFC 9700 section 2.1.1):
	// it binds the code to the client instance that asked for it.
	if r.CodeChallenge == "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge and code_challenge_method=S256")
	}
	if r.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	}
	now := s.now()
	a := &authRequest{
		id:           rand.Text(),
		created:      now,
		expires:      now.Add(unboundTTL),
		clientID:     r.ClientID,
		redirectURI:  r.RedirectURI,
		state:        r.State,
		nonce:        r.Nonce,
		loginHint:    r.LoginHint,
		scopes:       slices.Clone(r.Scopes),
		responseType: r.ResponseType,
		responseMode: r.ResponseMode,
		challenge:    &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	adm, _ := ctx.Value(admissionKey{}).(*admission)
	if adm == nil || adm.used {
		// No room held for this request by serveAuthorize: a second
		// request in one call, or a path into op not foreseen. Admit it
		// here; without an admission, as from an unknown address, so
		// that all such requests share one address's room.
		var addr netip.Addr
		if adm != nil {
			addr = adm.addr
		}
		var err error
		if adm, err = s.admitLocked(now, addr); err != nil {
			return nil, busyError(err)
		}
	}
	s.addLocked(a, adm)
	return snapshot(a), nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok || !s.now().Before(a.expires) {
		return nil, errUnknownRequest
	}
	return snapshot(a), nil
}

// SaveAuthCode issues the one code of a signed-in request. A second call
// (the callback URL opened again) is refused, so that a request yields at
// most one code.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	now := s.now()
	if !ok || !a.done || !now.Before(a.expires) {
		return oidc.ErrInvalidRequest().WithDescription("%s", errUnknownRequest)
	}
	if a.code != "" {
		return oidc.ErrInvalidRequest().WithDescription("an authorization code was already issued for this sign-in")
	}
	a.code, a.codeExpires = code, now.Add(codeTTL)
	s.codes[code] = id
	return nil
}

// AuthRequestByCode finds the sign-in of a code. The code is used up
// only when tokens are issued for it (redeemLocked), so that a refused
// exchange (a wrong client secret, a wrong PKCE verifier) leaves it to the
// client's retry: x/oauth2 retries a refused exchange with the other way
// of sending the client's credentials. A used code presented again
// revokes every token issued for it (RFC 6749 section 10.5).
func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	id, ok := s.codes[code]
	if !ok {
		if sp, used := s.spentCodes[code]; used {
			s.revokeGrantLocked(sp.grantID)
			return nil, errors.New("the authorization code was already used; the tokens issued for it are revoked")
		}
		return nil, errors.New("the authorization code is unknown or expired")
	}
	a := s.authRequests[id]
	if a == nil || !now.Before(a.codeExpires) || !now.Before(a.expires) {
		return nil, errors.New("the authorization code is expired")
	}
	return snapshot(a), nil
}

// redeemLocked uses up the code of sign-in r as its tokens are issued.
// Of two exchanges racing with one code, only the first gets here with
// the code live: the second is a replay and revokes the first's tokens.
func (s *storage) redeemLocked(r *authRequest) error {
	now := s.now()
	a, ok := s.authRequests[r.id]
	if !ok || a.redeemed || a.code == "" || s.codes[a.code] != r.id {
		s.revokeGrantLocked(r.id)
		return oidc.ErrInvalidGrant().WithDescription("the authorization code was already used")
	}
	if !now.Before(a.codeExpires) || !now.Before(a.expires) {
		return oidc.ErrInvalidGrant().WithDescription("the authorization code is expired")
	}
	delete(s.codes, a.code)
	s.rememberLocked(s.spentCodes, a.code, a.id, now.Add(max(s.refreshTTL, s.accessTTL)))
	// a.code stays set, so that SaveAuthCode issues no second code.
	a.redeemed = true
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteAuthRequestLocked(id)
	return nil
}

// grantOf returns what tokens for request r descend from.
func grantOf(r op.TokenRequest) (grantID, clientID string, ok bool) {
	switch r := r.(type) {
	case *authRequest:
		return r.id, r.clientID, true
	case *refreshRequest:
		return r.grantID, r.clientID, true
	}
	return "", "", false
}

func (s *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	grantID, clientID, ok := grantOf(r)
	if !ok {
		return "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	s.currentUsers()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.knownLocked(r.GetSubject()) {
		return "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("the user no longer exists")
	}
	if a, ok := r.(*authRequest); ok {
		if err := s.redeemLocked(a); err != nil {
			return "", time.Time{}, err
		}
	}
	t, err := s.newAccessTokenLocked(grantID, clientID, r.GetSubject(), r.GetScopes())
	if err != nil {
		return "", time.Time{}, err
	}
	return t.id, t.expires, nil
}

func (s *storage) newAccessTokenLocked(grantID, clientID, subject string, scopes []string) (*accessToken, error) {
	now := s.now()
	if !s.roomLocked(now, func() int { return len(s.accessTokens) }, maxTokens) {
		return nil, busyError(errBusy)
	}
	t := &accessToken{
		id:       rand.Text(),
		grantID:  grantID,
		clientID: clientID,
		subject:  subject,
		scopes:   slices.Clone(scopes),
		expires:  now.Add(s.accessTTL),
	}
	s.accessTokens[t.id] = t
	return t, nil
}

// CreateAccessAndRefreshTokens issues the first refresh token of a sign-in
// (code flow with offline_access) or rotates one: the presented token is
// used up and a new one issued (RFC 9700 section 4.14.2). A used refresh
// token presented again revokes the whole chain, since either the client
// or a thief holds a copy.
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, r op.TokenRequest, current string) (string, string, time.Time, error) {
	s.currentUsers()
	s.mu.Lock()
	defer s.mu.Unlock()
	// Checked under mu: a removal swapped in after this point also revokes
	// what is issued here (setAccounts).
	if !s.knownLocked(r.GetSubject()) {
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("the user no longer exists")
	}
	now := s.now()
	var rt *refreshToken
	switch r := r.(type) {
	case *authRequest:
		if current != "" {
			return "", "", time.Time{}, oidc.ErrInvalidGrant()
		}
		if !s.roomLocked(now, func() int { return len(s.refreshTokens) }, maxTokens) {
			return "", "", time.Time{}, busyError(errBusy)
		}
		if err := s.redeemLocked(r); err != nil {
			return "", "", time.Time{}, err
		}
		rt = &refreshToken{
			grantID:  r.id,
			clientID: r.clientID,
			subject:  r.subject,
			scopes:   slices.Clone(r.scopes),
			amr:      r.GetAMR(),
			authTime: r.authTime,
		}
	case *refreshRequest:
		old, err := s.liveRefreshLocked(current)
		if err != nil {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithParent(err)
		}
		if old.grantID != r.grantID || old.clientID != r.clientID || old.subject != r.subject {
			return "", "", time.Time{}, oidc.ErrInvalidGrant()
		}
		delete(s.refreshTokens, current)
		delete(s.accessTokens, old.accessID)
		s.rememberLocked(s.spentRefresh, current, old.grantID, old.expires)
		c := *old
		rt = &c
	default:
		return "", "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	// A rotation frees the slot it takes, so only a new chain needed room.
	at, err := s.newAccessTokenLocked(rt.grantID, rt.clientID, rt.subject, r.GetScopes())
	if err != nil {
		return "", "", time.Time{}, err
	}
	rt.token = rand.Text()
	rt.accessID = at.id
	rt.expires = now.Add(s.refreshTTL)
	s.refreshTokens[rt.token] = rt
	return at.id, rt.token, at.expires, nil
}

// liveRefreshLocked returns the refresh token v if it is valid. A spent
// one revokes its chain.
func (s *storage) liveRefreshLocked(v string) (*refreshToken, error) {
	rt, ok := s.refreshTokens[v]
	if !ok {
		if sp, used := s.spentRefresh[v]; used {
			s.revokeGrantLocked(sp.grantID)
			return nil, errors.New("the refresh token was already used; every token of its sign-in is revoked")
		}
		return nil, errInvalidToken
	}
	if !s.now().Before(rt.expires) {
		delete(s.refreshTokens, v)
		return nil, errInvalidToken
	}
	return rt, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, v string) (op.RefreshTokenRequest, error) {
	s.currentUsers() // a person removed from the users file refreshes no more
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, err := s.liveRefreshLocked(v)
	if err != nil {
		return nil, err
	}
	if !s.knownLocked(rt.subject) {
		return nil, errInvalidToken
	}
	return &refreshRequest{
		token:    v,
		grantID:  rt.grantID,
		clientID: rt.clientID,
		subject:  rt.subject,
		scopes:   slices.Clone(rt.scopes),
		amr:      rt.amr,
		authTime: rt.authTime,
	}, nil
}

// TerminateSession is sign-out at the end_session endpoint: every token of
// the person for the client goes (all clients when clientID is empty).
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	if userID == "" {
		return nil // no id_token_hint: no session to end, there being none
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeSubjectLocked(userID, clientID)
	return nil
}

// revokeSubjectLocked deletes every token of the person subject for the
// client (all clients when clientID is empty).
func (s *storage) revokeSubjectLocked(subject, clientID string) {
	for id, t := range s.accessTokens {
		if t.subject == subject && (clientID == "" || t.clientID == clientID) {
			delete(s.accessTokens, id)
		}
	}
	for v, t := range s.refreshTokens {
		if t.subject == subject && (clientID == "" || t.clientID == clientID) {
			delete(s.refreshTokens, v)
		}
	}
}

// GetRefreshTokenInfo identifies a refresh token for the revocation
// endpoint; its id is its value.
func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, rt.token, nil
}

// RevokeToken revokes an access token (by id) or a refresh token (by
// value) for the client that holds it (RFC 7009). Revoking a refresh
// token revokes its whole sign-in; an unknown token is not an error.
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _ string, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.accessTokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("the token was not issued to this client")
		}
		delete(s.accessTokens, tokenOrID)
		return nil
	}
	if rt, ok := s.refreshTokens[tokenOrID]; ok {
		if rt.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("the token was not issued to this client")
		}
		s.revokeGrantLocked(rt.grantID)
	}
	return nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{s.key.alg}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

// --- op.OPStorage ---

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errUnknownClient
	}
	return c, nil
}

// AuthorizeClientIDSecret compares secrets in constant time; hashing first
// hides the length too.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.Secret == "" {
		return errClientCredential
	}
	want, got := sha256.Sum256([]byte(c.Secret)), sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		return errClientCredential
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in op in favour of
// SetUserinfoFromRequest, and must do nothing.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, r op.IDTokenRequest, scopes []string) error {
	return s.setClaims(info, r.GetSubject(), scopes)
}

// SetUserinfoFromToken fills the userinfo response for a live access token.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	t, err := s.liveAccessToken(tokenID, subject)
	if err != nil {
		return err
	}
	return s.setClaims(info, subject, t.scopes)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	t, err := s.liveAccessToken(tokenID, subject)
	if err != nil {
		return err
	}
	if t.clientID != clientID {
		return errors.New("the token was not issued to this client")
	}
	info := new(oidc.UserInfo)
	if err := s.setClaims(info, subject, t.scopes); err != nil {
		return err
	}
	resp.SetUserInfo(info)
	resp.Scope = t.scopes
	resp.ClientID = t.clientID
	resp.Expiration = oidc.FromTime(t.expires)
	return nil
}

func (s *storage) liveAccessToken(id, subject string) (accessToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.accessTokens[id]
	if !ok || t.subject != subject || !s.now().Before(t.expires) {
		return accessToken{}, errInvalidToken
	}
	return *t, nil
}

// setClaims puts the person's claims in info: email and email_verified for
// the email scope, name and preferred_username for profile, and groups
// always, since no standard scope covers it and Portcullis needs it.
func (s *storage) setClaims(info *oidc.UserInfo, subject string, scopes []string) error {
	a, ok := s.currentUsers().bySubject[subject]
	if !ok {
		return errors.New("unknown user")
	}
	info.Subject = a.subject
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeEmail:
			info.Email = a.Email
			// The administrator vouches for every address in the file.
			info.EmailVerified = oidc.Bool(true)
		case oidc.ScopeProfile:
			info.Name = a.Name
			info.PreferredUsername = a.Email
		}
	}
	groups := slices.Clone(a.Groups)
	if groups == nil {
		groups = []string{} // an empty list, not null: the person has no groups
	}
	info.AppendClaims(claimGroups, groups)
	return nil
}

// GetPrivateClaimsFromScopes is for JWT access tokens, which this provider
// does not issue.
func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID would verify private_key_jwt client assertions and
// JWT bearer grants, neither of which is supported.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT client authentication and grants are not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT bearer grant is not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// busyError answers a request that would grow the storage past its bounds.
func busyError(err error) *oidc.Error {
	return oidc.ErrServerError().WithDescription("%s", err)
}
