// Package audit owns Portcullis's audit log: one event per request on a
// Kubernetes route, per stream and per sign-in, written in Kubernetes' own
// format so that whatever reads kube-apiserver's audit log reads
// Portcullis's too.
//
//   - Event is an audit.k8s.io/v1 Event, written as kube-apiserver writes
//     it; what Portcullis knows beyond Kubernetes (the decision and its
//     reason, the route) goes in Annotations.
//   - Policy is the audit.k8s.io/v1 Policy file kube-apiserver reads with
//     --audit-policy-file, parsed strictly and matched with kube-apiserver's
//     rules; Policy.Level says how much of a request to record.
//   - Sink writes events: NewFileSink to a rotated JSON-lines file or
//     stdout (as --audit-log-path), NewWebhookSink to a webhook named by a
//     kubeconfig file (as --audit-webhook-config-file).
//   - Backend sits between the request path and a sink: Log never blocks,
//     a full queue drops events and counts them, failed writes are retried
//     with back-off.
//
// It must not decide who a user is or whether a request is allowed, build
// an event from an http.Request, or serve HTTP: the server fills Events in
// from what authenticate, policy and kube have already worked out, so this
// package imports none of Portcullis's server, config or session packages
// (it uses net/http only as the webhook's client). It must never record a
// raw session id or token: UserInfo carries SessionHash of the session id,
// and the webhook's credentials appear in no error or log.
package audit
