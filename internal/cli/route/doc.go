// Package route is portcullis-cli's side of a Portcullis route: the
// server URL in canonical form, the TLS settings to reach it
// (--ca-cert, --alternate-ca-path, --disable-tls-verification), and the
// requests the CLI makes to it:
//
//   - LoginURL asks /.pomerium/api/v1/login for the address to open in a
//     browser, giving the loopback URI the token is to be sent to;
//   - WhoAmI asks /.pomerium/ whether the server still accepts a token. The
//     server answers from the session, so a token whose session was signed
//     out or expired is refused at once; this is the check a cached
//     credential goes through (not /healthz, which says nothing about it);
//   - DeviceAuthorize and DeviceToken are a device sign-in's (RFC 8628):
//     the route's device and user codes, then its answer to each poll.
//
// Errors a person can act on are worded for them: an unreachable server,
// an unknown certificate authority (naming --ca-cert), a route without
// sign-in configured.
//
// It must not open browsers, listen, or touch files other than the CA
// certificates it is pointed at; tokens never appear in its errors.
package route
