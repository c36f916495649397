package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestKubernetesSecurity checks that nothing a client sends chooses the
// identity kube-apiserver sees, that forged tokens are refused before
// anything is forwarded, that the attacks of attacks_test.go fail (request
// smuggling, a browser's session used by pages), and that a rotated
// service-account token file is picked up without a restart.
//
// kube-apiserver serves HTTP/1.1 only here, as behind an HTTP/1.1 load
// balancer: the hop where an unframed request body becomes requests of
// its own.
func TestKubernetesSecurity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := startStackWith(t, ctx, stackOptions{
		fakeNode:      true,
		apiserverArgs: []string{"--disable-http2-serving"},
		builtinUsers:  attackUsers(t),
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ca.ClientTLS()}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	good := s.token(t, "someuser@example.com", "dev")

	t.Run("client identity headers never reach the apiserver", func(t *testing.T) {
		tests := []struct {
			name   string
			header http.Header
		}{
			{"authenticating-proxy headers", http.Header{
				"Authorization":  {"Bearer Pomerium-" + good},
				"X-Remote-User":  {"admin"},
				"X-Remote-Group": {"system:masters"},
			}},
			{"cluster-admin bearer beside our header", http.Header{
				"Authorization":            {"Bearer " + s.cluster.AdminToken},
				"X-Pomerium-Authorization": {good},
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := selfSubjectReview(t, client, s.routeURL, tt.header)
				if got.code != http.StatusCreated || got.user != "someuser@example.com" {
					t.Fatalf("apiserver saw %q (status %d), want someuser@example.com", got.user, got.code)
				}
				want := []string{"dev", "system:authenticated"}
				if strings.Join(got.groups, ",") != strings.Join(want, ",") || len(got.extra) != 0 || got.uid != "" {
					t.Errorf("apiserver saw groups %v, extra %v and uid %q, want %v, no extra and no uid", got.groups, got.extra, got.uid, want)
				}
			})
		}
		// Impersonation a person asks for is decided by the cluster's RBAC
		// for the person (TestImpersonation): one RBAC gives no such right,
		// and no request of theirs reaches the apiserver as anyone else,
		// nor, with the headers dropped, as themselves.
		nobody := s.token(t, "nobody@example.com")
		for _, tt := range []struct {
			name   string
			header http.Header
		}{
			{"every impersonation header", http.Header{
				"Impersonate-User":         {"admin"},
				"Impersonate-Group":        {"system:masters", "admins"},
				"Impersonate-Uid":          {"0"},
				"Impersonate-Extra-Scopes": {"everything"},
			}},
			{"a user", http.Header{"Impersonate-User": {"admin"}}},
			// The field in which Portcullis names who used --as: a client
			// must not write someone else's name into the cluster's audit.
			{"the impersonator field", http.Header{"Impersonate-User": {"nobody@example.com"},
				"Impersonate-Extra-Portcullis.io%2fimpersonator": {"admin@example.com"}}},
			{"hop-by-hop trick on our own headers", http.Header{
				"Connection":       {"Authorization, Impersonate-User, Impersonate-Group"},
				"Impersonate-User": {"admin"},
			}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				tt.header.Set("Authorization", "Bearer Pomerium-"+nobody)
				got := selfSubjectReview(t, client, s.routeURL, tt.header)
				if got.code != http.StatusForbidden || got.user != "" {
					t.Errorf("got %d as %q, want 403 from Portcullis and nothing forwarded", got.code, got.user)
				}
			})
		}
		// The apiserver's own record: every request came from Portcullis's
		// service account impersonating someuser, never anyone else.
		for _, e := range auditEvents(t, s) {
			// nobody's impersonations were asked about, as nobody, and
			// refused: those questions are the only requests as nobody.
			if e.ImpersonatedUser.Username == "nobody@example.com" && e.ObjectRef != nil && e.ObjectRef.Resource == "selfsubjectaccessreviews" {
				continue
			}
			if e.ImpersonatedUser.Username != "" && e.ImpersonatedUser.Username != "someuser@example.com" {
				t.Errorf("audit: %s %s impersonated %q", e.Verb, e.RequestURI, e.ImpersonatedUser.Username)
			}
			if contains(e.ImpersonatedUser.Groups, "system:masters") {
				t.Errorf("audit: %s %s impersonated group system:masters", e.Verb, e.RequestURI)
			}
		}
	})

	t.Run("two Authorization headers are refused", func(t *testing.T) {
		code := selfSubjectReview(t, client, s.routeURL, http.Header{
			"Authorization": {"Bearer Pomerium-" + good, "Bearer " + s.cluster.AdminToken},
		}).code
		if code != http.StatusUnauthorized {
			t.Errorf("status: got %d, want 401", code)
		}
	})

	t.Run("forged tokens are refused with a Status", func(t *testing.T) {
		valid := session.Claims{Subject: "sub", Email: "someuser@example.com", Audience: s.audience, Expiry: time.Now().Add(time.Hour)}
		other, err := session.NewKeys(nil, random(32), s.keys.Issuer())
		if err != nil {
			t.Fatal(err)
		}
		expired, notYet, otherRoute := valid, valid, valid
		expired.IssuedAt, expired.Expiry = time.Now().Add(-2*time.Hour), time.Now().Add(-10*time.Minute)
		notYet.NotBefore = time.Now().Add(10 * time.Minute)
		otherRoute.Audience = "127.0.0.1:1"
		otherKey, err := other.Issue(valid)
		if err != nil {
			t.Fatal(err)
		}
		for name, tok := range map[string]string{
			"alg none":                        unsigned(t, valid),
			"HS256 keyed with the public key": hs256WithPublicKey(t, s, valid),
			"signed by another key":           otherKey,
			"expired":                         s.tokenWith(t, expired),
			"not yet valid":                   s.tokenWith(t, notYet),
			"for another route":               s.tokenWith(t, otherRoute),
			"garbage":                         "bm90IGEgdG9rZW4.e30.c2ln",
			"truncated":                       good[:len(good)-10],
		} {
			t.Run(name, func(t *testing.T) {
				resp := do(t, client, "GET", s.routeURL+"/api/v1/namespaces", http.Header{"Authorization": {"Bearer Pomerium-" + tok}}, "")
				var st struct {
					Kind, Reason, Message string
					Code                  int
				}
				json.Unmarshal([]byte(resp.body), &st)
				if resp.code != http.StatusUnauthorized || st.Kind != "Status" || st.Code != 401 || st.Reason != "Unauthorized" {
					t.Errorf("got %d %q, want 401 with an Unauthorized Status", resp.code, resp.body)
				}
			})
		}
	})

	t.Run("HTTP/2 CONNECT cannot smuggle a request through the HTTP/1.1 hop", func(t *testing.T) {
		testConnectSmuggling(t, ctx, s)
	})
	t.Run("names Kubernetes reserves are never impersonated", func(t *testing.T) {
		testSystemNames(t, s, client)
	})
	t.Run("a signed-in browser", func(t *testing.T) {
		tab := testenv.NewChromium(t, s.certPEM)
		bctx, bcancel := context.WithTimeout(tab, 3*time.Minute)
		defer bcancel()
		signInWithChromium(t, bctx, s.routeURL, victimEmail, victimPassword)
		t.Run("a page on the API's origin cannot read the API as the person", func(t *testing.T) {
			testPageOnAPIOrigin(t, ctx, s, bctx, client)
		})
		t.Run("a cross-site page cannot open exec with the person's cookie", func(t *testing.T) {
			testCrossSiteExec(t, ctx, s, bctx)
		})
		t.Run("a cross-site page cannot sign the person out", func(t *testing.T) {
			testCrossSiteSignOut(t, s, bctx)
		})
	})

	t.Run("a rotated service-account token is used without a restart", func(t *testing.T) {
		// Rotate to a second account with the same rights, so the audit log
		// shows which token made each request.
		if err := s.cluster.ApplyYAML(ctx, `apiVersion: v1
kind: ServiceAccount
metadata: {name: portcullis-rotated, namespace: default}`, `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis-rotated}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis-impersonation}
subjects: [{kind: ServiceAccount, name: portcullis-rotated, namespace: default}]`); err != nil {
			t.Fatal(err)
		}
		tok, err := s.cluster.CreateToken(ctx, "default", "portcullis-rotated", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// As kubelet does: write aside, then rename over.
		tmp := filepath.Join(filepath.Dir(s.tokenFile), ".sa-token.tmp")
		writeFile(t, tmp, tok)
		if err := os.Rename(tmp, s.tokenFile); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // Portcullis looks at the file at most once a second
		marker := "/api/v1/namespaces/default/configmaps/rotation-probe"
		do(t, client, "GET", s.routeURL+marker, http.Header{"Authorization": {"Bearer Pomerium-" + good}}, "")
		var seen string
		for _, e := range auditEvents(t, s) {
			if e.RequestURI == marker {
				seen = e.User.Username
			}
		}
		if want := "system:serviceaccount:default:portcullis-rotated"; seen != want {
			t.Errorf("after rotation the apiserver saw the request from %q, want %q", seen, want)
		}
	})
}

