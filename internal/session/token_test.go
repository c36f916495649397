package session

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name string
		keys func(testing.TB) *Keys
	}{
		{"EC", ecKeys},
		{"RSA", rsaKeys},
		{"derived", derivedKeys},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := tt.keys(t)
			for _, ct := range []struct {
				name   string
				claims Claims
			}{
				{"all claims", validClaims()},
				{"minimal", Claims{Audience: testAudience, Expiry: testNow.Add(time.Minute)}},
				{"no groups", func() Claims { c := validClaims(); c.Groups = nil; return c }()},
				{"unicode", func() Claims {
					c := validClaims()
					c.Name, c.Groups = "Zoë «Ⅻ» 名前", []string{"équipe", "a,b", `quo"te`}
					return c
				}()},
			} {
				t.Run(ct.name, func(t *testing.T) {
					tok := issue(t, k, ct.claims)
					got, err := k.Verify(tok, testAudience, testNow)
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					want := ct.claims
					want.Issuer = testIssuer
					if want.IssuedAt.IsZero() {
						want.IssuedAt = testNow
					}
					if want.ID == "" {
						want.ID = got.ID // random; checked in TestIssueFills
					}
					if diff := cmp.Diff(want, *got); diff != "" {
						t.Errorf("claims (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}

func TestRoundTripTimesAreWholeSecondsUTC(t *testing.T) {
	k := derivedKeys(t)
	paris := time.FixedZone("CEST", 2*3600)
	c := validClaims()
	c.IssuedAt = testNow.Add(-1500 * time.Millisecond).In(paris)
	c.Expiry = testNow.Add(time.Hour + 999*time.Millisecond).In(paris)
	c.NotBefore = time.Time{}
	got, err := k.Verify(issue(t, k, c), testAudience, testNow)
	if err != nil {
		t.Fatal(err)
	}
	// NumericDate is whole seconds; exp is rounded down, never extended.
	want := []time.Time{testNow.Add(-2 * time.Second), testNow.Add(time.Hour), {}}
	if diff := cmp.Diff(want, []time.Time{got.IssuedAt, got.Expiry, got.NotBefore}); diff != "" {
		t.Errorf("iat, exp, nbf (-want +got):\n%s", diff)
	}
}

func TestIssueFills(t *testing.T) {
	k := derivedKeys(t)
	c := Claims{Audience: testAudience, Expiry: testNow.Add(time.Hour)}
	a, err := k.Verify(issue(t, k, c), testAudience, testNow)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Verify(issue(t, k, c), testAudience, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == "" || a.ID == b.ID {
		t.Errorf("jti = %q then %q, want two different random IDs", a.ID, b.ID)
	}
	if len(a.ID) < 20 {
		t.Errorf("jti %q is too short to be 128 random bits", a.ID)
	}
	if !a.IssuedAt.Equal(testNow) {
		t.Errorf("iat = %s, want the clock's %s", a.IssuedAt, testNow)
	}
	if a.Issuer != testIssuer {
		t.Errorf("iss = %q, want %q", a.Issuer, testIssuer)
	}
}

func TestIssueHeaders(t *testing.T) {
	for _, k := range []*Keys{ecKeys(t), rsaKeys(t), derivedKeys(t)} {
		hdr, _ := decodeParts(t, issue(t, k, validClaims()))
		want := map[string]any{"alg": k.Algorithm(), "kid": k.KeyID(), "typ": "JWT"}
		if diff := cmp.Diff(want, hdr); diff != "" {
			t.Errorf("%s header (-want +got):\n%s", k.Algorithm(), diff)
		}
	}
}

func TestIssueRefuses(t *testing.T) {
	k := derivedKeys(t)
	tests := []struct {
		name    string
		edit    func(*Claims)
		wantErr string
	}{
		{"no expiry", func(c *Claims) { c.Expiry = time.Time{} }, "no expiry: every token must carry exp"},
		{"no audience", func(c *Claims) { c.Audience = "" }, "no audience"},
		{"other issuer", func(c *Claims) { c.Issuer = "https://evil.example.com" }, `issuer "https://evil.example.com" is not this key's issuer`},
		{"expiry before issue", func(c *Claims) { c.Expiry = c.IssuedAt.Add(-time.Second) }, "is not after issue time"},
		{"expiry equals issue", func(c *Claims) { c.Expiry = c.IssuedAt }, "is not after issue time"},
		{"expiry before nbf", func(c *Claims) { c.NotBefore = c.Expiry.Add(time.Second) }, "is not after not-before time"},
		{"expiry after 9999", func(c *Claims) { c.Expiry = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "outside the years 1970 to 9999"},
		{"issued before 1970", func(c *Claims) { c.IssuedAt, c.NotBefore = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{} }, "outside the years 1970 to 9999"},
		{"too large", func(c *Claims) {
			c.Groups = make([]string, 2000)
			for i := range c.Groups {
				c.Groups[i] = "group-with-a-long-name"
			}
		}, "more than the 16384 Verify accepts (2000 groups)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validClaims()
			tt.edit(&c)
			tok, err := k.Issue(c)
			if err == nil {
				t.Fatalf("Issue succeeded (%d bytes), want error containing %q", len(tok), tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	// The own issuer, spelled out, is fine.
	c := validClaims()
	c.Issuer = testIssuer
	issue(t, k, c)
}

func TestVerifyTimes(t *testing.T) {
	k := derivedKeys(t)
	exp := testNow.Add(time.Hour)
	nbf := testNow.Add(-time.Hour)
	tok := issue(t, k, Claims{Audience: testAudience, IssuedAt: nbf, NotBefore: nbf, Expiry: exp})
	tests := []struct {
		name    string
		now     time.Time
		wantErr error
	}{
		{"inside", testNow, nil},
		{"at exp, within leeway", exp, nil},
		{"1s before exp+leeway", exp.Add(Leeway - time.Second), nil},
		{"at exp+leeway", exp.Add(Leeway), ErrExpired},
		{"long after", exp.Add(24 * time.Hour), ErrExpired},
		{"at nbf", nbf, nil},
		{"at nbf-leeway", nbf.Add(-Leeway), nil},
		{"1s before nbf-leeway", nbf.Add(-Leeway - time.Second), ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k.Verify(tok, testAudience, tt.now)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			checkSentinel(t, err, tt.wantErr)
		})
	}
}

func TestVerifyErrorMessages(t *testing.T) {
	// The messages are shown to users: they say what happened and what to
	// do, in words.
	k := derivedKeys(t)
	tok := issue(t, k, validClaims())
	tests := []struct {
		name     string
		audience string
		now      time.Time
		want     string
	}{
		{"expired", testAudience, testNow.Add(2 * time.Hour), "token expired at 2026-05-01T13:00:00Z: sign in again"},
		{"not yet valid", testAudience, testNow.Add(-time.Hour), "token is not valid yet: not before 2026-05-01T11:59:00Z, and it is 2026-05-01T11:00:00Z here: check the clocks"},
		{"wrong audience", "https://other.example.com", testNow, `token is for another audience: issued for "https://k8s.example.com", not "https://other.example.com": sign in again`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k.Verify(tok, tt.audience, tt.now)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestVerifyAudienceForms(t *testing.T) {
	k := derivedKeys(t)
	priv := derivedPrivateKey(t)
	hdr := map[string]any{"alg": "ES256", "kid": k.KeyID(), "typ": "JWT"}
	tests := []struct {
		name    string
		aud     any
		wantErr error
	}{
		{"string", testAudience, nil},
		{"one-element array", []string{testAudience}, nil},
		{"two-element array", []string{testAudience, "https://other.example.com"}, ErrWrongAudience},
		{"empty array", []string{}, ErrWrongAudience},
		{"absent", nil, ErrWrongAudience},
		{"case differs", strings.ToUpper(testAudience), ErrWrongAudience},
		{"trailing slash", testAudience + "/", ErrWrongAudience},
		{"number", 42, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := claimsMap(k)
			if tt.aud == nil {
				delete(cl, "aud")
			} else {
				cl["aud"] = tt.aud
			}
			got, err := k.Verify(signRaw(t, "ES256", priv, hdr, cl), testAudience, testNow)
			if tt.wantErr != nil {
				checkSentinel(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Audience != testAudience {
				t.Errorf("Audience = %q, want %q", got.Audience, testAudience)
			}
		})
	}
}

func TestVerifyNoAudienceGiven(t *testing.T) {
	// Verify("", …) is a caller bug; it must not match a token without aud.
	k := derivedKeys(t)
	cl := claimsMap(k)
	delete(cl, "aud")
	tok := signRaw(t, "ES256", derivedPrivateKey(t), map[string]any{"alg": "ES256", "kid": k.KeyID()}, cl)
	_, err := k.Verify(tok, "", testNow)
	checkSentinel(t, err, ErrWrongAudience)
}

func TestThirdPartyVerifierAcceptsOurToken(t *testing.T) {
	// go-jose's own JWT validation agrees with ours on a token we issue.
	k := derivedKeys(t)
	tok := issue(t, k, validClaims())
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var std jwt.Claims
	var extra struct {
		Email  string   `json:"email"`
		Groups []string `json:"groups"`
	}
	if err := parsed.Claims(derivedPrivateKey(t).Public(), &std, &extra); err != nil {
		t.Fatalf("go-jose refused the signature: %v", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: testIssuer, AnyAudience: jwt.Audience{testAudience}, Time: testNow}, Leeway); err != nil {
		t.Errorf("go-jose refused the claims: %v", err)
	}
	if extra.Email != "alice@example.com" || len(extra.Groups) != 2 {
		t.Errorf("go-jose read email %q, groups %q", extra.Email, extra.Groups)
	}
}

func TestClaimsJSON(t *testing.T) {
	c := validClaims()
	c.Issuer = testIssuer
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"iss":"https://authenticate.example.com","sub":"user-1","email":"alice@example.com","name":"Alice Example","groups":["sre","dev"],"sid":"session-1","jti":"token-1","aud":"https://k8s.example.com","iat":1777636740,"nbf":1777636740,"exp":1777640400}`
	if string(b) != want {
		t.Errorf("json.Marshal(Claims) =\n%s\nwant\n%s", b, want)
	}
	var back Claims
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	// The Kubernetes groups: absent, empty and some stay apart.
	for _, groups := range [][]string{nil, {}, {"oidc:sre"}} {
		k := Claims{KubernetesUser: "oidc:alice", KubernetesGroups: groups}
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		var back Claims
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(k, back); diff != "" || (groups == nil) != (back.KubernetesGroups == nil) {
			t.Errorf("JSON round trip of %s (-want +got):\n%s", b, diff)
		}
	}

	for _, tt := range []struct {
		name, in string
		want     Claims
		wantErr  bool
	}{
		{name: "empty", in: `{}`, want: Claims{}},
		{name: "aud array", in: `{"aud":["a"]}`, want: Claims{Audience: "a"}},
		{name: "fractional exp", in: `{"exp":1777640400.5}`, want: Claims{Expiry: time.Unix(1777640400, 5e8).UTC()}},
		{name: "exponent exp", in: `{"exp":1.7776404e9}`, want: Claims{Expiry: time.Unix(1777640400, 0).UTC()}},
		{name: "null exp", in: `{"exp":null}`, want: Claims{}},
		{name: "aud two values", in: `{"aud":["a","b"]}`, wantErr: true},
		{name: "aud object", in: `{"aud":{}}`, wantErr: true},
		{name: "exp string", in: `{"exp":"1777640400"}`, wantErr: true},
		{name: "exp negative", in: `{"exp":-1}`, wantErr: true},
		{name: "exp too far", in: `{"exp":253402300800}`, wantErr: true},
		{name: "exp huge float", in: `{"exp":1e300}`, wantErr: true},
		{name: "groups string", in: `{"groups":"sre"}`, wantErr: true},
		{name: "kubernetes claims", in: `{"kubernetes_user":"oidc:alice","kubernetes_groups":["oidc:sre"],"kubernetes_session":"sealed"}`,
			want: Claims{KubernetesUser: "oidc:alice", KubernetesGroups: []string{"oidc:sre"}, KubernetesSession: "sealed"}},
		// A filter that keeps no group is not the same as no mapping.
		{name: "kubernetes groups empty", in: `{"kubernetes_groups":[]}`, want: Claims{KubernetesGroups: []string{}}},
		{name: "kubernetes groups null", in: `{"kubernetes_groups":null}`, want: Claims{}},
		{name: "kubernetes groups string", in: `{"kubernetes_groups":"sre"}`, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got Claims
			err := json.Unmarshal([]byte(tt.in), &got)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Unmarshal(%s) succeeded: %+v", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Unmarshal(%s) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// TestGolden pins the token format: header and claims of a token issued
// with the key derived from testSecret and the fixed clock, and the JWKS
// of that key (which pins the derivation itself: a changed derivation
// would split replicas running different versions). ECDSA signatures are
// randomised, so the signature is checked by verifying, not compared.
// Run with -update to rewrite.
func TestGolden(t *testing.T) {
	k := derivedKeys(t)
	c := validClaims()
	c.IssuedAt = time.Time{} // from the clock
	tok := issue(t, k, c)
	if _, err := k.Verify(tok, testAudience, testNow); err != nil {
		t.Fatalf("golden token does not verify: %v", err)
	}
	hdr, claims := decodeParts(t, tok)
	got, err := json.MarshalIndent(map[string]any{"header": hdr, "claims": claims}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "token.golden.json", append(got, '\n'))

	var jwks bytes.Buffer
	if err := json.Indent(&jwks, k.JWKS(), "", "  "); err != nil {
		t.Fatal(err)
	}
	jwks.WriteByte('\n')
	checkGolden(t, "derived-jwks.golden.json", jwks.Bytes())
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// decodeParts returns a token's header and claims as generic JSON.
func decodeParts(t testing.TB, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}
