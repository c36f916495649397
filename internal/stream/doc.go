// Package stream keeps track of the long-lived requests a server has open
// (watches, followed logs, exec, attach and port-forward sessions, other
// upgraded connections) with who opened them, and ends them when that
// person's access ends: a sign-out, an expired session, a policy that now
// denies the request.
//
// Ending a stream means the upstream's bytes stop at the next message
// boundary of the stream's protocol, the person gets a last message saying
// why where the protocol can carry one (an ERROR event in a watch, a Status
// on an exec's error channel, a line in a followed log), and the
// connections close. Deciding when access has ended is not this package's
// job: the server decides and calls End.
//
// It must not make access decisions, read configuration or know about
// sessions beyond the identifiers it is given.
package stream
