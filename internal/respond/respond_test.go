package respond

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

var fromBrowserCases = []struct {
	name   string
	header http.Header
	want   bool
}{
	{name: "kubectl", header: http.Header{
		"Accept":        {"application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
		"Authorization": {"Bearer Pomerium-x.y.z"},
	}, want: false},
	{name: "kubectl with no token yet", header: http.Header{"Accept": {"application/json, */*"}}, want: false},
	{name: "portcullis-cli asking for the sign-in URL", header: http.Header{"Accept": {"text/plain"}}, want: false},
	{name: "curl", header: http.Header{"Accept": {"*/*"}}, want: false},
	{name: "no Accept", header: http.Header{}, want: false},
	{name: "browser", header: http.Header{"Accept": {browserAccept}}, want: true},
	{name: "browser with session cookie", header: http.Header{
		"Accept": {browserAccept}, "Cookie": {"_pomerium=x"},
	}, want: true},
	{name: "html with a bearer token", header: http.Header{
		"Accept": {browserAccept}, "Authorization": {"Bearer x"},
	}, want: false},
	{name: "html with Pomerium authorization scheme", header: http.Header{
		"Accept": {"text/html"}, "Authorization": {"Pomerium x.y.z"},
	}, want: false},
	{name: "html with an unknown scheme", header: http.Header{
		"Accept": {"text/html"}, "Authorization": {"Token abc"},
	}, want: false},
	{name: "html with X-Pomerium-Authorization", header: http.Header{
		"Accept": {"text/html"}, "X-Pomerium-Authorization": {"x.y.z"},
	}, want: false},
	// A browser answers a server's challenge from its own store and then
	// sends these with every request to the host, by itself.
	{name: "browser with Basic credentials of an upstream application", header: http.Header{
		"Accept": {browserAccept}, "Authorization": {"Basic YWxpY2U6cGFzcw=="},
	}, want: true},
	{name: "browser with Negotiate (Kerberos)", header: http.Header{
		"Accept": {browserAccept}, "Authorization": {"negotiate YIIB"},
	}, want: true},
	{name: "browser with Digest", header: http.Header{
		"Accept": {browserAccept}, "Authorization": {`Digest username="alice"`},
	}, want: true},
	{name: "Basic and Bearer", header: http.Header{
		"Accept": {browserAccept}, "Authorization": {"Basic x", "Bearer y"},
	}, want: false},
	{name: "html refused with q=0", header: http.Header{"Accept": {"text/html;q=0, application/json"}}, want: false},
	{name: "html in a second Accept line", header: http.Header{"Accept": {"application/json", "TEXT/HTML; charset=utf-8"}}, want: true},
	{name: "malformed Accept", header: http.Header{"Accept": {";;;,text/html/x"}}, want: false},
}

func TestFromBrowser(t *testing.T) {
	for _, tt := range fromBrowserCases {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "https://k8s.example.com/api/v1/pods", nil)
			r.Header = tt.header
			if got := FromBrowser(r); got != tt.want {
				t.Errorf("FromBrowser(%v) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

// FuzzFromBrowser: any Accept and Authorization values, as any client can
// send them, never panic, and a Portcullis token always makes a program.
func FuzzFromBrowser(f *testing.F) {
	for _, tt := range fromBrowserCases {
		f.Add(strings.Join(tt.header.Values("Accept"), "\n"), strings.Join(tt.header.Values("Authorization"), "\n"))
	}
	f.Fuzz(func(t *testing.T, accept, auth string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for v := range strings.SplitSeq(accept, "\n") {
			r.Header.Add("Accept", v)
		}
		if auth != "" {
			for v := range strings.SplitSeq(auth, "\n") {
				r.Header.Add("Authorization", v)
			}
		}
		FromBrowser(r) // must not panic
		r.Header.Add("Authorization", "Bearer Pomerium-x.y.z")
		if FromBrowser(r) {
			t.Errorf("Accept %q, Authorization %q and a Portcullis token: FromBrowser is true", accept, auth)
		}
		r.Header.Del("Authorization")
		r.Header.Set("X-Pomerium-Authorization", "x.y.z")
		if FromBrowser(r) {
			t.Errorf("Accept %q with X-Pomerium-Authorization: FromBrowser is true", accept)
		}
	})
}

// One Problem, two answers: the page for a browser, the Status for
// kubectl, each with its security headers.
func TestErrorPageForABrowser(t *testing.T) {
	p := Problem{Code: http.StatusForbidden, Message: "portcullis: a connection upgrade from a page of another origin is refused",
		Title: "Request refused", Text: `A page of <another> site tried "this". It was refused.`}
	r := httptest.NewRequest(http.MethodGet, "https://k8s.example.com/", nil)
	r.Header.Set("Accept", browserAccept)
	rec := httptest.NewRecorder()
	Error(rec, r, p)
	if rec.Code != http.StatusForbidden {
		t.Errorf("status: got %d, want 403", rec.Code)
	}
	wantHeader := http.Header{
		"Content-Type":            {"text/html; charset=utf-8"},
		"Cache-Control":           {"no-store"},
		"X-Content-Type-Options":  {"nosniff"},
		"Content-Security-Policy": {"frame-ancestors 'none'"},
		"X-Frame-Options":         {"DENY"},
	}
	if diff := cmp.Diff(wantHeader, rec.Header()); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	golden(t, filepath.Join("testdata", "page-403.html"), rec.Body.Bytes())
	if body := rec.Body.String(); strings.Contains(body, "<another>") || strings.Contains(body, p.Message) {
		t.Errorf("the page shows the text unescaped or the program's message:\n%s", body)
	}

	rec = httptest.NewRecorder()
	Error(rec, kubectlRequest(), p)
	if got := decodeStatus(t, rec); got.Message != p.Message || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("kubectl got %s %q, want the Status with message %q", rec.Header().Get("Content-Type"), got.Message, p.Message)
	}
}

func TestErrorPageDefaults(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "https://app.example.com/", nil)
	r.Header.Set("Accept", browserAccept)
	rec := httptest.NewRecorder()
	Error(rec, r, Problem{Code: http.StatusBadGateway, Message: "portcullis: upstream https://app.internal: connection refused"})
	body := rec.Body.String()
	for _, want := range []string{
		"<title>Bad Gateway · Portcullis</title>",
		"<h1>Bad Gateway</h1>",
		"<p>portcullis: upstream https://app.internal: connection refused</p>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
}

func TestPage(t *testing.T) {
	rec := httptest.NewRecorder()
	Page(rec, http.StatusOK, "Signed out", "You are signed out of Portcullis.")
	if rec.Code != http.StatusOK || rec.Header().Get("X-Frame-Options") != "DENY" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("got %d with headers %v, want 200 with the page headers", rec.Code, rec.Header())
	}
	if body := rec.Body.String(); !strings.Contains(body, "<h1>Signed out</h1><p>You are signed out of Portcullis.</p>") {
		t.Errorf("page:\n%s", body)
	}
}
