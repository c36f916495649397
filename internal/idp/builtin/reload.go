package builtin

import (
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-proxy/portcullis/internal/identity"
)

// usersRecheck is how often, at most, the users file is looked at.
const usersRecheck = time.Second

// accountSet is the people who can sign in, at one moment. It is never
// changed once made: a changed users file makes a new one.
type accountSet struct {
	bySubject map[string]*account
	byEmail   map[string]*account // by lower-case email
	// dummyHash is checked against when an email is unknown, so that an
	// unknown email costs as much time as a wrong password.
	dummyHash []byte
	maxCost   int
}

// newAccountSet indexes accounts. The dummy hash of prev is kept when the
// highest bcrypt cost is the same: making one costs as much as a sign-in.
func newAccountSet(accounts []*account, prev *accountSet) *accountSet {
	set := &accountSet{bySubject: map[string]*account{}, byEmail: map[string]*account{}, maxCost: bcrypt.MinCost}
	for _, a := range accounts {
		set.bySubject[a.subject] = a
		set.byEmail[identity.EmailKey(a.Email)] = a
		if c, err := bcrypt.Cost([]byte(a.PasswordHash)); err == nil && c > set.maxCost {
			set.maxCost = c
		}
	}
	if prev != nil && prev.maxCost == set.maxCost {
		set.dummyHash = prev.dummyHash
	} else {
		set.dummyHash = dummyHash(set.maxCost)
	}
	return set
}

func (set *accountSet) byEmailAddress(email string) *account {
	return set.byEmail[identity.EmailKey(email)]
}

// usersChange is what a new users file changed.
type usersChange struct {
	removed []string // emails of the people no longer in the file
	changed bool     // anyone added, removed or edited
}

// setAccounts makes accounts the people who can sign in. Everyone no
// longer among them loses every token at once: removing a person from the
// users file is how an administrator of this provider revokes them, and a
// person added back later under the same email does not get old tokens
// back. New groups or names reach clients with the next tokens (a refresh).
func (s *storage) setAccounts(accounts []*account) usersChange {
	next := newAccountSet(accounts, s.users.Load()) // bcrypt work outside mu
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.users.Load()
	ch := usersChange{removed: []string{}} // logged as [] rather than null
	for sub, a := range old.bySubject {
		if _, ok := next.bySubject[sub]; !ok {
			ch.removed = append(ch.removed, a.Email)
			s.revokeSubjectLocked(sub, "")
		}
	}
	slices.Sort(ch.removed)
	ch.changed = len(ch.removed) > 0 || len(old.bySubject) != len(next.bySubject)
	for sub, a := range next.bySubject {
		if o, ok := old.bySubject[sub]; !ok || !sameAccount(o, a) {
			ch.changed = true
		}
	}
	s.users.Store(next)
	return ch
}

func sameAccount(a, b *account) bool {
	return a.Email == b.Email && a.Name == b.Name && a.PasswordHash == b.PasswordHash && slices.Equal(a.Groups, b.Groups)
}

// usersFile follows the users file: it is looked at when the provider
// needs its people (a sign-in, a token, a refresh, userinfo), at most once
// every usersRecheck, and read again when it changed (another inode, size
// or modification time, so that both an edit in place and an editor's
// rename are seen). A file that no longer loads (a typo in the middle of
// an edit) keeps the people read before, with one warning per streak.
//
// The common path takes no lock; the one caller that looks at the file
// does not make the others wait (TryLock): they use the people as they
// were, for at most the time the check takes.
type usersFile struct {
	path   string
	logger *slog.Logger
	now    func() time.Time
	apply  func([]*account) usersChange

	checked atomic.Int64 // UnixNano of the last look at the file

	mu      sync.Mutex  // held while looking at the file
	info    os.FileInfo // the file the people came from; nil: not known yet. Guarded by mu.
	failing bool        // a failed re-read was logged. Guarded by mu.
}

func (u *usersFile) due(now time.Time) bool {
	return now.Sub(time.Unix(0, u.checked.Load())) >= usersRecheck
}

// check re-reads the users file if it is time to look and it changed.
func (u *usersFile) check() {
	if !u.due(u.now()) || !u.mu.TryLock() {
		return
	}
	defer u.mu.Unlock()
	now := u.now()
	if !u.due(now) {
		return // looked at while this goroutine waited for the lock
	}
	u.checked.Store(now.UnixNano())
	// The stat comes before the read: if the file changes while being
	// read, the next look sees a difference again.
	info, err := os.Stat(u.path)
	if err == nil && u.info != nil && os.SameFile(info, u.info) && info.Size() == u.info.Size() && info.ModTime().Equal(u.info.ModTime()) {
		return
	}
	var accounts []*account
	if err == nil {
		var users []User
		if users, err = LoadUsers(u.path); err == nil {
			accounts, err = makeAccounts(users)
		}
	}
	if err != nil {
		if !u.failing {
			u.failing = true
			u.logger.Warn("re-reading the users file failed; the users read before stay until it loads again", "path", u.path, "error", err)
		}
		return
	}
	u.info = info
	if u.failing {
		u.failing = false
		u.logger.Info("the users file loads again", "path", u.path)
	}
	if ch := u.apply(accounts); ch.changed {
		u.logger.Info("the users file changed; using the new users", "path", u.path, "users", len(accounts), "removed", ch.removed)
	}
}
