// Package credential owns the data portcullis-cli exchanges with kubectl
// and reads from the server's tokens:
//
//   - ParseExecInfo reads KUBERNETES_EXEC_INFO, the ExecCredential kubectl
//     hands an exec plugin, and says which API version to answer in
//     (client.authentication.k8s.io/v1 or v1beta1);
//   - Marshal writes the ExecCredential kubectl reads back: the token as
//     "Pomerium-<jwt>" and its expiry;
//   - ParseToken decodes a Portcullis token's payload without verifying it,
//     to learn its expiry and whom it names.
//
// The decode is unverified on purpose: the client cannot verify the
// server's signature (it has no key) and does not need to — the server
// verifies every token it is sent. The client only uses exp to know when
// to stop sending a token, and the email to tell the person who they are
// signed in as. Nothing here grants access.
//
// It must not do I/O (no files, no network, no environment): callers pass
// the strings in.
package credential
