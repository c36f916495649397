// Package broker hands out the credential for one Portcullis route: the
// cached token while it is good, else a new one from a browser sign-in,
// with at most one sign-in at a time per route across every process.
//
// A cached token is good when it is more than a minute from its exp (so
// kubectl never sends one that expires in flight) and the server still
// accepts it. The server is asked on every use — GET /.pomerium/ with the
// token, one round trip the server answers from memory — because kubectl
// runs the plugin once per command and does not retry a request that got
// 401: a check done only now and then would let the first command after a
// sign-out fail. A server that cannot be reached fails the command with
// that reason (kubectl could not have reached it either).
//
// Sign-ins are serialised with the cache's per-URL lock. A process that
// finds no good token takes the lock, looks at the cache again (another
// process may have signed in while it waited), and only then signs in.
// Ten kubectl commands started together therefore open one browser.
//
// It must not talk to kubectl or write anything but messages to stderr.
package broker
