// Package limit owns the bounds on what clients can make Portcullis hold
// or do: who a client is (its address, an IPv6 address counting as its
// /64), how often one client may do a thing (Rate), and how many
// connections are open, in all and per client (Listener).
//
// It decides; it does not answer. Callers refuse what it refuses, with the
// one error writer (internal/respond), and count it in their metrics. It
// must not believe anything a client writes about itself: no forwarding
// header names a client.
package limit
