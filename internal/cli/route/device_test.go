package route

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// deviceServer is a route stand-in whose device endpoints answer with
// status and body, recording the last request's form and user agent.
func deviceServer(t *testing.T, status int, body string) (*Client, *http.Request) {
	t.Helper()
	got := &http.Request{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		*got = *r
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	u, err := ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(u, TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.UserAgent = "portcullis-cli/test (linux/amd64)"
	return c, got
}

func TestDeviceAuthorize(t *testing.T) {
	c, got := deviceServer(t, 200, `{"device_code":"dc","user_code":"BCDF-GHJK","verification_uri":"https://k8s.example.com/.pomerium/device",`+
		`"verification_uri_complete":"https://k8s.example.com/.pomerium/device?user_code=BCDF-GHJK","expires_in":600,"interval":5}`)
	d, err := c.DeviceAuthorize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.DeviceCode != "dc" || d.UserCode != "BCDF-GHJK" || d.VerificationURI.String() != "https://k8s.example.com/.pomerium/device" ||
		d.VerificationURIComplete.Query().Get("user_code") != "BCDF-GHJK" || d.ExpiresIn != 10*time.Minute || d.Interval != 5*time.Second {
		t.Errorf("got %+v", d)
	}
	if got.Method != "POST" || got.URL.Path != "/.pomerium/api/v1/device/authorize" || got.UserAgent() != "portcullis-cli/test (linux/amd64)" {
		t.Errorf("request: %s %s, User-Agent %q", got.Method, got.URL.Path, got.UserAgent())
	}

	for _, tc := range []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"an older Portcullis", 404, `{"kind":"Status","message":"portcullis: /.pomerium/api/v1/device/authorize is not a Portcullis endpoint"}`, "it has no device sign-in"},
		{"too many", 429, `{"error":"slow_down","error_description":"too many sign-in requests from your address: try again in 20 seconds"}`,
			"the server answered 429: too many sign-in requests from your address: try again in 20 seconds"},
		{"not JSON", 200, `<html>`, "the answer is not a device authorization"},
		{"a verification address that is no web address", 200, `{"device_code":"dc","user_code":"B","verification_uri":"javascript:alert(1)","expires_in":600}`,
			"the verification address is not a web address"},
		{"a verification address with a terminal escape", 200, "{\"device_code\":\"dc\",\"user_code\":\"B\",\"verification_uri\":\"https://k8s.example.com/\\u001b[2J\",\"expires_in\":600}",
			"the verification address is not a web address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := deviceServer(t, tc.status, tc.body)
			if _, err := c.DeviceAuthorize(context.Background()); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
	t.Run("no interval means five seconds, a user code is made printable", func(t *testing.T) {
		c, _ := deviceServer(t, 200, "{\"device_code\":\"dc\",\"user_code\":\"BCDF\\u001b[2J-GHJK\",\"verification_uri\":\"https://k8s.example.com/d\",\"expires_in\":600}")
		d, err := c.DeviceAuthorize(context.Background())
		if err != nil || d.Interval != 5*time.Second || d.UserCode != "BCDF[2J-GHJK" || d.VerificationURIComplete != nil {
			t.Errorf("got %+v, %v", d, err)
		}
	})
}

func TestDeviceToken(t *testing.T) {
	c, got := deviceServer(t, 200, `{"access_token":"the.jwt.token","token_type":"Pomerium","expires_in":300,"refresh_token":"portcullis-renewal.x"}`)
	tok, err := c.DeviceToken(context.Background(), "dc")
	if err != nil || tok != (Grant{Token: "the.jwt.token", Renewal: "portcullis-renewal.x"}) {
		t.Fatalf("got %+v, %v", tok, err)
	}
	if got.URL.Path != "/.pomerium/api/v1/device/token" || got.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" ||
		got.PostForm.Get("device_code") != "dc" || got.URL.RawQuery != "" {
		t.Errorf("request: %s %v %q", got.URL.Path, got.PostForm, got.URL.RawQuery)
	}
	for _, tc := range []struct {
		status int
		body   string
		want   error
	}{
		{400, `{"error":"authorization_pending"}`, ErrAuthorizationPending},
		{400, `{"error":"slow_down"}`, ErrSlowDown},
		{429, `{"error":"slow_down"}`, ErrSlowDown},
		{400, `{"error":"access_denied","error_description":"the sign-in was denied"}`, ErrAccessDenied},
		{400, `{"error":"expired_token"}`, ErrExpiredToken},
		{503, `{"error":"temporarily_unavailable"}`, ErrDeviceUnavailable},
		{400, `{"error":"invalid_grant","error_description":"this device code was used already: start again"}`, nil},
		{200, `{}`, nil},
	} {
		t.Run(tc.body, func(t *testing.T) {
			c, _ := deviceServer(t, tc.status, tc.body)
			tok, err := c.DeviceToken(context.Background(), "dc")
			if tok != (Grant{}) || err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("got %+v, %v; want %v", tok, err, tc.want)
			}
		})
	}
	t.Run("a server that cannot be reached can be polled again", func(t *testing.T) {
		c, _ := deviceServer(t, 200, "")
		c.URL.Host = "127.0.0.1:1"
		if _, err := c.DeviceToken(context.Background(), "dc"); !errors.Is(err, ErrDeviceUnavailable) {
			t.Errorf("got %v, want ErrDeviceUnavailable", err)
		}
	})
}
