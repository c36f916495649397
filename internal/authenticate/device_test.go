package authenticate

import (
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/limit"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// deviceClient is the address and user agent of the client that asks for
// a device sign-in in these tests.
const (
	deviceClientAddr = "198.51.100.23:40000"
	deviceClientUA   = "portcullis-cli/1.2.3 (linux/amd64) kubectl"
)

// deviceStart is a device authorization as the client got it.
type deviceStart struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// startDevice asks the route at base for a device sign-in, as the CLI
// does.
func (f *fixture) startDevice(t testing.TB, base string) deviceStart {
	t.Helper()
	res := f.post(t, base+pathDeviceAuthorize, req{remote: deviceClientAddr, header: []string{"User-Agent", deviceClientUA, "Sec-Fetch-Site", ""},
		form: url.Values{"client_id": {"portcullis-cli"}}})
	var d deviceStart
	if res.code != http.StatusOK || json.Unmarshal([]byte(res.body), &d) != nil {
		t.Fatalf("device authorization: got %d %s", res.code, res.body)
	}
	return d
}

// tokenAnswer is the token endpoint's answer: a token or an OAuth error.
type tokenAnswer struct {
	code        int
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	// RefreshToken is the renewal credential (renewal.go).
	RefreshToken string `json:"refresh_token"`
	// Next is an exchange's next credential of the presented chain.
	Next        string `json:"portcullis_renewal_next"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// pollDevice polls the route at base with deviceCode, as the CLI does.
func (f *fixture) pollDevice(t testing.TB, base, deviceCode string) tokenAnswer {
	t.Helper()
	return f.tokenRequest(t, base+pathDeviceToken, url.Values{"grant_type": {deviceGrantType}, "device_code": {deviceCode}})
}

// tokenRequest POSTs form to a token endpoint, as a client (not a
// browser) from deviceClientAddr, and reads the answer.
func (f *fixture) tokenRequest(t testing.TB, target string, form url.Values) tokenAnswer {
	t.Helper()
	res := f.post(t, target, req{remote: deviceClientAddr, header: []string{"Sec-Fetch-Site", ""}, form: form})
	a := tokenAnswer{code: res.code}
	if err := json.Unmarshal([]byte(res.body), &a); err != nil {
		t.Fatalf("token endpoint: %d, not JSON: %s", res.code, res.body)
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("token endpoint: Cache-Control %q, want no-store", res.header.Get("Cache-Control"))
	}
	return a
}

// confirmation is the confirmation page a signed-in browser sees for a
// code, and its form's fields.
type confirmation struct {
	page string
	form url.Values
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// openDevicePage opens target (a verification URI) in the browser s.
func (f *fixture) openDevicePage(t testing.TB, target string, s signedIn) (*response, confirmation) {
	t.Helper()
	res := f.get(t, target, req{header: []string{"Accept", browserAccept}, cookies: []*http.Cookie{s.routeCookie}})
	c := confirmation{page: res.body, form: url.Values{}}
	for _, m := range hiddenField.FindAllStringSubmatch(res.body, -1) {
		c.form.Set(m[1], html.UnescapeString(m[2]))
	}
	return res, c
}

// decide sends the confirmation form with decision, as the browser s.
func (f *fixture) decide(t testing.TB, s signedIn, form url.Values, decision string, header ...string) *response {
	t.Helper()
	form = cloneValues(form)
	form.Set("decision", decision)
	return f.post(t, routeURL+pathDevice, req{header: append([]string{"Accept", browserAccept}, header...), cookies: []*http.Cookie{s.routeCookie}, form: form})
}

func cloneValues(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

func TestDeviceAuthorization(t *testing.T) {
	f := newFixture(t)
	d := f.startDevice(t, routeURL)
	code, ok := session.NormalizeUserCode(d.UserCode)
	if !ok || session.FormatUserCode(code) != d.UserCode || !regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`).MatchString(d.UserCode) {
		t.Errorf("user_code %q: want XXXX-XXXX of RFC 8628's consonants", d.UserCode)
	}
	if len(d.DeviceCode) < 43 || strings.Contains(d.DeviceCode, code) {
		t.Errorf("device_code %q: want at least 256 bits, unrelated to the user code", d.DeviceCode)
	}
	if d.VerificationURI != routeURL+"/.pomerium/device" || d.VerificationURIComplete != routeURL+"/.pomerium/device?user_code="+d.UserCode {
		t.Errorf("verification URIs: got %q and %q", d.VerificationURI, d.VerificationURIComplete)
	}
	if d.ExpiresIn != 600 || d.Interval != 5 {
		t.Errorf("expires_in %d, interval %d: want 600 and 5", d.ExpiresIn, d.Interval)
	}
	if again := f.startDevice(t, routeURL); again.DeviceCode == d.DeviceCode || again.UserCode == d.UserCode {
		t.Errorf("two requests got the same codes")
	}

	t.Run("only by POST", func(t *testing.T) {
		res := f.get(t, routeURL+pathDeviceAuthorize, req{})
		if res.code != http.StatusMethodNotAllowed || res.header.Get("Allow") != "POST" {
			t.Errorf("GET: got %d, Allow %q", res.code, res.header.Get("Allow"))
		}
	})
	t.Run("not without an identity provider", func(t *testing.T) {
		f := newFixture(t)
		f.a.SetProvider(nil)
		if res := f.post(t, routeURL+pathDeviceAuthorize, req{}); res.code != http.StatusNotImplemented || !strings.Contains(res.body, "IDP_PROVIDER") {
			t.Errorf("got %d %s", res.code, res.body)
		}
	})
	t.Run("rate-limited per client address with the login API", func(t *testing.T) {
		f := newFixture(t)
		f.a.opts.LoginRate = limit.NewRate(2, 0)
		for range 2 {
			f.startDevice(t, routeURL)
		}
		res := f.post(t, routeURL+pathDeviceAuthorize, req{remote: deviceClientAddr})
		if res.code != http.StatusTooManyRequests || res.header.Get("Retry-After") == "" || !strings.Contains(res.body, `"slow_down"`) {
			t.Errorf("third: got %d %s, want 429 with Retry-After", res.code, res.body)
		}
		if res := f.post(t, routeURL+pathDeviceAuthorize, req{remote: "203.0.113.9:1"}); res.code != http.StatusOK {
			t.Errorf("another address: got %d, want 200", res.code)
		}
		if !strings.Contains(strings.Join(f.limited, ","), LimitLoginRate) {
			t.Errorf("limits reported: %v", f.limited)
		}
	})
	t.Run("pending device sign-ins count against LIMIT_PENDING_SIGN_INS", func(t *testing.T) {
		f := newFixture(t)
		f.a.opts.PendingSignIns = 2
		f.startDevice(t, routeURL)
		f.startDevice(t, otherURL)
		res := f.post(t, routeURL+pathDeviceAuthorize, req{})
		if res.code != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" {
			t.Errorf("third: got %d %s, want 503 with Retry-After", res.code, res.body)
		}
		f.advance(session.DeviceLifetime)
		f.startDevice(t, routeURL)
	})
}

