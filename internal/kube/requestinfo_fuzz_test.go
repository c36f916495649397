package kube

import (
	"net/url"
	"slices"
	"testing"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzParseRequestInfo parses any method, path and query: it must never
// panic, and what it returns must hang together. The query decoding is
// checked against apimachinery's own parameter codec, the one
// kube-apiserver decodes list options with.
func FuzzParseRequestInfo(f *testing.F) {
	for _, tc := range requestInfoCases {
		f.Add(tc.method, tc.path, tc.rq)
	}
	f.Add("GET", "/api/v1/pods", "labelSelector=a+notin+(b),c!=d,e>1&fieldSelector=metadata.name%3Dx&timeoutSeconds=9223372036854775808")
	f.Add("GET", "/api/v1/pods", "limit=-1&sendInitialEvents=x&allowWatchBookmarks=&resourceVersionMatch=NotOlderThan&shardSelector=s")
	f.Add("GET", "///api///v1///", "%zz=1&watch=%")
	verbs := []string{"", "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy"}
	f.Fuzz(func(t *testing.T, method, path, rawQuery string) {
		ri, err := ParseRequestInfo(method, path, rawQuery)
		if ri.Path != path {
			t.Errorf("Path = %q, want %q", ri.Path, path)
		}
		if err != nil {
			return
		}
		if !ri.IsResourceRequest {
			if ri.Resource != "" || ri.Name != "" || ri.Namespace != "" || len(ri.Parts) != 0 {
				t.Errorf("non-resource request with resource attributes: %+v", ri)
			}
			return
		}
		if !slices.Contains(verbs, ri.Verb) {
			t.Errorf("Verb = %q: not a Kubernetes verb", ri.Verb)
		}
		if ri.APIPrefix != "api" && ri.APIPrefix != "apis" {
			t.Errorf("APIPrefix = %q", ri.APIPrefix)
		}
		if len(ri.Parts) == 0 || ri.Resource != ri.Parts[0] {
			t.Fatalf("Resource %q is not the first of Parts %q", ri.Resource, ri.Parts)
		}
		// The name is the second part, or, when that is empty, may come
		// from the field selector of a list or watch.
		if len(ri.Parts) >= 2 && ri.Parts[1] != "" && ri.Name != ri.Parts[1] {
			t.Errorf("Name %q is not the second of Parts %q", ri.Name, ri.Parts)
		}
		if ri.Subresource != "" && (len(ri.Parts) < 3 || ri.Subresource != ri.Parts[2]) {
			t.Errorf("Subresource %q is not the third of Parts %q", ri.Subresource, ri.Parts)
		}

		// The list options: decoded as apimachinery decodes them, the
		// verb and the name from the field selector must agree.
		if (len(ri.Parts) >= 2 && ri.Parts[1] != "") || (ri.Verb != "list" && ri.Verb != "watch") || slices.Contains(splitPath(path), "watch") {
			return
		}
		q, _ := url.ParseQuery(rawQuery)
		var opts metainternalversion.ListOptions
		if len(q) > 0 {
			if err := metainternalversionscheme.ParameterCodec.DecodeParameters(q, metav1.SchemeGroupVersion, &opts); err != nil {
				if ri.Name != "" {
					t.Errorf("Name = %q from a query apimachinery cannot decode (%v)", ri.Name, err)
				}
				return
			}
		}
		if want := map[bool]string{true: "watch", false: "list"}[opts.Watch]; ri.Verb != want {
			t.Errorf("Verb = %q, apimachinery decodes watch=%v", ri.Verb, opts.Watch)
		}
		wantName := ""
		if opts.FieldSelector != nil {
			if n, ok := opts.FieldSelector.RequiresExactMatch("metadata.name"); ok && isPathSegmentName(n) {
				wantName = n
			}
		}
		if ri.Name != wantName {
			t.Errorf("Name = %q, want %q from the field selector", ri.Name, wantName)
		}
	})
}
