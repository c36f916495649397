// Package session owns the credentials a signed-in user presents to
// Portcullis.
//
// Today that is the token: the JWT that `portcullis-cli k8s exec-credential`
// hands to kubectl as "Pomerium-<jwt>" and that browsers and scripts may
// send in a header. The package
//
//   - builds the signing key (Keys, NewKeys) from SIGNING_KEY, or derives it
//     from SHARED_SECRET with HKDF so that every replica with the same
//     secret signs and verifies with the same key;
//   - issues tokens (Keys.Issue) and verifies them (Keys.Verify) with a
//     one-algorithm allow-list, required "exp", exact "iss" and "aud"
//     checks and typed errors (ErrExpired, ErrWrongAudience, …) whose
//     messages can be shown to the user;
//   - finds a token in request headers (TokenFromRequest), refusing
//     ambiguous requests instead of guessing;
//   - publishes the public key: Keys.JWKS and the /.well-known/pomerium
//     and /.well-known/pomerium/jwks.json handlers.
//
// It also remembers verified tokens (VerifyCache, which still checks expiry
// and audience on every hit), seals the values that travel through the
// browser with COOKIE_SECRET (Sealer: session cookie, CSRF cookie, OAuth
// state), and keeps sessions server-side (Store, MemoryStore), so that
// deleting a session stops every token that names it in "sid".
//
// It must not:
//
//   - decide whether a user may do something (package policy), talk to an
//     identity provider (packages authenticate and idp), or route, proxy
//     or write Kubernetes Status errors (packages server, proxy, kube): it
//     says who a token belongs to, or why it does not say;
//   - log, or put in an error, a token or a secret: errors quote only
//     claims that passed signature verification, and header values cut
//     short;
//   - keep global state: everything hangs off a Keys, which is immutable
//     and safe for concurrent use.
//
// # Tokens in tests
//
// There is no test key and no back door. A test in another package, or an
// end-to-end test, mints a token exactly as the server does: it calls
// NewKeys with the same SHARED_SECRET (or SIGNING_KEY) and issuer it gives
// the server, then Keys.Issue. Because the derived key is a pure function of
// the secret, such a token verifies on the server like any other, and a
// test that used a different secret gets ErrUnknownKey, as an attacker
// would.
//
//	keys, err := session.NewKeys(nil, sharedSecret, authenticateURL)
//	token, err := keys.Issue(session.Claims{
//		Subject:  "user-1",
//		Email:    "alice@example.com",
//		Groups:   []string{"sre"},
//		Audience: "https://k8s.example.com",
//		Expiry:   time.Now().Add(time.Hour),
//	})
//	req.Header.Set("Authorization", "Bearer Pomerium-"+token)
package session