// TestDeviceSignIn is the whole flow, step by step: the client asks and
// polls, the person signs in, sees who asked, approves, and the client
// gets the route's token for the person's session, once.
func TestDeviceSignIn(t *testing.T) {
	f := newFixture(t)
	d := f.startDevice(t, routeURL)
	if a := f.pollDevice(t, routeURL, d.DeviceCode); a.code != http.StatusBadRequest || a.Error != "authorization_pending" {
		t.Fatalf("first poll: got %+v, want authorization_pending", a)
	}
	f.advance(time.Second)
	if a := f.pollDevice(t, routeURL, d.DeviceCode); a.Error != "slow_down" {
		t.Errorf("a poll a second later: got %+v, want slow_down", a)
	}

	// Not signed in: the page sends the browser to sign in and back to
	// the same address, code and all.
	res := f.get(t, d.VerificationURIComplete, req{header: []string{"Accept", browserAccept}})
	if res.code != http.StatusFound || !browserSignInLocation(res.location, d.VerificationURIComplete) {
		t.Fatalf("not signed in: got %d to %q, want to sign in and come back", res.code, res.location)
	}

	s := f.signIn(t)
	res, conf := f.openDevicePage(t, d.VerificationURIComplete, s)
	if res.code != http.StatusOK {
		t.Fatalf("confirmation page: got %d %s", res.code, res.body)
	}
	for _, want := range []string{
		`<dd id="client">198.51.100.23</dd>`,
		`<dd id="user-agent">` + html.EscapeString(deviceClientUA) + `</dd>`,
		`<dd id="route">` + routeURL + `</dd>`,
		`<dd id="requested">` + f.clock().Add(-time.Second).UTC().Format("2006-01-02 15:04:05 UTC"),
		`<b id="email">someuser@example.com</b>`,
		`<code id="code">` + d.UserCode + `</code>`,
		`id="approve"`, `id="deny"`, `method="post"`,
	} {
		if !strings.Contains(res.body, want) {
			t.Errorf("the confirmation page lacks %q:\n%s", want, res.body)
		}
	}
	if res.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("the confirmation page may be framed: %v", res.header)
	}
	// Seeing the page approves nothing.
	f.advance(10 * time.Second)
	if a := f.pollDevice(t, routeURL, d.DeviceCode); a.Error != "authorization_pending" {
		t.Errorf("poll before approving: got %+v, want authorization_pending", a)
	}

	res = f.decide(t, s, conf.form, "approve")
	if res.code != http.StatusOK || !strings.Contains(res.body, "Approved") {
		t.Fatalf("approve: got %d %s", res.code, res.body)
	}
	f.advance(10 * time.Second)
	a := f.pollDevice(t, routeURL, d.DeviceCode)
	if a.code != http.StatusOK || a.AccessToken == "" || a.TokenType != "Pomerium" ||
		a.ExpiresIn != int64(DefaultAccessTokenLifetime/time.Second) || !strings.HasPrefix(a.RefreshToken, renewalPrefix) {
		t.Fatalf("poll after approving: got %+v, want the token", a)
	}
	c, err := f.keys.Verify(a.AccessToken, routeHost, f.clock())
	if err != nil || c.SessionID != s.claims.SessionID || c.Email != "someuser@example.com" {
		t.Fatalf("the token: %+v, %v; want the person's session on this route", c, err)
	}
	// The approval and the device's token are in the audit trail, with
	// the session they share.
	if diff := cmp.Diff([]Activity{
		{Action: ActivityDeviceApproved, Email: "someuser@example.com", Subject: "user-1", SessionID: s.claims.SessionID, Route: routeHost},
		{Action: ActivityDeviceSignIn, Email: "someuser@example.com", Subject: "user-1", SessionID: s.claims.SessionID, Route: routeHost},
	}, f.deviceRecords()); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	// The token opens the route as the person, as the loopback login's does.
	if res := f.whoAmI(t, "application/json", req{header: []string{"Authorization", "Pomerium " + a.AccessToken}}); res.code != http.StatusOK || !strings.Contains(res.body, "someuser@example.com") {
		t.Errorf("who-am-I with the device's token: got %d %s", res.code, res.body)
	}

	t.Run("a device code is redeemed once", func(t *testing.T) {
		f.advance(10 * time.Second)
		if a := f.pollDevice(t, routeURL, d.DeviceCode); a.code != http.StatusBadRequest || a.Error != "invalid_grant" {
			t.Errorf("again: got %+v, want invalid_grant", a)
		}
	})
	t.Run("a decision is made once", func(t *testing.T) {
		if res := f.decide(t, s, conf.form, "deny"); res.code != http.StatusConflict {
			t.Errorf("deny after approving: got %d %s, want 409", res.code, res.body)
		}
		if res, _ := f.openDevicePage(t, d.VerificationURIComplete, s); res.code != http.StatusNotFound || !strings.Contains(res.body, `id="problem"`) {
			t.Errorf("the page again: got %d, want 404 with the code entry form", res.code)
		}
	})
	t.Run("signing out ends the device's token too", func(t *testing.T) {
		if err := f.store.Delete(t.Context(), s.claims.SessionID); err != nil {
			t.Fatal(err)
		}
		if res := f.whoAmI(t, "application/json", req{header: []string{"Authorization", "Pomerium " + a.AccessToken}}); res.code != http.StatusUnauthorized {
			t.Errorf("got %d, want 401", res.code)
		}
	})
}

