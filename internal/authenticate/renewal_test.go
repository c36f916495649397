package authenticate

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/idp"
	"github.com/portcullis-proxy/portcullis/internal/limit"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// renewableLogin signs in as portcullis-cli does, asking for a renewable
// credential, and returns what reached the loopback listener.
func (f *fixture) renewableLogin(t testing.TB) (token, renewal string) {
	t.Helper()
	login := f.get(t, routeURL+"/.pomerium/api/v1/login?"+url.Values{
		"pomerium_redirect_uri": {"http://127.0.0.1:8000/cb"}, "portcullis_renewal": {"1"}}.Encode(), req{})
	if login.code != http.StatusOK {
		t.Fatalf("login API: %d %s", login.code, login.body)
	}
	res := f.callback(t, f.startSignIn(t, login.body))
	u, err := url.Parse(res.location)
	if res.code != http.StatusFound || err != nil || u.Host != "127.0.0.1:8000" {
		t.Fatalf("callback: got %d to %q, want 302 to the loopback listener", res.code, res.location)
	}
	return u.Query().Get("pomerium_jwt"), u.Query().Get("portcullis_renewal")
}

// renew trades a renewal credential at the route base.
func (f *fixture) renew(t testing.TB, base, credential string) tokenAnswer {
	t.Helper()
	return f.tokenRequest(t, base+pathToken, url.Values{"grant_type": {renewalGrantType}, "refresh_token": {credential}})
}

func TestRenewal(t *testing.T) {
	f := newFixture(t)
	tok, rn := f.renewableLogin(t)
	c, err := f.keys.Verify(tok, routeHost, f.clock())
	if err != nil || !strings.HasPrefix(rn, renewalPrefix) {
		t.Fatalf("renewable sign-in: token %v, renewal %q; want a good token and a credential", err, rn)
	}
	if got := c.Expiry.Sub(f.clock()); got > DefaultAccessTokenLifetime {
		t.Errorf("renewable token lasts %s, want at most %s", got, DefaultAccessTokenLifetime)
	}

	// The token lapses; the credential renews it, again and again, each
	// credential once, for as long as the session lives.
	sid := c.SessionID
	for i := range 3 {
		f.advance(DefaultAccessTokenLifetime + session.Leeway + time.Second)
		if _, err := f.keys.Verify(tok, routeHost, f.clock()); err == nil {
			t.Fatalf("renewal %d: the last token still verifies after its lifetime", i)
		}
		a := f.renew(t, routeURL, rn)
		if a.code != http.StatusOK || a.TokenType != "Pomerium" || a.RefreshToken == rn || a.ExpiresIn != int64(DefaultAccessTokenLifetime/time.Second) {
			t.Fatalf("renewal %d: got %+v, want a new token and a new credential", i, a)
		}
		c, err := f.keys.Verify(a.AccessToken, routeHost, f.clock())
		if err != nil || c.SessionID != sid || c.Email != "someuser@example.com" {
			t.Fatalf("renewal %d: token %+v, %v; want the same session's", i, c, err)
		}
		tok, rn = a.AccessToken, a.RefreshToken
	}

	// The credential works on another route of the same service (one
	// sign-in for every cluster), for that route's audience.
	a := f.renew(t, otherURL, rn)
	if c, err := f.keys.Verify(a.AccessToken, otherHost, f.clock()); a.code != http.StatusOK || err != nil || c.SessionID != sid {
		t.Fatalf("renewal on another route: %+v, %v", a, err)
	}
	rn = a.RefreshToken

	// A spent credential used again ends the session: every token of it
	// stops working, and the newest credential too.
	spent := rn
	a = f.renew(t, routeURL, rn)
	if a.code != http.StatusOK {
		t.Fatalf("renewal: %+v", a)
	}
	newest := a.RefreshToken
	if a := f.renew(t, routeURL, spent); a.code != http.StatusBadRequest || a.Error != "invalid_grant" || !strings.Contains(a.Description, "used already") {
		t.Errorf("reused credential: got %+v, want invalid_grant saying it was used already", a)
	}
	if _, err := f.store.Get(t.Context(), sid); err == nil {
		t.Error("after the reuse the session is live, want it ended")
	}
	if a := f.renew(t, routeURL, newest); a.code != http.StatusBadRequest || a.Error != "invalid_grant" || !strings.Contains(a.Description, "session ended") {
		t.Errorf("the newest credential after the reuse: got %+v, want invalid_grant, session ended", a)
	}
	if n := len(f.records); n == 0 || f.records[n-1].Action != ActivitySessionEnded || f.records[n-1].Reason != ReasonRenewalReused {
		t.Errorf("audit records: %+v, want the session's end for the reused credential last", f.records)
	}
}

