package session

import (
	"crypto/rand"
	"errors"
	"strings"
	"time"
)

// A DeviceGrant is one device sign-in, the OAuth 2.0 Device Authorization
// Grant (RFC 8628) that Portcullis serves itself: a client with no
// browser (portcullis-cli over SSH) asks for one, a person approves it in
// a browser on any device, and the client, polling with its device code,
// gets a token for the approving person's session.
//
// The store keeps it from the request until DeviceRetention after it
// expires, so that a late poll is told "expired" rather than "unknown".
type DeviceGrant struct {
	// DeviceCode is the secret the requesting client polls with
	// (RFC 8628 device_code): only that client has it, so only that
	// client can redeem the grant. A shared store keeps its hash only.
	DeviceCode string
	// UserCode is what the person types (user_code), as NewUserCode
	// makes it, without its dash. A shared store keeps its hash only.
	UserCode string
	// Audience is the route the token is for.
	Audience string
	// Client and UserAgent describe the requesting client, for the
	// person who approves: the connection's address, and its User-Agent
	// header cut to MaxUserAgent bytes.
	Client    string
	UserAgent string
	// CreatedAt is when the client asked; ExpiresAt when the grant can no
	// longer be approved or redeemed.
	CreatedAt time.Time
	ExpiresAt time.Time
	// Interval is the least time between two polls (RFC 8628 interval);
	// a poll sooner gets slow_down and adds DeviceSlowDown to it.
	Interval time.Duration
	// LastPoll is when the client last polled; zero before its first.
	LastPoll time.Time
	Status   DeviceStatus
	// SessionID is the approving person's session (DeviceApproved, and
	// DeviceAnswered after an approval).
	SessionID string
	// Email is who approved or denied it, for the log.
	Email string
}

// DeviceStatus is where a DeviceGrant is in its life.
type DeviceStatus uint8

const (
	// DevicePending: no one has approved or denied it yet.
	DevicePending DeviceStatus = iota
	// DeviceApproved: a person approved it; the next poll gets the token.
	DeviceApproved
	// DeviceDenied: a person denied it; the next poll gets access_denied.
	DeviceDenied
	// DeviceAnswered: a poll got the approval or the denial. The grant is
	// single-use: every later poll is refused.
	DeviceAnswered
)

// The bounds of a device sign-in.
const (
	// DeviceLifetime is how long a device sign-in can be approved and
	// polled for (RFC 8628 expires_in): long enough to find a phone and
	// sign in, short enough that a code read off a screen soon means
	// nothing.
	DeviceLifetime = 10 * time.Minute
	// DeviceInterval is the least time between polls that a device
	// sign-in starts with (RFC 8628 §3.2 interval, its default).
	DeviceInterval = 5 * time.Second
	// DeviceSlowDown is what a poll sooner than the interval adds to it
	// (RFC 8628 §3.5 slow_down), up to DeviceMaxInterval.
	DeviceSlowDown    = 5 * time.Second
	DeviceMaxInterval = time.Minute
	// DeviceRetention is how long a store keeps a grant after it expires,
	// so that its client's late poll gets expired_token.
	DeviceRetention = 10 * time.Minute
	// MaxUserAgent bounds the User-Agent a grant keeps: it is shown, not
	// parsed.
	MaxUserAgent = 256
)

// ErrNoDeviceGrant is returned for a device or user code that no store
// knows (never issued, forgotten, for another route) or, where only a
// pending grant will do, one that is not pending or has expired.
var ErrNoDeviceGrant = errors.New("no such device sign-in")

// ErrUserCodeTaken is returned by Store.PutDeviceGrant when an unexpired
// grant has the same user code: the caller draws another.
var ErrUserCodeTaken = errors.New("user code in use")

// userCodeAlphabet is RFC 8628 §6.1's example alphabet: twenty consonants,
// no vowels (no words spelled by chance) and none of the letters people
// confuse with digits.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// UserCodeLength is the number of letters in a user code: 20^8, about
// 2^34.6 codes. Guessing one needs a signed-in browser, and guesses are
// rate-limited per client address; a guess that hits shows a stranger's
// request, which its owner would not approve.
const UserCodeLength = 8