func TestDeviceDenied(t *testing.T) {
	f := newFixture(t)
	d := f.startDevice(t, routeURL)
	s := f.signIn(t)
	_, conf := f.openDevicePage(t, d.VerificationURIComplete, s)
	if res := f.decide(t, s, conf.form, "deny"); res.code != http.StatusOK || !strings.Contains(res.body, "Denied") {
		t.Fatalf("deny: got %d %s", res.code, res.body)
	}
	if a := f.pollDevice(t, routeURL, d.DeviceCode); a.Error != "access_denied" {
		t.Errorf("poll: got %+v, want access_denied", a)
	}
	if diff := cmp.Diff([]Activity{
		{Action: ActivityDeviceDenied, Email: "someuser@example.com", Subject: "user-1", SessionID: s.claims.SessionID, Route: routeHost},
	}, f.deviceRecords()); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	f.advance(10 * time.Second)
	if a := f.pollDevice(t, routeURL, d.DeviceCode); a.Error != "invalid_grant" {
		t.Errorf("again: got %+v, want invalid_grant", a)
	}
}

func TestDeviceExpired(t *testing.T) {
	f := newFixture(t)
	d := f.startDevice(t, routeURL)
	s := f.signIn(t)
	_, conf := f.openDevicePage(t, d.VerificationURIComplete, s)
	f.advance(session.DeviceLifetime)
	if res, _ := f.openDevicePage(t, d.VerificationURIComplete, s); res.code != http.StatusNotFound {
		t.Errorf("the page of an expired code: got %d, want 404", res.code)
	}
	if res := f.decide(t, s, conf.form, "approve"); res.code == http.StatusOK {
		t.Errorf("approving an expired code: got %d %s", res.code, res.body)
	}
	if a := f.pollDevice(t, routeURL, d.DeviceCode); a.Error != "expired_token" {
		t.Errorf("poll: got %+v, want expired_token", a)
	}
}

