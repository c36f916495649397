// Package kube owns what is specific to Kubernetes in handling a request
// that Portcullis forwards to kube-apiserver:
//
//   - impersonation: StripCredentials removes every header by which a
//     client could authenticate upstream or pick the identity Kubernetes
//     sees; SetImpersonation adds the service account's bearer token and
//     Impersonate-User / Impersonate-Group for the verified user, and
//     refuses to when there is no user;
//   - the service account token: TokenSource, a static token, and
//     FileToken, which follows a rotating projected token without reading
//     the file on every request;
//   - Kubernetes Status errors: WriteStatus and the helpers for 401, 403
//     and upstream failures, with messages a kubectl user can act on, and
//     WantsKubernetesStatus to tell kubectl from a browser;
//   - ParseRequestInfo, which turns a request into the attributes the
//     policy checks (verb, resource, subresource, namespace, name, API
//     group) exactly as kube-apiserver's RequestInfoFactory does.
//
// It must not proxy (that is package proxy: transports, ReverseProxy,
// upgrades), decide who a user is or hold any session state (authenticate
// and session), or decide whether a request is allowed (policy). Its
// functions work on headers, a request or a ResponseWriter handed to them
// and keep no global state; secrets they handle never appear in their
// errors or logs.
package kube
