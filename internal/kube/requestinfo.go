package kube

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

// RequestInfo is what kube-apiserver reads from a request's method, path
// and query before it authorizes the request: the attributes RBAC sees,
// and the ones the policy's kubernetes_* criteria match on.
//
// ParseRequestInfo fills it exactly as k8s.io/apiserver's
// RequestInfoFactory (pkg/endpoints/request/requestinfo.go) does with the
// prefixes kube-apiserver configures, "api" and "apis" with "api" the only
// groupless one. We do not import k8s.io/apiserver for this: it would pull
// the whole API server machinery into the proxy binary. The table test in
// requestinfo_test.go holds upstream's own cases and more, with the values
// upstream gives.
type RequestInfo struct {
	// IsResourceRequest is false for non-resource URLs (/version, /healthz,
	// /apis, /api/v1 …): then only Path and Verb are set, and APIPrefix
	// for /apis/a/b, as upstream does.
	IsResourceRequest bool
	// Path is the request's URL path, as given.
	Path string
	// Verb is the Kubernetes verb for a resource request: get, list,
	// watch, create, update, patch, delete, deletecollection, or proxy
	// for the deprecated /api/v1/proxy/... form; "" for a method that maps
	// to none (OPTIONS, CONNECT, a lower-case "get"). For a non-resource
	// request it is the HTTP method in lower case.
	//
	// Streaming subresources do not have verbs of their own: kubectl exec,
	// attach and port-forward are "create" over SPDY (POST) and "get" over
	// WebSocket (GET), on the subresources exec, attach and portforward;
	// kubectl logs is "get" on log. Policies should match the subresource.
	Verb string

	// APIPrefix is "api" or "apis".
	APIPrefix string
	// APIGroup is "" for the core group (/api).
	APIGroup   string
	APIVersion string
	// Namespace is "" for cluster-scoped requests and for requests across
	// all namespaces.
	Namespace string
	// Resource is the resource's plural name ("pods"), not its kind.
	Resource string
	// Subresource is "status", "exec", "log", "portforward", "proxy", …
	Subresource string
	// Name is the object's name when the path names one, or when a list or
	// watch selects exactly one name with fieldSelector=metadata.name=….
	Name string
	// Parts are the path segments from the resource on:
	// resource/name/subresource/….
	Parts []string

	// FieldSelector and LabelSelector are the raw selectors of a list,
	// watch or deletecollection; "" for other verbs.
	FieldSelector string
	LabelSelector string
}

// errNoKind is the error upstream returns for /api/v1/watch and
// /api/v1/proxy with nothing after them; kube-apiserver answers such a
// request with 500 and does not serve it.
var errNoKind = errors.New("unable to determine kind and namespace from url")