// TestDeviceForeignCodes: a code only works for the request and the
// route it was issued for, and only the device code redeems.
func TestDeviceForeignCodes(t *testing.T) {
	f := newFixture(t)
	d := f.startDevice(t, routeURL)
	other := f.startDevice(t, routeURL)
	s := f.signIn(t)
	_, conf := f.openDevicePage(t, d.VerificationURIComplete, s)
	if res := f.decide(t, s, conf.form, "approve"); res.code != http.StatusOK {
		t.Fatalf("approve: got %d %s", res.code, res.body)
	}
	for name, code := range map[string]string{
		"a made-up device code":            session.NewDeviceCode(),
		"the user code":                    d.UserCode,
		"the user code without its dash":   strings.ReplaceAll(d.UserCode, "-", ""),
		"a device code cut short":          d.DeviceCode[:len(d.DeviceCode)-1],
		"the device code in another case":  strings.ToLower(d.DeviceCode),
		"another request's device code":    other.DeviceCode,
		"the device code with a space":     d.DeviceCode + " ",
		"the device code, then an another": d.DeviceCode + other.DeviceCode,
	} {
		f.advance(10 * time.Second)
		a := f.pollDevice(t, routeURL, code)
		if a.code == http.StatusOK || (name != "another request's device code" && a.Error != "invalid_grant") {
			t.Errorf("%s: got %+v, want invalid_grant", name, a)
		}
	}
	f.advance(10 * time.Second)
	if a := f.pollDevice(t, otherURL, d.DeviceCode); a.Error != "invalid_grant" {
		t.Errorf("the device code on another route: got %+v, want invalid_grant", a)
	}
	// None of those spent it: its own client gets the token, once.
	if a := f.pollDevice(t, routeURL, d.DeviceCode); a.code != http.StatusOK {
		t.Fatalf("its own client: got %+v", a)
	}
	if a := f.pollDevice(t, routeURL, other.DeviceCode); a.Error != "authorization_pending" {
		t.Errorf("the other request: got %+v, want still pending", a)
	}

	t.Run("a user code is approved on its own route's page only", func(t *testing.T) {
		there := f.startDevice(t, otherURL)
		page := routeURL + pathDevice + "?" + url.Values{"user_code": {there.UserCode}}.Encode()
		if res, _ := f.openDevicePage(t, page, s); res.code != http.StatusNotFound || strings.Contains(res.body, `id="approve"`) {
			t.Errorf("another route's code on this route's page: got %d", res.code)
		}
	})
	t.Run("typed codes are read as people type them", func(t *testing.T) {
		typed := strings.ToLower(strings.ReplaceAll(other.UserCode, "-", " "))
		res, _ := f.openDevicePage(t, routeURL+pathDevice+"?"+url.Values{"user_code": {typed}}.Encode(), s)
		if res.code != http.StatusOK || !strings.Contains(res.body, `<code id="code">`+other.UserCode+`</code>`) {
			t.Errorf("got %d %s", res.code, res.body)
		}
		for _, bad := range []string{"AAAA-AAAA", "BCDF", "<script>", strings.Repeat("B", 1000)} {
			res, _ := f.openDevicePage(t, routeURL+pathDevice+"?"+url.Values{"user_code": {bad}}.Encode(), s)
			if res.code != http.StatusBadRequest || strings.Contains(res.body, "<script>") {
				t.Errorf("%.20q: got %d", bad, res.code)
			}
		}
	})
}

