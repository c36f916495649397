// Package cache keeps portcullis-cli's credentials between runs: one JSON
// file per server URL under os.UserCacheDir()/portcullis-cli/exec-credential,
// named by the SHA-256 of the URL, in a 0700 directory with 0600 files.
//
// Writes are atomic (a temporary file in the same directory, synced, then
// renamed over the old one), so a reader sees the old credential or the
// new one and never half of either. Lock takes an exclusive lock on a
// companion .lock file per URL (flock(2) on Unix, LockFileEx on Windows):
// kubectl may run several copies of the plugin at once (a script, a shell
// loop, `kubectl get` in parallel), and the lock lets the first sign in
// while the others wait and reuse its credential instead of each opening a
// browser. On Windows, which refuses to replace a file another process has
// open, the rename and the read that meet are retried for a moment.
//
// It must not decide whether a credential is still good (package broker
// does), talk to the network, or log: a credential is a secret, and this
// package's errors name files, never their contents.
package cache
