// Package broker hands out the credential for one Portcullis route: the
// cached token while it is good, else a new one from a browser sign-in,
// with at most one sign-in at a time per route across every process.
//
// A cached token is good when it is more than a minute (or half its life,
// if that is shorter) from its exp, so kubectl never sends one that
// expires in flight.
//
// A renewable token (one that came with a renewal credential, from a
// current Portcullis) is short-lived, and is handed out without asking
// the server: no network call while it is good. Near its exp the broker
// trades the renewal credential for the next token, without a browser,
// under the same lock as a sign-in, so that two processes never spend
// one credential (the second use would end the session). A sign-out is
// noticed through kubectl itself: client-go runs the plugin again, in
// the same kubectl process, only after the server answered 401, so the
// broker remembers which process (Broker.Caller) it handed the token to,
// and when that process asks again it asks the server and signs in.
//
// A token without a renewal credential (a server that does not offer
// renewal) is checked with the server on every use — GET /.pomerium/
// with the token, one round trip the server answers from memory —
// because a check done only now and then would let the first command
// after a sign-out fail.
//
// A server that cannot be reached fails the command with that reason
// (kubectl could not have reached it either); it is never a reason to
// sign in.
//
// Sign-ins are serialised with the cache's per-URL lock. A process that
// finds no good token takes the lock, looks at the cache again (another
// process may have signed in while it waited), and only then signs in.
// Ten kubectl commands started together therefore open one browser.
//
// It must not talk to kubectl or write anything but messages to stderr.
package broker