// ParseRequestInfo parses a request to kube-apiserver. method is the HTTP
// method as sent (upstream compares it case-sensitively), path the decoded
// URL path (http.Request.URL.Path) and rawQuery the query without "?".
//
// On error the RequestInfo holds what was known before the failure, as
// upstream's does; kube-apiserver refuses such a request, and so should
// the caller.
func ParseRequestInfo(method, path, rawQuery string) (RequestInfo, error) {
	// A non-resource request until proven otherwise.
	info := RequestInfo{Path: path, Verb: strings.ToLower(method)}

	parts := splitPath(path)
	if len(parts) < 3 {
		return info, nil
	}
	switch parts[0] {
	case "api":
		info.APIPrefix = parts[0]
		parts = parts[1:]
	case "apis":
		info.APIPrefix = parts[0]
		parts = parts[1:]
		// A group needs four parts in all: apis/group/version/resource.
		if len(parts) < 3 {
			return info, nil
		}
		info.APIGroup = parts[0]
		parts = parts[1:]
	default:
		return info, nil
	}

	info.IsResourceRequest = true
	info.APIVersion = parts[0]
	parts = parts[1:]

	// The deprecated /{verb}/… forms: /api/v1/watch/pods,
	// /api/v1/proxy/namespaces/ns/pods/name.
	verbInPath := false
	if parts[0] == "proxy" || parts[0] == "watch" {
		if len(parts) < 2 {
			return info, errNoKind
		}
		info.Verb = parts[0]
		parts = parts[1:]
		verbInPath = true
	} else {
		info.Verb = methodVerb(method)
	}

	// /namespaces/{namespace}/{resource}/…: the parts become relative to
	// the resource, unless what follows the namespace is one of the
	// namespace's own subresources (status, finalize).
	if parts[0] == "namespaces" && len(parts) > 1 {
		info.Namespace = parts[1]
		if len(parts) > 2 && parts[2] != "status" && parts[2] != "finalize" {
			parts = parts[2:]
		}
	}
	info.Parts = parts

	// resource/name/subresource/…; the proxy verb has no subresource: what
	// follows the name is the path proxied to.
	if len(parts) >= 3 && info.Verb != "proxy" {
		info.Subresource = parts[2]
	}
	if len(parts) >= 2 {
		info.Name = parts[1]
	}
	info.Resource = parts[0]

	// A get without a name is a list, or a watch when the query says so.
	var query url.Values
	if info.Name == "" && info.Verb == "get" {
		// Upstream reads the query with http.Request.URL.Query, which
		// drops malformed pairs.
		query, _ = url.ParseQuery(rawQuery)
		watch, fieldSelector, err := listOptions(query)
		if err != nil {
			// Upstream logs the error and falls back to reading watch
			// alone, comparing in lower case rather than folding case.
			watch = false
			if v := query["watch"]; len(v) > 0 {
				switch strings.ToLower(v[0]) {
				case "false", "0":
				default:
					watch = true
				}
			}
		}
		if watch {
			info.Verb = "watch"
		} else {
			info.Verb = "list"
		}
		if err == nil {
			if name, ok := fieldSelector.RequiresExactMatch("metadata.name"); ok && isPathSegmentName(name) {
				info.Name = name
			}
		}
	}

	// A delete without a name deletes a collection.
	if info.Name == "" && info.Verb == "delete" {
		info.Verb = "deletecollection"
	}

	// Selectors count only for the verbs that honour them, and not on the
	// deprecated /watch/ form.
	if !verbInPath && (info.Verb == "list" || info.Verb == "watch" || info.Verb == "deletecollection") {
		if query == nil {
			query, _ = url.ParseQuery(rawQuery)
		}
		if v := query["fieldSelector"]; len(v) > 0 {
			info.FieldSelector = v[0]
		}
		if v := query["labelSelector"]; len(v) > 0 {
			info.LabelSelector = v[0]
		}
	}
	return info, nil
}

// methodVerb maps an HTTP method to the verb of a request on an object.
func methodVerb(method string) string {
	switch method {
	case "POST":
		return "create"
	case "GET", "HEAD":
		return "get"
	case "PUT":
		return "update"
	case "PATCH":
		return "patch"
	case "DELETE":
		return "delete"
	}
	return ""
}

// QueryBool reads a boolean query parameter (watch, follow) as
// kube-apiserver decodes it into its options: anything but "0" and
// "false", in any case, is true, the empty value too.
func QueryBool(v string) bool {
	return !(v == "0" || strings.EqualFold(v, "false"))
}

// listOptions decodes the query into list options the way kube-apiserver
// does (metav1.ListOptions from url.Values, then the internal
// ListOptions): only watch and the field selector matter here, but any
// value that fails to decode makes the whole decoding fail, which changes
// the outcome. The values that can fail are the two selectors and the two
// integers; a boolean never fails (anything but "0" and "false", in any
// case, is true).
func listOptions(q url.Values) (watch bool, fieldSelector fields.Selector, err error) {
	if len(q) == 0 {
		return false, fields.Everything(), nil
	}
	first := func(key string) (string, bool) {
		if v := q[key]; len(v) > 0 {
			return v[0], true
		}
		return "", false
	}
	if v, ok := first("watch"); ok {
		watch = QueryBool(v)
	}
	for _, key := range []string{"timeoutSeconds", "limit"} {
		if v, ok := first(key); ok {
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return false, nil, err
			}
		}
	}
	ls, _ := first("labelSelector")
	if _, err := labels.Parse(ls); err != nil {
		return false, nil, err
	}
	fs, _ := first("fieldSelector")
	fieldSelector, err = fields.ParseSelector(fs)
	if err != nil {
		return false, nil, err
	}
	return watch, fieldSelector, nil
}

// isPathSegmentName reports whether name can be a path segment, as
// k8s.io/apimachinery/pkg/api/validate/content.IsPathSegmentName does: not
// "." or "..", and without "/" or "%".
func isPathSegmentName(name string) bool {
	return name != "." && name != ".." && !strings.ContainsAny(name, "/%")
}

// splitPath returns the segments of a URL path without its leading and
// trailing slashes; empty segments inside are kept.
func splitPath(path string) []string {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}
