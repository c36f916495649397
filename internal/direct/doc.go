// Package direct writes the files kube-apiserver needs to use Portcullis
// in direct mode: the structured authentication configuration that
// validates Portcullis tokens itself (a JWT authenticator), the
// structured authorization configuration that asks Portcullis's
// authorization webhook about every request of a person signed in with
// Portcullis, and the webhook's kubeconfig.
//
// It only writes text from values the server computed; it does not read
// configuration, serve, or decide anything.
package direct
