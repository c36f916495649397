package kube

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// requestInfoCases are requests with the RequestInfo kube-apiserver v1.37
// (k8s.io/apiserver v0.37.2, RequestInfoFactory with prefixes api and apis,
// api groupless) gives for them. They include every case of upstream's
// requestinfo_test.go; each want value was checked against upstream's
// NewRequestInfo. Fields: verb, apiPrefix, apiGroup, apiVersion,
// namespace, resource, subresource, name, parts.
var requestInfoCases = []struct {
	name             string
	method, path, rq string
	want             RequestInfo
	wantErr          bool
}{
	// Upstream's resource paths.
	{name: "list namespaces", method: "GET", path: "/api/v1/namespaces",
		want: res("list", "api", "", "v1", "", "namespaces", "", "", "namespaces")},
	{name: "get namespace", method: "GET", path: "/api/v1/namespaces/other",
		want: res("get", "api", "", "v1", "other", "namespaces", "", "other", "namespaces", "other")},
	{name: "list pods in namespace", method: "GET", path: "/api/v1/namespaces/other/pods",
		want: res("list", "api", "", "v1", "other", "pods", "", "", "pods")},
	{name: "get pod", method: "GET", path: "/api/v1/namespaces/other/pods/foo",
		want: res("get", "api", "", "v1", "other", "pods", "", "foo", "pods", "foo")},
	{name: "head pod", method: "HEAD", path: "/api/v1/namespaces/other/pods/foo",
		want: res("get", "api", "", "v1", "other", "pods", "", "foo", "pods", "foo")},
	{name: "list pods all namespaces", method: "GET", path: "/api/v1/pods",
		want: res("list", "api", "", "v1", "", "pods", "", "", "pods")},
	{name: "head pods all namespaces", method: "HEAD", path: "/api/v1/pods",
		want: res("list", "api", "", "v1", "", "pods", "", "", "pods")},

	// Upstream's special verbs.
	{name: "proxy verb", method: "GET", path: "/api/v1/proxy/namespaces/other/pods/foo",
		want: res("proxy", "api", "", "v1", "other", "pods", "", "foo", "pods", "foo")},
	{name: "proxy verb has no subresource", method: "GET", path: "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource",
		want: res("proxy", "api", "", "v1", "other", "pods", "", "foo", "pods", "foo", "subpath", "not", "a", "subresource")},
	{name: "watch verb in path", method: "GET", path: "/api/v1/watch/pods",
		want: res("watch", "api", "", "v1", "", "pods", "", "", "pods")},
	{name: "watch=true", method: "GET", path: "/api/v1/pods", rq: "watch=true",
		want: res("watch", "api", "", "v1", "", "pods", "", "", "pods")},
	{name: "watch=false", method: "GET", path: "/api/v1/pods", rq: "watch=false",
		want: res("list", "api", "", "v1", "", "pods", "", "", "pods")},
	{name: "watch verb in path with namespace", method: "GET", path: "/api/v1/watch/namespaces/other/pods",
		want: res("watch", "api", "", "v1", "other", "pods", "", "", "pods")},
	{name: "watch=1", method: "GET", path: "/api/v1/namespaces/other/pods", rq: "watch=1",
		want: res("watch", "api", "", "v1", "other", "pods", "", "", "pods")},
	{name: "watch=0", method: "GET", path: "/api/v1/namespaces/other/pods", rq: "watch=0",
		want: res("list", "api", "", "v1", "other", "pods", "", "", "pods")},

	// Upstream's subresources.
	{name: "pod status", method: "GET", path: "/api/v1/namespaces/other/pods/foo/status",
		want: res("get", "api", "", "v1", "other", "pods", "status", "foo", "pods", "foo", "status")},
	{name: "pod proxy subresource", method: "GET", path: "/api/v1/namespaces/other/pods/foo/proxy/subpath",
		want: res("get", "api", "", "v1", "other", "pods", "proxy", "foo", "pods", "foo", "proxy", "subpath")},
	{name: "namespace finalize", method: "PUT", path: "/api/v1/namespaces/other/finalize",
		want: res("update", "api", "", "v1", "other", "namespaces", "finalize", "other", "namespaces", "other", "finalize")},
	{name: "namespace status", method: "PUT", path: "/api/v1/namespaces/other/status",
		want: res("update", "api", "", "v1", "other", "namespaces", "status", "other", "namespaces", "other", "status")},

	// Upstream's verbs.
	{name: "patch", method: "PATCH", path: "/api/v1/namespaces/other/pods/foo",
		want: res("patch", "api", "", "v1", "other", "pods", "", "foo", "pods", "foo")},
	{name: "delete", method: "DELETE", path: "/api/v1/namespaces/other/pods/foo",
		want: res("delete", "api", "", "v1", "other", "pods", "", "foo", "pods", "foo")},
	{name: "create", method: "POST", path: "/api/v1/namespaces/other/pods",
		want: res("create", "api", "", "v1", "other", "pods", "", "", "pods")},
	{name: "deletecollection nodes", method: "DELETE", path: "/api/v1/nodes",
		want: res("deletecollection", "api", "", "v1", "", "nodes", "", "", "nodes")},
	{name: "deletecollection namespaces", method: "DELETE", path: "/api/v1/namespaces",
		want: res("deletecollection", "api", "", "v1", "", "namespaces", "", "", "namespaces")},
	{name: "deletecollection pods", method: "DELETE", path: "/api/v1/namespaces/other/pods",
		want: res("deletecollection", "api", "", "v1", "other", "pods", "", "", "pods")},
	{name: "deletecollection in a group", method: "DELETE", path: "/apis/extensions/v1/namespaces/other/pods",
		want: res("deletecollection", "apis", "extensions", "v1", "other", "pods", "", "", "pods")},
	{name: "api group", method: "POST", path: "/apis/extensions/v1/namespaces/other/pods",
		want: res("create", "apis", "extensions", "v1", "other", "pods", "", "", "pods")},
	{name: "api version", method: "POST", path: "/apis/extensions/v1beta3/namespaces/other/pods",
		want: res("create", "apis", "extensions", "v1beta3", "other", "pods", "", "", "pods")},
	{name: "groupless resource", method: "GET", path: "/api/version/resource",
		want: res("list", "api", "", "version", "", "resource", "", "", "resource")},
	{name: "group resource subresource", method: "GET", path: "/apis/group/version/resource/name/subresource",
		want: res("get", "apis", "group", "version", "", "resource", "subresource", "name", "resource", "name", "subresource")},
	{name: "groupless subresource", method: "GET", path: "/api/version/resource/name/subresource",
		want: res("get", "api", "", "version", "", "resource", "subresource", "name", "resource", "name", "subresource")},
	{name: "group list", method: "GET", path: "/apis/batch/v1/job",
		want: res("list", "apis", "batch", "v1", "", "job", "", "", "job")},
	{name: "group get", method: "GET", path: "/apis/batch/v1/job/foo",
		want: res("get", "apis", "batch", "v1", "", "job", "", "foo", "job", "foo")},
	{name: "group scale", method: "GET", path: "/apis/batch/v1/job/foo/scale",
		want: res("get", "apis", "batch", "v1", "", "job", "scale", "foo", "job", "foo", "scale")},

	// Upstream's selector cases.
	{name: "no selector", method: "GET", path: "/apis/group/version/resource",
		want: res("list", "apis", "group", "version", "", "resource", "", "", "resource")},
	{name: "metadata.name selector", method: "GET", path: "/apis/group/version/resource", rq: "fieldSelector=metadata.name=name1",
		want: sel(res("list", "apis", "group", "version", "", "resource", "", "name1", "resource"), "metadata.name=name1", "")},
	{name: "metadata.name selector with watch", method: "GET", path: "/apis/group/version/resource", rq: "watch=true&fieldSelector=metadata.name=name1",
		want: sel(res("watch", "apis", "group", "version", "", "resource", "", "name1", "resource"), "metadata.name=name1", "")},
	{name: "other selectors", method: "GET", path: "/apis/group/version/resource", rq: "fieldSelector=foo=bar&labelSelector=baz=qux",
		want: sel(res("list", "apis", "group", "version", "", "resource", "", "", "resource"), "foo=bar", "baz=qux")},
	{name: "invalid field selector drops the name", method: "GET", path: "/apis/group/version/resource", rq: "fieldSelector=metadata.name=name1,foo",
		want: sel(res("list", "apis", "group", "version", "", "resource", "", "", "resource"), "metadata.name=name1,foo", "")},
	{name: "invalid field selector keeps watch", method: "GET", path: "/apis/group/version/resource", rq: "fieldSelector=metadata.name=name1,foo&watch=true",
		want: sel(res("watch", "apis", "group", "version", "", "resource", "", "", "resource"), "metadata.name=name1,foo", "")},
	{name: "invalid field selector and watch=false", method: "GET", path: "/apis/group/version/resource", rq: "fieldSelector=metadata.name=name1,foo&watch=false",
		want: sel(res("list", "apis", "group", "version", "", "resource", "", "", "resource"), "metadata.name=name1,foo", "")},
	{name: "selectors on deletecollection", method: "DELETE", path: "/apis/group/version/resource", rq: "fieldSelector=foo=bar&labelSelector=baz=qux",
		want: sel(res("deletecollection", "apis", "group", "version", "", "resource", "", "", "resource"), "foo=bar", "baz=qux")},
	{name: "repeated selectors: the first counts", method: "GET", path: "/apis/group/version/resource", rq: "fieldSelector=metadata.name=foo&fieldSelector=metadata.name=bar&labelSelector=foo=bar&labelSelector=foo=baz",
		want: sel(res("list", "apis", "group", "version", "", "resource", "", "foo", "resource"), "metadata.name=foo", "foo=bar")},
	{name: "selectors ignored on get", method: "GET", path: "/apis/group/version/resource/name", rq: "fieldSelector=foo=bar&labelSelector=foo=bar",
		want: res("get", "apis", "group", "version", "", "resource", "", "name", "resource", "name")},
	{name: "selectors ignored on watch in path", method: "GET", path: "/apis/group/version/watch/resource", rq: "fieldSelector=metadata.name=foo&labelSelector=foo=bar",
		want: res("watch", "apis", "group", "version", "", "resource", "", "", "resource")},
	{name: "watch in path with name", method: "GET", path: "/apis/group/version/watch/resource/name", rq: "fieldSelector=metadata.name=foo&labelSelector=foo=bar",
		want: res("watch", "apis", "group", "version", "", "resource", "", "name", "resource", "name")},

	// kubectl's streaming commands.
	{name: "exec over SPDY", method: "POST", path: "/api/v1/namespaces/prod/pods/web-0/exec", rq: "command=sh&container=app&stdin=true&stdout=true&tty=true",
		want: res("create", "api", "", "v1", "prod", "pods", "exec", "web-0", "pods", "web-0", "exec")},
	{name: "exec over WebSocket", method: "GET", path: "/api/v1/namespaces/prod/pods/web-0/exec", rq: "command=sh&stdout=true",
		want: res("get", "api", "", "v1", "prod", "pods", "exec", "web-0", "pods", "web-0", "exec")},
	{name: "attach", method: "POST", path: "/api/v1/namespaces/prod/pods/web-0/attach", rq: "stdin=true",
		want: res("create", "api", "", "v1", "prod", "pods", "attach", "web-0", "pods", "web-0", "attach")},
	{name: "port-forward", method: "POST", path: "/api/v1/namespaces/prod/pods/web-0/portforward",
		want: res("create", "api", "", "v1", "prod", "pods", "portforward", "web-0", "pods", "web-0", "portforward")},
	{name: "logs -f", method: "GET", path: "/api/v1/namespaces/prod/pods/web-0/log", rq: "follow=true&container=app",
		want: res("get", "api", "", "v1", "prod", "pods", "log", "web-0", "pods", "web-0", "log")},
	{name: "service proxy", method: "GET", path: "/api/v1/namespaces/prod/services/https:web:443/proxy/healthz",
		want: res("get", "api", "", "v1", "prod", "services", "proxy", "https:web:443", "services", "https:web:443", "proxy", "healthz")},
	{name: "node proxy", method: "GET", path: "/api/v1/nodes/node-1/proxy/metrics",
		want: res("get", "api", "", "v1", "", "nodes", "proxy", "node-1", "nodes", "node-1", "proxy", "metrics")},
	{name: "deployment scale", method: "PATCH", path: "/apis/apps/v1/namespaces/dev/deployments/web/scale",
		want: res("patch", "apis", "apps", "v1", "dev", "deployments", "scale", "web", "deployments", "web", "scale")},
	{name: "cluster-scoped CRD object", method: "PUT", path: "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
		want: res("update", "apis", "rbac.authorization.k8s.io", "v1", "", "clusterroles", "", "admin", "clusterroles", "admin")},
	{name: "self subject access review", method: "POST", path: "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
		want: res("create", "apis", "authorization.k8s.io", "v1", "", "selfsubjectaccessreviews", "", "", "selfsubjectaccessreviews")},
	{name: "watch a single pod by field selector", method: "GET", path: "/api/v1/namespaces/prod/pods", rq: "fieldSelector=metadata.name%3Dweb-0&watch=1&resourceVersion=42",
		want: sel(res("watch", "api", "", "v1", "prod", "pods", "", "web-0", "pods"), "metadata.name=web-0", "")},
	{name: "field selector with ==", method: "GET", path: "/api/v1/pods", rq: "fieldSelector=spec.nodeName%3Dn1,metadata.name%3D%3Dweb-0",
		want: sel(res("list", "api", "", "v1", "", "pods", "", "web-0", "pods"), "spec.nodeName=n1,metadata.name==web-0", "")},
	{name: "field selector != names nothing", method: "GET", path: "/api/v1/pods", rq: "fieldSelector=metadata.name!%3Dweb-0",
		want: sel(res("list", "api", "", "v1", "", "pods", "", "", "pods"), "metadata.name!=web-0", "")},
	{name: "field selector name with % is not a name", method: "GET", path: "/api/v1/pods", rq: "fieldSelector=metadata.name%3Da%25b",
		want: sel(res("list", "api", "", "v1", "", "pods", "", "", "pods"), "metadata.name=a%b", "")},
	{name: "field selector name .. is not a name", method: "GET", path: "/api/v1/pods", rq: "fieldSelector=metadata.name%3D..",
		want: sel(res("list", "api", "", "v1", "", "pods", "", "", "pods"), "metadata.name=..", "")},
	{name: "bad limit drops the name", method: "GET", path: "/api/v1/pods", rq: "fieldSelector=metadata.name%3Dweb&limit=x&watch=TRUE",
		want: sel(res("watch", "api", "", "v1", "", "pods", "", "", "pods"), "metadata.name=web", "")},
	{name: "bad label selector drops the name", method: "GET", path: "/api/v1/pods", rq: "fieldSelector=metadata.name%3Dweb&labelSelector=a%3D%3D%3D",
		want: sel(res("list", "api", "", "v1", "", "pods", "", "", "pods"), "metadata.name=web", "a===")},
	{name: "set-based label selector is fine", method: "GET", path: "/api/v1/pods", rq: "fieldSelector=metadata.name%3Dweb&labelSelector=env+in+(a,b),!canary&timeoutSeconds=30",
		want: sel(res("list", "api", "", "v1", "", "pods", "", "web", "pods"), "metadata.name=web", "env in (a,b),!canary")},
	{name: "empty watch value means watch", method: "GET", path: "/api/v1/pods", rq: "watch=",
		want: res("watch", "api", "", "v1", "", "pods", "", "", "pods")},
	{name: "watch=FALSE folds case", method: "GET", path: "/api/v1/pods", rq: "watch=FALSE",
		want: res("list", "api", "", "v1", "", "pods", "", "", "pods")},
	{name: "watch=falſe folds in decoding", method: "GET", path: "/api/v1/pods", rq: "watch=fal%C5%BFe",
		want: res("list", "api", "", "v1", "", "pods", "", "", "pods")},
	{name: "watch=falſe does not fold on a decoding error", method: "GET", path: "/api/v1/pods", rq: "watch=fal%C5%BFe&limit=x",
		want: res("watch", "api", "", "v1", "", "pods", "", "", "pods")},
	{name: "malformed query pair is dropped", method: "GET", path: "/api/v1/pods", rq: "a;b=c&watch=yes",
		want: res("watch", "api", "", "v1", "", "pods", "", "", "pods")},
	{name: "watch query on a named get is ignored", method: "GET", path: "/api/v1/namespaces/ns/pods/p", rq: "watch=true",
		want: res("get", "api", "", "v1", "ns", "pods", "", "p", "pods", "p")},
	{name: "watch in path with subresource", method: "GET", path: "/api/v1/watch/namespaces/ns/pods/p/status",
		want: res("watch", "api", "", "v1", "ns", "pods", "status", "p", "pods", "p", "status")},
	{name: "proxy in path, node", method: "GET", path: "/api/v1/proxy/nodes/n1/stats",
		want: res("proxy", "api", "", "v1", "", "nodes", "", "n1", "nodes", "n1", "stats")},
	{name: "namespaces without a name", method: "GET", path: "/api/v1/watch/namespaces",
		want: res("watch", "api", "", "v1", "", "namespaces", "", "", "namespaces")},
	{name: "empty namespace segment", method: "GET", path: "/api/v1/namespaces//pods",
		want: res("list", "api", "", "v1", "", "pods", "", "", "pods")},
	{name: "trailing slash", method: "GET", path: "/api/v1/namespaces/ns/pods/",
		want: res("list", "api", "", "v1", "ns", "pods", "", "", "pods")},
	{name: "unknown method", method: "OPTIONS", path: "/api/v1/namespaces/ns/pods/p",
		want: res("", "api", "", "v1", "ns", "pods", "", "p", "pods", "p")},
	{name: "lower-case method", method: "get", path: "/api/v1/namespaces/ns/pods",
		want: res("", "api", "", "v1", "ns", "pods", "", "", "pods")},
	{name: "delete with name from nowhere", method: "DELETE", path: "/api/v1/pods", rq: "fieldSelector=metadata.name%3Dx",
		want: sel(res("deletecollection", "api", "", "v1", "", "pods", "", "", "pods"), "metadata.name=x", "")},

	// Non-resource requests: Path, a lower-case Verb, and APIPrefix when
	// the path starts with apis/ and has at least three segments.
	{name: "root", method: "GET", path: "/", want: RequestInfo{Path: "/", Verb: "get"}},
	{name: "empty path", method: "GET", path: "", want: RequestInfo{Path: "", Verb: "get"}},
	{name: "version", method: "GET", path: "/version", want: RequestInfo{Path: "/version", Verb: "get"}},
	{name: "healthz", method: "HEAD", path: "/healthz", want: RequestInfo{Path: "/healthz", Verb: "head"}},
	// The API server's health checks, which kubectl get --raw reaches
	// through a Kubernetes route: non-resource URLs, like /healthz.
	{name: "livez verbose", method: "GET", path: "/livez", rq: "verbose", want: RequestInfo{Path: "/livez", Verb: "get"}},
	{name: "readyz verbose", method: "GET", path: "/readyz", rq: "verbose&exclude=etcd", want: RequestInfo{Path: "/readyz", Verb: "get"}},
	{name: "readyz one check", method: "GET", path: "/readyz/etcd", want: RequestInfo{Path: "/readyz/etcd", Verb: "get"}},
	{name: "healthz post-start hook", method: "GET", path: "/healthz/poststarthook/rbac/bootstrap-roles",
		want: RequestInfo{Path: "/healthz/poststarthook/rbac/bootstrap-roles", Verb: "get"}},
	{name: "api", method: "GET", path: "/api", want: RequestInfo{Path: "/api", Verb: "get"}},
	{name: "api version", method: "GET", path: "/api/v1", want: RequestInfo{Path: "/api/v1", Verb: "get"}},
	{name: "just api version with slash", method: "GET", path: "/api/version/", want: RequestInfo{Path: "/api/version/", Verb: "get"}},
	{name: "apis", method: "GET", path: "/apis", want: RequestInfo{Path: "/apis", Verb: "get"}},
	{name: "api group", method: "GET", path: "/apis/apps", want: RequestInfo{Path: "/apis/apps", Verb: "get"}},
	{name: "api group version", method: "GET", path: "/apis/extensions/v1beta1", want: RequestInfo{Path: "/apis/extensions/v1beta1", Verb: "get", APIPrefix: "apis"}},
	{name: "api group version with slash", method: "GET", path: "/apis/group/version/", want: RequestInfo{Path: "/apis/group/version/", Verb: "get", APIPrefix: "apis"}},
	{name: "missing api group", method: "GET", path: "/apis/version/resource", want: RequestInfo{Path: "/apis/version/resource", Verb: "get", APIPrefix: "apis"}},
	{name: "bad prefix", method: "GET", path: "/badprefix/version/resource", want: RequestInfo{Path: "/badprefix/version/resource", Verb: "get"}},
	{name: "not api", method: "POST", path: "/not-api/version/resource", want: RequestInfo{Path: "/not-api/version/resource", Verb: "post"}},
	{name: "openapi", method: "GET", path: "/openapi/v3/apis/apps/v1", want: RequestInfo{Path: "/openapi/v3/apis/apps/v1", Verb: "get"}},

	// Errors: upstream answers 500 and serves nothing.
	{name: "watch with nothing after", method: "GET", path: "/api/v1/watch", wantErr: true,
		want: RequestInfo{IsResourceRequest: true, Path: "/api/v1/watch", Verb: "get", APIPrefix: "api", APIVersion: "v1"}},
	{name: "proxy with nothing after", method: "POST", path: "/apis/apps/v1/proxy/", wantErr: true,
		want: RequestInfo{IsResourceRequest: true, Path: "/apis/apps/v1/proxy/", Verb: "post", APIPrefix: "apis", APIGroup: "apps", APIVersion: "v1"}},
}

