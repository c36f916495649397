// Package server owns Portcullis's listeners and everything between an
// accepted connection and a route's handler:
//
//   - the main listener (TLS 1.2+ with HTTP/2 and HTTP/1.1 by ALPN, or plain
//     HTTP when INSECURE_SERVER is set) and the optional metrics listener;
//   - the middleware order (recover → request id → access log → metrics →
//     refuse what no upstream serves → bounded body reads → router),
//     composed in one function, pipeline;
//   - routing by Host to a route, and Portcullis's own health endpoints
//     (health.go): /ping and /.pomerium/healthz on every host, /healthz on
//     every host but a Kubernetes route's, where it is kube-apiserver's;
//     /ping, /healthz and /readyz on the metrics listener;
//   - Prometheus metrics on their own registry;
//   - graceful shutdown, including connections that handlers hijacked for
//     SPDY and WebSocket upgrades, which net/http no longer tracks.
//
// It must not decide who a user is, whether a request is allowed, or how a
// request reaches an upstream: authentication, authorization and proxying
// are separate packages that plug in behind the router (see routeHandler).
// It keeps no global state: every Server has its own logger and its own
// metrics registry, so tests can run several side by side.
package server