func TestRenewalEndsWithTheSession(t *testing.T) {
	f := newFixture(t)
	_, rn := f.renewableLogin(t)
	f.advance(time.Minute)
	a := f.renew(t, routeURL, rn)
	if a.code != http.StatusOK {
		t.Fatalf("renewal: %+v", a)
	}
	c, _ := f.keys.Verify(a.AccessToken, routeHost, f.clock())
	// Signed out: the credential renews nothing.
	if res := f.post(t, routeURL+"/.pomerium/sign_out", req{header: []string{"Authorization", "Pomerium " + a.AccessToken}}); res.code >= 400 {
		t.Fatalf("sign-out: %d %s", res.code, res.body)
	}
	if _, err := f.store.Get(t.Context(), c.SessionID); err == nil {
		t.Fatal("the session is live after sign-out")
	}
	if a := f.renew(t, routeURL, a.RefreshToken); a.code != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Errorf("renewal after sign-out: got %+v, want invalid_grant", a)
	}

	// The last token of a session ends with it, however short the
	// lifetime left.
	f2 := newFixture(t)
	f2.setRefresh(func(context.Context, string) (*idp.Identity, *idp.Tokens, error) {
		return &idp.Identity{Subject: "user-1", Email: "someuser@example.com"},
			&idp.Tokens{RefreshToken: idpRefreshToken, Expiry: f2.clock().Add(24 * time.Hour)}, nil
	})
	_, rn = f2.renewableLogin(t)
	f2.advance(f2.a.opts.CookieExpire - time.Minute)
	a = f2.renew(t, routeURL, rn)
	if a.code != http.StatusOK || a.ExpiresIn > 60 {
		t.Errorf("renewal a minute before the session ends: got %+v, want a token for that minute", a)
	}
	f2.advance(2 * time.Minute)
	if a := f2.renew(t, routeURL, a.RefreshToken); a.code != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Errorf("renewal after the session expired: got %+v, want invalid_grant", a)
	}
}

func TestRenewalRefusesWhatIsNotACredential(t *testing.T) {
	f := newFixture(t)
	signed := f.signIn(t)
	tok, rn := f.renewableLogin(t)
	sealedForAnother := renewalPrefix + signed.routeCookie.Value
	for _, tc := range []struct{ name, credential string }{
		{"a Portcullis token", tok},
		{"a session cookie", signed.routeCookie.Value},
		{"a cookie behind the prefix", sealedForAnother},
		{"the prefix alone", renewalPrefix},
		{"cut short", rn[:len(rn)-4]},
		{"one letter changed", rn[:len(rn)-6] + flip(rn[len(rn)-6]) + rn[len(rn)-5:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a := f.renew(t, routeURL, tc.credential); a.code != http.StatusBadRequest || a.Error != "invalid_grant" || a.AccessToken != "" {
				t.Errorf("got %+v, want invalid_grant", a)
			}
		})
	}
	// The good one still works: none of the above spent or ended it.
	if a := f.renew(t, routeURL, rn); a.code != http.StatusOK {
		t.Errorf("the real credential after the forgeries: %+v", a)
	}
	// Only a POST body carries it; the URL and other grants do not.
	for _, tc := range []struct {
		name, method, target string
		form                 url.Values
		wantCode             int
		wantError            string
	}{
		{"GET", "GET", routeURL + pathToken + "?" + url.Values{"grant_type": {renewalGrantType}, "refresh_token": {rn}}.Encode(), nil, http.StatusMethodNotAllowed, "invalid_request"},
		{"in the URL", "POST", routeURL + pathToken + "?" + url.Values{"grant_type": {renewalGrantType}, "refresh_token": {rn}}.Encode(), url.Values{}, http.StatusBadRequest, "invalid_request"},
		{"another grant", "POST", routeURL + pathToken, url.Values{"grant_type": {"password"}, "refresh_token": {rn}}, http.StatusBadRequest, "unsupported_grant_type"},
		{"two credentials", "POST", routeURL + pathToken, url.Values{"grant_type": {renewalGrantType}, "refresh_token": {rn, rn}}, http.StatusBadRequest, "invalid_request"},
		{"oversized", "POST", routeURL + pathToken, url.Values{"grant_type": {renewalGrantType}, "refresh_token": {strings.Repeat("x", maxRenewalForm)}}, http.StatusBadRequest, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do(t, tc.method, tc.target, req{form: tc.form})
			var a tokenAnswer
			if err := json.Unmarshal([]byte(res.body), &a); err != nil || res.code != tc.wantCode || a.Error != tc.wantError {
				t.Errorf("got %d %s, want %d %s", res.code, res.body, tc.wantCode, tc.wantError)
			}
		})
	}
}

