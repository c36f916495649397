// Package testenv starts the real components Portcullis is tested against:
// etcd and kube-apiserver (with RBAC, service-account keys and an admin
// credential), real kubectl, and an OpenID Connect provider over HTTP, all on
// loopback addresses and random free ports.
//
// The Kubernetes binaries are built from pinned Go modules (the tools/
// directory holds one module per upstream project) into the user cache
// directory, keyed by the module files' hash, once per machine; a file lock
// keeps parallel test binaries from building twice.
//
// testenv is for tests, the bench harness and the local demo. The product
// never imports it. It must not hide a missing component: when something
// cannot be started, the error says what is missing and how to get it.
package testenv