// TestDeviceConfirmationCSRF: only the confirmation page, in the
// person's own browser, approves: not another site's form, not a form
// without the page's token, not the token of another person's page or of
// another code.
func TestDeviceConfirmationCSRF(t *testing.T) {
	f := newFixture(t)
	d := f.startDevice(t, routeURL)
	s := f.signIn(t)
	_, conf := f.openDevicePage(t, d.VerificationURIComplete, s)
	mallory := f.signIn(t) // another session (the same fake person: what matters is the session)
	_, malloryConf := f.openDevicePage(t, d.VerificationURIComplete, mallory)
	other := f.startDevice(t, routeURL)
	_, otherConf := f.openDevicePage(t, other.VerificationURIComplete, s)

	withCSRF := func(csrf string) url.Values {
		v := cloneValues(conf.form)
		v.Set("csrf", csrf)
		return v
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		header []string
	}{
		{"a cross-site form", conf.form, []string{"Sec-Fetch-Site", "cross-site"}},
		{"a sibling host's form", conf.form, []string{"Sec-Fetch-Site", "same-site"}},
		{"an old browser's cross-origin form", conf.form, []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}},
		{"no token", withCSRF(""), nil},
		{"a made-up token", withCSRF("AAAA"), nil},
		{"another session's token", withCSRF(malloryConf.form.Get("csrf")), nil},
		{"another code's token", withCSRF(otherConf.form.Get("csrf")), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.decide(t, s, tc.form, "approve", tc.header...)
			if res.code != http.StatusForbidden {
				t.Errorf("got %d %s, want 403", res.code, res.body)
			}
		})
	}
	t.Run("without the session cookie", func(t *testing.T) {
		form := cloneValues(conf.form)
		form.Set("decision", "approve")
		if res := f.post(t, routeURL+pathDevice, req{header: []string{"Accept", browserAccept}, form: form}); res.code != http.StatusUnauthorized {
			t.Errorf("got %d, want 401", res.code)
		}
	})
	f.advance(10 * time.Second)
	if a := f.pollDevice(t, routeURL, d.DeviceCode); a.Error != "authorization_pending" {
		t.Fatalf("after the refused attempts: got %+v, want still pending", a)
	}
	if res := f.decide(t, s, conf.form, "approve"); res.code != http.StatusOK {
		t.Errorf("the page's own form: got %d %s", res.code, res.body)
	}
}

func TestDeviceLimits(t *testing.T) {
	t.Run("codes looked up count against the sign-in rate", func(t *testing.T) {
		f := newFixture(t)
		s := f.signIn(t)
		f.a.opts.SignInRate = limit.NewRate(3, 0)
		var last *response
		for i := range 4 {
			last, _ = f.openDevicePage(t, routeURL+pathDevice+"?user_code=BCDF-GHJ"+string("KLMN"[i]), s)
		}
		if last.code != http.StatusTooManyRequests {
			t.Errorf("fourth guess: got %d, want 429", last.code)
		}
		// The entry form itself is no guess.
		if res, _ := f.openDevicePage(t, routeURL+pathDevice, s); res.code != http.StatusOK || !strings.Contains(res.body, `name="user_code"`) {
			t.Errorf("the entry form: got %d", res.code)
		}
	})
	t.Run("polls are bounded per client address", func(t *testing.T) {
		f := newFixture(t)
		var last tokenAnswer
		for range DefaultDevicePollsPerMinute + 1 {
			last = f.pollDevice(t, routeURL, "made-up")
		}
		if last.code != http.StatusTooManyRequests || last.Error != "slow_down" {
			t.Errorf("got %+v, want 429 slow_down", last)
		}
	})
}

