// Package policy decides whether a request may reach a route: it compiles
// a route's Pomerium Policy Language (PPL) policy and legacy access keys
// once, at load, and evaluates the result for each request.
//
// It owns:
//   - the language's semantics, Pomerium's exactly where Pomerium defines
//     them: a rule or a list of rules; allow and deny, deny winning, rules
//     of one action ORed; and, or, not (none holds) and nor (not all
//     hold), nested to any depth; the criteria accept, reject,
//     authenticated_user, email, domain, user, groups, claim/<name>,
//     http_method, http_path, source_ip, cors_preflight,
//     client_certificate, date, day_of_week and time_of_day; the string
//     matchers is, not, contains, starts_with, ends_with, in and not_in
//     and the list matchers has, is and exclude, a bare value meaning is
//     and has; and the legacy keys allowed_users, allowed_domains,
//     allow_any_authenticated_user and allow_public_unauthenticated_access,
//     which become one allow rule as in Pomerium's Policy.ToPPL;
//   - the Kubernetes criteria Pomerium lacks: kubernetes_verb,
//     kubernetes_resource, kubernetes_subresource, kubernetes_namespace,
//     kubernetes_name and kubernetes_api_group, string matchers on the
//     attributes kube-apiserver authorizes on (kube.ParseRequestInfo);
//   - compile errors: one config.Problem per mistake, naming the route,
//     the place in the policy (policy[0].allow.and[1].emial) and the line;
//   - Decisions with Pomerium's constant reasons ("email-ok",
//     "groups-unauthorized") and the rule that decided.
//
// The specification is testdata/conformance/*.yaml: policies, requests
// and the decisions or errors they give, each file citing the Pomerium
// documentation or code it follows. Where Pomerium is silent (date,
// day_of_week and time_of_day are Enterprise features) or accepts what
// cannot be meant (an empty and, authenticated_user: false, a list where
// a string is expected), the files say what Portcullis does instead.
//
// Evaluation reads a plain Request: no reflection, no maps of interfaces,
// and no allocation on the hot path; the reasons of a decision are a bit
// set turned into a cached, shared slice.
//
// It must not:
//   - import net/http or look at an http.Request: the server turns the
//     request and the verified identity into a Request;
//   - authenticate anyone, fetch data (directory groups, sessions) or log:
//     everything it decides on is in the Request, and the server logs the
//     Decision (it implements slog.LogValuer);
//   - parse YAML: config stores the policy as a tree with source lines,
//     and this package compiles that tree.
package policy
