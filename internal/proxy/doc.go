// Package proxy forwards a route's requests to its upstreams: a transport
// per route built once (connection pooling, HTTP/2 to the upstream, HTTP/1.1
// for upgrades), failover to the next `to` URL when a connection cannot be
// made, streaming and upgraded connections (watch, logs -f, exec, attach,
// port-forward over WebSocket and SPDY), and for Kubernetes routes the
// rewrite that makes kube-apiserver see the person: client credentials out,
// the service-account token and Impersonate-* headers in.
//
// It trusts the identity that authentication put in the request context and
// makes no access decision of its own, except the one that keeps the
// service account's own rights from leaking: a Kubernetes route never
// forwards a request without a verified identity.
package proxy
