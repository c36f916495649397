// Package postgres is the PostgreSQL session store replicas share: a
// session.Store, so that a person signed in through one Portcullis replica
// is signed in on all of them, and signed out of all of them at once.
//
// It owns
//
//   - the schema (tables prefixed portcullis_) and its versioned
//     migrations, applied once at Open however many replicas start
//     together;
//   - the copy of sessions each replica keeps in memory, so that Get, which
//     is on every request's path, makes no database round trip, and the
//     LISTEN/NOTIFY channel and periodic reconcile that evict a changed
//     or revoked session from every replica's copy;
//   - what the store does while the database is down: sessions it holds
//     keep working for a grace period, everything else fails closed with
//     an error wrapping session.ErrUnavailable, never session.ErrNoSession;
//   - sign-in states redeemed (replay protection across replicas) and
//     leases (one refresh of a session at a time across replicas).
//
// It must not:
//
//   - store a session ID, a lease name (which holds one) or a sign-in
//     state in the clear: rows are keyed by their SHA-256, so a database
//     dump gives nothing to present to Portcullis;
//   - store the identity provider's tokens or the person's identity in the
//     clear: a session's row holds it sealed with COOKIE_SECRET
//     (session.Sealer), so that a dump leaks no refresh tokens; the email
//     is also kept as a prefixed hash (emailHash), only to find one
//     person's sessions (DeleteUser);
//   - log a token, a session ID (at most the first 8 characters of its
//     hash) or the connection string's password;
//   - decide who may do what, or talk to an identity provider: it keeps
//     what packages authenticate and session give it.
package postgres