func flip(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}

// TestExchangeForAnotherRoute: the sign-in service trades one route's
// renewal credential for another route's token and renewal chain, and
// the first chain's next credential: one sign-in for every route.
func TestExchangeForAnotherRoute(t *testing.T) {
	f := newFixture(t)
	_, rn := f.renewableLogin(t)
	exchange := func(credential, resource string) tokenAnswer {
		t.Helper()
		form := url.Values{"grant_type": {renewalGrantType}, "refresh_token": {credential}}
		if resource != "" {
			form.Set("resource", resource)
		}
		return f.tokenRequest(t, authURL+pathToken, form)
	}
	// A resource that is not a route here, or none: refused before the
	// credential is spent.
	for _, res := range []string{"", "https://evil.example.com", "https://other.example.com.evil.example", "not a url"} {
		if a := exchange(rn, res); a.code != http.StatusBadRequest || a.Error != "invalid_target" || a.AccessToken != "" {
			t.Errorf("resource %q: got %+v, want invalid_target", res, a)
		}
	}
	a := exchange(rn, otherURL)
	c, err := f.keys.Verify(a.AccessToken, otherHost, f.clock())
	if a.code != http.StatusOK || err != nil || c.Email != "someuser@example.com" || a.RefreshToken == "" || a.Next == "" {
		t.Fatalf("exchange for the other route: %+v, %v", a, err)
	}
	// Two chains now, each its own: the other route's renews there, the
	// first route's next renews on the first route.
	if b := f.renew(t, otherURL, a.RefreshToken); b.code != http.StatusOK {
		t.Errorf("the other route's new chain: %+v", b)
	}
	if b := f.renew(t, routeURL, a.Next); b.code != http.StatusOK {
		t.Errorf("the first chain's next credential: %+v", b)
	}
	// The presented credential was spent: a copy used now ends the session.
	if b := exchange(rn, otherURL); b.code != http.StatusBadRequest || !strings.Contains(b.Description, "used already") {
		t.Errorf("the spent credential again: %+v, want it refused as used already", b)
	}
	if _, err := f.store.Get(t.Context(), c.SessionID); err == nil {
		t.Error("the session is live after the reuse")
	}
	// Only the sign-in service exchanges; a route does not take resource.
	if res := f.get(t, authURL+pathToken, req{}); res.code != http.StatusMethodNotAllowed {
		t.Errorf("GET on the sign-in service's token endpoint: %d, want 405", res.code)
	}
}

// FuzzTokenForm: whatever form reaches a token endpoint (a route's
// renewal, the sign-in service's exchange), without the one real
// credential, the answer is an OAuth error in JSON: never a token, never
// a crash, and the real credential is neither spent nor its session ended.
func FuzzTokenForm(f *testing.F) {
	fx := newFixture(f)
	_, rn := fx.renewableLogin(f)
	grant := "grant_type=" + url.QueryEscape(renewalGrantType)
	for _, seed := range []string{
		grant + "&refresh_token=" + rn[:len(rn)-1],
		grant + "&refresh_token=" + rn + "x",
		grant + "&refresh_token=" + renewalPrefix,
		grant + "&refresh_token=a&refresh_token=b",
		grant + "&refresh_token=" + rn[:20] + "&resource=" + url.QueryEscape(otherURL),
		grant + "&refresh_token=x&resource=" + url.QueryEscape(otherURL) + "&resource=" + url.QueryEscape(routeURL),
		grant + "&refresh_token=x&resource=%zz",
		"grant_type=password&username=a&password=b",
		strings.Repeat("a=b&", 1000),
		"",
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	errs := map[string]bool{"invalid_request": true, "unsupported_grant_type": true, "invalid_grant": true, "invalid_target": true}
	f.Fuzz(func(t *testing.T, body string, exchange bool) {
		if strings.Contains(body, rn) {
			return
		}
		target := routeURL + pathToken
		if exchange {
			target = authURL + pathToken
		}
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		fx.handler(t, target).ServeHTTP(w, r)
		var a tokenAnswer
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || a.AccessToken != "" || !errs[a.Error] || w.Code == http.StatusOK {
			t.Fatalf("POST %s %q: got %d %s", target, body, w.Code, w.Body)
		}
		// Reset the rate shared with device polls so that the fuzzer keeps
		// reaching the parser.
		fx.a.devicePolls = limit.NewRate(DefaultDevicePollsPerMinute, 0)
	})
	if a := fx.renew(f, routeURL, rn); a.code != http.StatusOK {
		f.Errorf("the real credential after fuzzing: got %+v, want it renewed", a)
	}
}