// res builds a resource RequestInfo; Path is filled in by the test.
func res(verb, prefix, group, version, namespace, resource, subresource, name string, parts ...string) RequestInfo {
	return RequestInfo{
		IsResourceRequest: true, Verb: verb, APIPrefix: prefix, APIGroup: group, APIVersion: version,
		Namespace: namespace, Resource: resource, Subresource: subresource, Name: name, Parts: parts,
	}
}

func sel(ri RequestInfo, field, label string) RequestInfo {
	ri.FieldSelector, ri.LabelSelector = field, label
	return ri
}

func TestParseRequestInfo(t *testing.T) {
	if len(requestInfoCases) < 40 {
		t.Fatalf("%d cases, want at least 40", len(requestInfoCases))
	}
	for _, tc := range requestInfoCases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			want.Path = tc.path
			got, err := ParseRequestInfo(tc.method, tc.path, tc.rq)
			if (err != nil) != tc.wantErr {
				t.Errorf("ParseRequestInfo(%q, %q, %q): error %v, want error: %v", tc.method, tc.path, tc.rq, err, tc.wantErr)
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseRequestInfo(%q, %q, %q) (-want +got):\n%s", tc.method, tc.path, tc.rq, diff)
			}
		})
	}
}

func BenchmarkParseRequestInfo(b *testing.B) {
	for _, bc := range []struct{ name, method, path, rq string }{
		{"get", "GET", "/api/v1/namespaces/prod/pods/web-0", ""},
		{"list", "GET", "/api/v1/namespaces/prod/pods", "limit=500"},
		{"watch", "GET", "/api/v1/namespaces/prod/pods", "watch=1&resourceVersion=42&fieldSelector=metadata.name%3Dweb-0"},
		{"exec", "POST", "/api/v1/namespaces/prod/pods/web-0/exec", "command=sh&stdin=true"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseRequestInfo(bc.method, bc.path, bc.rq); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