// reviewed is who the apiserver says a request is from.
type reviewed struct {
	user, uid string
	groups    []string
	extra     map[string][]string
	code      int // the HTTP status of the review
}

// selfSubjectReview asks the apiserver, through Portcullis, who the
// request is from. A review that was created (201) but cannot be read
// fails the test: a check on what it says would pass on nothing.
func selfSubjectReview(t *testing.T, client *http.Client, routeURL string, h http.Header) reviewed {
	t.Helper()
	h.Set("Content-Type", "application/json")
	resp := do(t, client, "POST", routeURL+"/apis/authentication.k8s.io/v1/selfsubjectreviews", h,
		`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	var review struct {
		Status struct {
			UserInfo struct {
				Username string              `json:"username"`
				UID      string              `json:"uid"`
				Groups   []string            `json:"groups"`
				Extra    map[string][]string `json:"extra"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if resp.code == http.StatusCreated {
		if err := json.Unmarshal([]byte(resp.body), &review); err != nil {
			t.Fatalf("the apiserver's SelfSubjectReview does not decode: %v\n%s", err, resp.body)
		}
	}
	u := review.Status.UserInfo
	return reviewed{user: u.Username, uid: u.UID, groups: u.Groups, extra: u.Extra, code: resp.code}
}

type response struct {
	code int
	body string
}

func do(t *testing.T, client *http.Client, method, url string, h http.Header, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(b)}
}

// auditEvents reads kube-apiserver's audit log: what it really received.
func auditEvents(t *testing.T, s *stack) []auditEvent {
	t.Helper()
	return readAuditLog(t, s.cluster.AuditLogPath)
}

// unsigned is the claims under {"alg":"none"} with an empty signature.
func unsigned(t *testing.T, c session.Claims) string {
	t.Helper()
	claims, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(claims) + "."
}

// hs256WithPublicKey is the classic algorithm-confusion forgery: HMAC-SHA256
// keyed with the server's public key in PEM, which anyone can fetch.
func hs256WithPublicKey(t *testing.T, s *stack, c session.Claims) string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.keys.JWKS(), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(set.Keys[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	claims, _ := json.Marshal(c)
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(`{"alg":"HS256","typ":"JWT","kid":"`+s.keys.KeyID()+`"}`)) + "." + enc(claims)
	mac := hmac.New(sha256.New, pub)
	mac.Write([]byte(signing))
	return signing + "." + enc(mac.Sum(nil))
}
