// Package kubeconfig writes what `portcullis-cli k8s setup` adds to a
// kubeconfig: a cluster (the route's URL and, if given, its CA), a user
// whose exec stanza runs `portcullis-cli k8s exec-credential URL`, and a
// context joining them, all under one name. It writes through client-go's
// clientcmd, the code kubectl itself reads and writes kubeconfig with, and
// fills in what current kubectl insists on (apiVersion
// client.authentication.k8s.io/v1, interactiveMode IfAvailable).
//
// Setup is idempotent: the same options leave the file as it is, and
// other clusters, users and contexts (and the current context) are kept.
//
// It must not talk to the network or run anything.
package kubeconfig