func TestDeviceTokenRequests(t *testing.T) {
	f := newFixture(t)
	d := f.startDevice(t, routeURL)
	for _, tc := range []struct {
		name      string
		method    string
		target    string
		form      url.Values
		wantCode  int
		wantError string
	}{
		{"GET", "GET", routeURL + pathDeviceToken, nil, http.StatusMethodNotAllowed, "invalid_request"},
		{"no grant type", "POST", routeURL + pathDeviceToken, url.Values{"device_code": {d.DeviceCode}}, 400, "invalid_request"},
		{"another grant type", "POST", routeURL + pathDeviceToken, url.Values{"grant_type": {"authorization_code"}, "device_code": {d.DeviceCode}}, 400, "unsupported_grant_type"},
		{"no device code", "POST", routeURL + pathDeviceToken, url.Values{"grant_type": {deviceGrantType}}, 400, "invalid_request"},
		{"two device codes", "POST", routeURL + pathDeviceToken, url.Values{"grant_type": {deviceGrantType}, "device_code": {d.DeviceCode, d.DeviceCode}}, 400, "invalid_request"},
		{"the device code in the URL", "POST", routeURL + pathDeviceToken + "?device_code=" + d.DeviceCode, url.Values{"grant_type": {deviceGrantType}}, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do(t, tc.method, tc.target, req{form: tc.form})
			var a tokenAnswer
			if json.Unmarshal([]byte(res.body), &a); res.code != tc.wantCode || a.Error != tc.wantError {
				t.Errorf("got %d %s, want %d %s", res.code, res.body, tc.wantCode, tc.wantError)
			}
		})
	}
	t.Run("the approving session ended before the poll", func(t *testing.T) {
		s := f.signIn(t)
		_, conf := f.openDevicePage(t, d.VerificationURIComplete, s)
		if res := f.decide(t, s, conf.form, "approve"); res.code != http.StatusOK {
			t.Fatal(res.body)
		}
		if err := f.store.Delete(t.Context(), s.claims.SessionID); err != nil {
			t.Fatal(err)
		}
		if a := f.pollDevice(t, routeURL, d.DeviceCode); a.Error != "access_denied" || a.AccessToken != "" {
			t.Errorf("got %+v, want access_denied", a)
		}
	})
}

// FuzzDeviceTokenForm: whatever body a client polls with, the answer is
// an OAuth error in JSON, never a token and never a crash, and the one
// real device code's grant is unchanged.
func FuzzDeviceTokenForm(f *testing.F) {
	fx := newFixture(f)
	d := fx.startDevice(f, routeURL)
	f.Add("grant_type=" + url.QueryEscape(deviceGrantType) + "&device_code=" + d.DeviceCode[:10])
	f.Add("grant_type=" + url.QueryEscape(deviceGrantType) + "&device_code=" + d.UserCode)
	f.Add("grant_type=" + url.QueryEscape(deviceGrantType) + "&device_code=%zz")
	f.Add("grant_type=" + url.QueryEscape(deviceGrantType) + "&device_code=a&device_code=b")
	f.Add("grant_type=" + url.QueryEscape(deviceGrantType) + ";device_code=x")
	f.Add("device_code=" + d.DeviceCode[1:])
	f.Add(strings.Repeat("a=b&", 1000))
	f.Add("")
	errs := map[string]bool{"invalid_request": true, "unsupported_grant_type": true, "invalid_grant": true, "slow_down": true}
	f.Fuzz(func(t *testing.T, body string) {
		if strings.Contains(body, d.DeviceCode) {
			return
		}
		r, _ := http.NewRequest("POST", routeURL+pathDeviceToken, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		fx.route(routeHost).ServeHTTP(w, r)
		var a tokenAnswer
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || a.AccessToken != "" || !errs[a.Error] || w.Code == http.StatusOK {
			t.Fatalf("body %q: got %d %s", body, w.Code, w.Body)
		}
		// Reset the poll rate so that the fuzzer keeps reaching the parser.
		fx.a.devicePolls = limit.NewRate(DefaultDevicePollsPerMinute, 0)
	})
	if a := fx.pollDevice(f, routeURL, d.DeviceCode); a.Error != "authorization_pending" {
		f.Errorf("the real code after fuzzing: got %+v", a)
	}
}

// deviceRecords is what Options.Record was told of device sign-ins.
func (f *fixture) deviceRecords() []Activity {
	f.mu.Lock()
	defer f.mu.Unlock()
	var got []Activity
	for _, a := range f.records {
		if strings.HasPrefix(a.Action, "device-") {
			got = append(got, a)
		}
	}
	return got
}