// NewUserCode returns a random user code of UserCodeLength letters of
// userCodeAlphabet, without its dash (FormatUserCode adds it).
func NewUserCode() string {
	var b [UserCodeLength]byte
	for i := range b {
		// Rejection sampling: 256 is not a multiple of 20, so bytes at or
		// above 240 are drawn again rather than biasing the first
		// sixteen letters.
		for {
			var r [1]byte
			rand.Read(r[:]) // never fails (crypto/rand, Go 1.24+)
			if r[0] < 240 {
				b[i] = userCodeAlphabet[r[0]%20]
				break
			}
		}
	}
	return string(b[:])
}

// FormatUserCode shows a user code as people read it: BCDF-GHJK.
func FormatUserCode(code string) string {
	if len(code) != UserCodeLength {
		return code
	}
	return code[:UserCodeLength/2] + "-" + code[UserCodeLength/2:]
}

// NormalizeUserCode reads a user code as a person typed it: any letter
// case, with or without the dash, spaces around or between (RFC 8628
// §6.1). It reports false for anything that cannot be a user code.
func NormalizeUserCode(typed string) (string, bool) {
	if len(typed) > 64 {
		return "", false
	}
	var b strings.Builder
	// Byte by byte, upper-casing ASCII only: strings.ToUpper would make
	// "ſ" an "S" and "ı" an "I".
	for i := 0; i < len(typed); i++ {
		c := typed[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		switch {
		case c == '-' || c == ' ' || c == '\t':
			continue
		case strings.IndexByte(userCodeAlphabet, c) >= 0:
			b.WriteByte(c)
		default:
			return "", false
		}
	}
	if b.Len() != UserCodeLength {
		return "", false
	}
	return b.String(), true
}

// NewDeviceCode returns a random device code: 256 bits, the secret only
// the requesting client holds.
func NewDeviceCode() string { return rand.Text() + rand.Text() }

// PollResult is the answer to one poll of a device sign-in (RFC 8628
// §3.5).
type PollResult uint8

const (
	// PollPending: not approved or denied yet (authorization_pending).
	PollPending PollResult = iota
	// PollSlowDown: polled sooner than the interval (slow_down).
	PollSlowDown
	// PollApproved: approved; the client gets its token, once.
	PollApproved
	// PollDenied: denied (access_denied).
	PollDenied
	// PollExpired: past its lifetime (expired_token).
	PollExpired
	// PollAnswered: answered already; the code is spent (invalid_grant).
	PollAnswered
)

// Poll advances g by one poll of its client at now and returns the
// answer. Stores call it under their lock or transaction, with their own
// clock, so that every replica keeps one state machine.
func (g *DeviceGrant) Poll(now time.Time) PollResult {
	switch {
	case g.Status == DeviceAnswered:
		return PollAnswered
	case !now.Before(g.ExpiresAt):
		return PollExpired
	}
	// A fifth of the interval's leeway: a client that sleeps the interval
	// between polls must not be told to slow down because one request
	// was slower on the network than the next.
	tooSoon := !g.LastPoll.IsZero() && now.Sub(g.LastPoll) < g.Interval-g.Interval/5
	g.LastPoll = now
	if tooSoon {
		g.Interval = min(g.Interval+DeviceSlowDown, DeviceMaxInterval)
		return PollSlowDown
	}
	switch g.Status {
	case DeviceApproved:
		g.Status = DeviceAnswered
		return PollApproved
	case DeviceDenied:
		g.Status = DeviceAnswered
		return PollDenied
	}
	return PollPending
}

// Pending reports whether g can still be approved or denied at now.
func (g *DeviceGrant) Pending(now time.Time) bool {
	return g.Status == DevicePending && now.Before(g.ExpiresAt)
}

// Decide approves g for the session sessionID of the person email, or
// denies it (sessionID ""). It returns ErrNoDeviceGrant if g is not
// pending at now: decided already, or expired.
func (g *DeviceGrant) Decide(now time.Time, approve bool, sessionID, email string) error {
	if !g.Pending(now) {
		return ErrNoDeviceGrant
	}
	g.Status, g.Email = DeviceDenied, email
	if approve {
		g.Status, g.SessionID = DeviceApproved, sessionID
	}
	return nil
}

// Clone returns a copy of g.
func (g *DeviceGrant) Clone() *DeviceGrant {
	c := *g
	return &c
}
