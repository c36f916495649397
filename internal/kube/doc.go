// Package kube owns what is specific to Kubernetes in handling a request
// that Portcullis forwards to kube-apiserver:
//
//   - impersonation: StripCredentials removes every header by which a
//     client could authenticate upstream or pick the identity Kubernetes
//     sees; Impersonator.Set adds the service account's bearer token and
//     Impersonate-User / Impersonate-Group for the verified user, and
//     refuses to when there is no user;
//   - the service account token: TokenSource, a static token, and
//     FileToken, which follows a rotating projected token without reading
//     the file on every request;
//   - ParseRequestInfo, which turns a request into the attributes the
//     policy checks (verb, resource, subresource, namespace, name, API
//     group) exactly as kube-apiserver's RequestInfoFactory does.
//
// It must not proxy (that is package proxy: transports, ReverseProxy,
// upgrades), answer a client (respond writes every error, as a Kubernetes
// Status), decide who a user is or hold any session state (authenticate
// and session), or decide whether a request is allowed (policy). Its
// functions work on headers or request attributes handed to them and keep
// no global state; secrets they handle never appear in their errors or
// logs.
package kube
