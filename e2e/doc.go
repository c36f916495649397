// Package e2e holds Portcullis's end-to-end tests: the real portcullis
// binary against a real kube-apiserver, etcd, kubectl and OpenID provider
// started by internal/testenv. The tests read like a person's session and
// never skip: a component that cannot start fails the test with the reason.
package e2e
