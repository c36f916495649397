// Package builtin is the OpenID provider built into Portcullis
// (IDP_PROVIDER=builtin), so that the whole sign-in flow runs on a laptop, in
// a demo or in a test without a cloud identity provider.
//
// It is a real OpenID Connect provider built on zitadel's OpenID-certified
// op package, not hand-rolled OAuth: discovery, JWKS, the authorization
// code flow with PKCE, refresh tokens, userinfo, revocation and
// end_session all come from op. This package supplies what op leaves to
// its user: the people (a YAML users file with bcrypt password hashes, see
// LoadUsers), the registered clients, a login page, and in-memory storage.
//
// What it guarantees:
//   - Every client must use PKCE with S256; only the authorization code
//     flow is offered (no implicit flow). Client secrets are compared in
//     constant time.
//   - An authorization code works once and for a minute; an exchange the
//     provider refuses (wrong verifier, wrong secret) does not use it up. A
//     used code presented again revokes the tokens issued for it (RFC 6749
//     section 10.5). Refresh tokens rotate on every use; a used one
//     presented again revokes its whole chain. Revocation (RFC 7009) and
//     end_session revoke tokens at once.
//   - The ID token and the userinfo response carry email and
//     email_verified (scope email), name and preferred_username (scope
//     profile), and groups (a list, always), so that a client needs no
//     userinfo call to learn who signed in.
//   - The login page is one form. It is bound to the sign-in request and
//     to the browser that opened it (a cookie), accepts POST from the same
//     origin only, checks the password with one bcrypt comparison whether
//     or not the email is known, and answers "wrong email or password"
//     either way. Five wrong passwords end the sign-in request.
//   - Password guessing is slowed across sign-in requests. Wrong passwords
//     are counted per email (compared as the users file compares emails,
//     and counted alike whether or not the email is a user's, so that a
//     pause does not tell the two apart) and per client address. After
//     five, that email or address is paused for a second, doubling with
//     every further wrong password up to fifteen minutes; during a pause
//     no password is checked, the right one included, and the form says
//     when to try again (429). A count is forgotten an hour after its last
//     wrong password; signing in clears the email's count, not the
//     address's. Someone guessing at an account can keep it paused for its
//     owner: that is the price of stopping the guessing.
//   - At most half the CPUs (GOMAXPROCS) compare passwords at once; a
//     check that finds no free slot within a second is refused (503) and
//     the form says to try again.
//   - One client cannot lock others out of signing in. One client address
//     may have at most 32 sign-ins in progress, and a sign-in request no
//     browser has opened the login page for lives a minute instead of
//     ten. The ceiling of 10,000 sign-ins in progress remains, the last
//     line of defence, reached only from over 300 addresses at once (an
//     IPv6 attacker with a large block has them). At either limit the
//     authorize endpoint answers with a page of its own asking to try
//     again in a minute (429 for the address, 503 for the ceiling), not
//     with an error redirect to the application.
//   - The client address is the connection's (http.Request.RemoteAddr),
//     an IPv6 address counting as its /64: Portcullis terminates TLS
//     itself, and no forwarding header is believed. (Behind a proxy, every
//     person would share the proxy's address and its limits.)
//   - Storage is bounded: sign-ins in progress expire after ten minutes
//     (one until a browser opens them), tokens when their life ends, and
//     each kind of entry has a ceiling past which new ones are refused
//     rather than memory growing. The counts of wrong passwords hold at
//     most 10,000 emails and 10,000 addresses; when one is full, forgotten
//     counts go first, then the one with the fewest wrong passwords.
//
// There is no browser session (single sign-on): every sign-in asks for the
// password, and prompt=none is answered with login_required. Everything
// lives in memory and is lost on restart; there is one process only. New
// logs a warning saying this provider is for development and demos.
//
// The users file is followed (Config.UsersFile): an edit takes effect
// within about a second, with no restart. Removing a person is how an
// administrator revokes them: they can no longer sign in or refresh, and
// every token issued to them is revoked at once. Changed groups reach a
// client at its next refresh.
//
// It must not be used as Portcullis's identity in production, nor grow
// user management: users come from the file, and only from it.
package builtin
