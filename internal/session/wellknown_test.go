package session

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestJWKSHandler(t *testing.T) {
	k := derivedKeys(t)
	h := k.JWKSHandler()

	rec := serve(h, http.MethodGet, "https://k8s.example.com"+JWKSPath, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET: status %d, want 200", rec.Code)
	}
	if got := rec.Body.String(); got != string(k.JWKS()) {
		t.Errorf("GET: body\n%s\nwant JWKS\n%s", got, k.JWKS())
	}
	wantHeaders := map[string]string{
		"Content-Type":                "application/json",
		"Cache-Control":               "max-age=300, public",
		"Access-Control-Allow-Origin": "*",
	}
	for name, want := range wantHeaders {
		if got := rec.Header().Get(name); got != want {
			t.Errorf("GET: %s = %q, want %q", name, got, want)
		}
	}
	tag := rec.Header().Get("ETag")
	if len(tag) < 3 || tag[0] != '"' || tag[len(tag)-1] != '"' {
		t.Fatalf("GET: ETag %q is not a strong entity tag", tag)
	}

	tests := []struct {
		name        string
		method      string
		ifNoneMatch string
		wantStatus  int
		wantBody    bool
	}{
		{"matching tag", http.MethodGet, tag, http.StatusNotModified, false},
		{"weak form of the tag", http.MethodGet, "W/" + tag, http.StatusNotModified, false},
		{"tag in a list", http.MethodGet, `"other", ` + tag, http.StatusNotModified, false},
		{"star", http.MethodGet, "*", http.StatusNotModified, false},
		{"other tag", http.MethodGet, `"other"`, http.StatusOK, true},
		{"HEAD", http.MethodHead, "", http.StatusOK, false},
		{"HEAD, matching tag", http.MethodHead, tag, http.StatusNotModified, false},
		{"POST", http.MethodPost, "", http.StatusMethodNotAllowed, true},
		{"OPTIONS", http.MethodOptions, "", http.StatusNoContent, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			if tt.ifNoneMatch != "" {
				hdr.Set("If-None-Match", tt.ifNoneMatch)
			}
			rec := serve(h, tt.method, "https://k8s.example.com"+JWKSPath, hdr)
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if gotBody := rec.Body.Len() > 0; gotBody != tt.wantBody {
				t.Errorf("body %q, want body: %t", rec.Body, tt.wantBody)
			}
			if rec.Code == http.StatusNotModified {
				// RFC 9110, section 15.4.5: a 304 repeats ETag and
				// Cache-Control.
				if got := rec.Header().Get("ETag"); got != tag {
					t.Errorf("304: ETag %q, want %q", got, tag)
				}
				if got := rec.Header().Get("Cache-Control"); got != "max-age=300, public" {
					t.Errorf("304: Cache-Control %q", got)
				}
			}
			if rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
		})
	}
}

func TestWellKnownHandler(t *testing.T) {
	k := derivedKeys(t)
	authURL, err := url.Parse("https://authenticate.example.com")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		auth    *url.URL
		target  string
		want    map[string]string
		wantTag bool
	}{
		{
			name:   "route host",
			auth:   authURL,
			target: "https://k8s.example.com" + WellKnownPath,
			want: map[string]string{
				"issuer":                           testIssuer,
				"jwks_uri":                         "https://k8s.example.com/.well-known/pomerium/jwks.json",
				"authentication_callback_endpoint": "https://authenticate.example.com/oauth2/callback",
				"frontchannel_logout_uri":          "https://k8s.example.com/.pomerium/sign_out",
			},
		},
		{
			name:   "host with port, plain HTTP behind a load balancer",
			auth:   authURL,
			target: "http://127.0.0.1:8443" + WellKnownPath,
			want: map[string]string{
				"issuer":                           testIssuer,
				"jwks_uri":                         "https://127.0.0.1:8443/.well-known/pomerium/jwks.json",
				"authentication_callback_endpoint": "https://authenticate.example.com/oauth2/callback",
				"frontchannel_logout_uri":          "https://127.0.0.1:8443/.pomerium/sign_out",
			},
		},
		{
			name:   "no authenticate URL",
			target: "https://localhost:8443" + WellKnownPath,
			want: map[string]string{
				"issuer":                           testIssuer,
				"jwks_uri":                         "https://localhost:8443/.well-known/pomerium/jwks.json",
				"authentication_callback_endpoint": "https://localhost:8443/oauth2/callback",
				"frontchannel_logout_uri":          "https://localhost:8443/.pomerium/sign_out",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := k.WellKnownHandler(tt.auth)
			rec := serve(h, http.MethodGet, tt.target, nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", rec.Code, rec.Body)
			}
			var got map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body is not a JSON object of strings: %v\n%s", err, rec.Body)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("document (-want +got):\n%s", diff)
			}
			if got := rec.Header().Get("Cache-Control"); got != "max-age=300, public" {
				t.Errorf("Cache-Control %q", got)
			}
			tag := rec.Header().Get("ETag")
			again := serve(h, http.MethodGet, tt.target, http.Header{"If-None-Match": {tag}})
			if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
				t.Errorf("If-None-Match %s: status %d, body %q; want 304, empty", tag, again.Code, again.Body)
			}
		})
	}

	t.Run("ETag differs per host", func(t *testing.T) {
		h := k.WellKnownHandler(authURL)
		a := serve(h, http.MethodGet, "https://a.example.com"+WellKnownPath, nil).Header().Get("ETag")
		b := serve(h, http.MethodGet, "https://b.example.com"+WellKnownPath, nil).Header().Get("ETag")
		if a == b {
			t.Errorf("same ETag %s for documents of two hosts", a)
		}
	})

	t.Run("bad Host", func(t *testing.T) {
		h := k.WellKnownHandler(authURL)
		for _, host := range []string{"", "evil.com/x", "user@evil.com", `a"b`, "a b", "a\\b"} {
			req := httptest.NewRequest(http.MethodGet, "https://k8s.example.com"+WellKnownPath, nil)
			req.Host = host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusBadRequest {
				t.Errorf("Host %q: status %d, want 400", host, rec.Code)
			}
		}
	})
}

func serve(h http.Handler, method, target string, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for name, vs := range hdr {
		req.Header[name] = vs
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
