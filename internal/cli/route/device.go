package route

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DeviceAuthorization is a route's answer to a device sign-in request
// (RFC 8628 §3.2): the code to poll with, and what the person is to open
// and type.
type DeviceAuthorization struct {
	DeviceCode              string
	UserCode                string
	VerificationURI         *url.URL
	VerificationURIComplete *url.URL // nil if the server gave none
	ExpiresIn               time.Duration
	Interval                time.Duration
}

// The answers of a device sign-in's poll that are not a token (RFC 8628
// §3.5). DeviceToken returns them wrapped, with the server's words.
var (
	ErrAuthorizationPending = errors.New("the sign-in is not approved yet")
	ErrSlowDown             = errors.New("polled too often")
	ErrAccessDenied         = errors.New("the sign-in was denied")
	ErrExpiredToken         = errors.New("the sign-in expired before it was approved")
	// ErrDeviceUnavailable means the server could not answer now (503):
	// polling again later may work.
	ErrDeviceUnavailable = errors.New("the server cannot answer right now")
)

// deviceGrantType is the grant_type of a device code's poll (RFC 8628
// §3.4).
const deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// DeviceAuthorize asks the route for a device sign-in.
func (c *Client) DeviceAuthorize(ctx context.Context) (*DeviceAuthorization, error) {
	doing := fmt.Sprintf("asking %s for a device sign-in", c.URL)
	status, body, err := c.postForm(ctx, "/.pomerium/api/v1/device/authorize", url.Values{"client_id": {"portcullis-cli"}})
	if err != nil {
		return nil, explain(doing, err)
	}
	switch status {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("%s: it has no device sign-in (404 for /.pomerium/api/v1/device/authorize); is this the address of a Portcullis route? "+
			"A Portcullis older than device sign-in has none: sign in with --device=false instead", doing)
	default:
		return nil, fmt.Errorf("%s: the server answered %d: %s", doing, status, oauthMessage(body))
	}
	var raw struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int64  `json:"expires_in"`
		Interval                int64  `json:"interval"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || raw.DeviceCode == "" || raw.UserCode == "" || raw.ExpiresIn <= 0 {
		return nil, fmt.Errorf("%s: the answer is not a device authorization: %s", doing, printable(body))
	}
	d := &DeviceAuthorization{DeviceCode: raw.DeviceCode, UserCode: printable([]byte(raw.UserCode)),
		ExpiresIn: time.Duration(raw.ExpiresIn) * time.Second, Interval: time.Duration(raw.Interval) * time.Second}
	// RFC 8628 §3.2: interval defaults to 5 seconds.
	if d.Interval <= 0 {
		d.Interval = 5 * time.Second
	}
	// Only web addresses are shown to the person, as they are printed.
	if d.VerificationURI = webAddress(raw.VerificationURI); d.VerificationURI == nil {
		return nil, fmt.Errorf("%s: the verification address is not a web address: %s", doing, printable([]byte(raw.VerificationURI)))
	}
	d.VerificationURIComplete = webAddress(raw.VerificationURIComplete)
	return d, nil
}

// webAddress parses raw as an http(s) URL with a host, or returns nil.
func webAddress(raw string) *url.URL {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || printable([]byte(u.String())) != u.String() {
		return nil
	}
	return u
}

// DeviceToken polls the route once with deviceCode: it returns the grant
// once a person approved, or an error that wraps ErrAuthorizationPending,
// ErrSlowDown, ErrAccessDenied, ErrExpiredToken or ErrDeviceUnavailable,
// or says what else went wrong.
func (c *Client) DeviceToken(ctx context.Context, deviceCode string) (Grant, error) {
	doing := fmt.Sprintf("asking %s whether the sign-in was approved", c.URL)
	status, body, err := c.postForm(ctx, "/.pomerium/api/v1/device/token", url.Values{
		"grant_type": {deviceGrantType}, "device_code": {deviceCode}, "client_id": {"portcullis-cli"}})
	if err != nil {
		return Grant{}, fmt.Errorf("%w: %w", ErrDeviceUnavailable, explain(doing, err))
	}
	answer := tokenAnswer(body)
	switch {
	case status == http.StatusOK && answer.AccessToken != "":
		return Grant{Token: answer.AccessToken, Renewal: answer.RefreshToken}, nil
	case answer.Error == "authorization_pending":
		return Grant{}, ErrAuthorizationPending
	case answer.Error == "slow_down":
		return Grant{}, ErrSlowDown
	case answer.Error == "access_denied":
		return Grant{}, fmt.Errorf("%w: %s", ErrAccessDenied, oauthMessage(body))
	case answer.Error == "expired_token":
		return Grant{}, ErrExpiredToken
	case status == http.StatusServiceUnavailable || status == http.StatusBadGateway:
		return Grant{}, fmt.Errorf("%w: %s: the server answered %d: %s", ErrDeviceUnavailable, doing, status, oauthMessage(body))
	}
	return Grant{}, fmt.Errorf("%s: the server answered %d: %s", doing, status, oauthMessage(body))
}

// Renew trades the renewal credential for the route's next grant, without
// a browser. An error wrapping ErrRejected means the session is over
// (signed out, expired, or the credential was used already): sign in
// again. Any other error means the server could not tell.
func (c *Client) Renew(ctx context.Context, renewal string) (Grant, error) {
	doing := fmt.Sprintf("renewing the credential for %s", c.URL)
	status, body, err := c.postForm(ctx, "/.pomerium/api/v1/token", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {renewal}})
	if err != nil {
		return Grant{}, explain(doing, err)
	}
	answer := tokenAnswer(body)
	switch {
	case status == http.StatusOK && answer.AccessToken != "" && answer.RefreshToken != "":
		return Grant{Token: answer.AccessToken, Renewal: answer.RefreshToken}, nil
	case answer.Error == "invalid_grant":
		return Grant{}, fmt.Errorf("%s: %w: %s", doing, ErrRejected, oauthMessage(body))
	case status == http.StatusNotFound:
		// A server from before renewal: sign in as it expects.
		return Grant{}, fmt.Errorf("%s: %w: the server does not renew credentials", doing, ErrRejected)
	}
	return Grant{}, fmt.Errorf("%s: the server answered %d: %s", doing, status, oauthMessage(body))
}

// Exchange asks the sign-in service at this client's URL for a token for
// the route resource, with the renewal credential of another route's
// sign-in to the same service: the grant for resource, and the presented
// chain's next credential. An error wrapping ErrRejected means the
// session is over, or resource is not a route of that service.
func (c *Client) Exchange(ctx context.Context, renewal, resource string) (g Grant, next string, err error) {
	doing := fmt.Sprintf("asking %s for a credential for %s", c.URL, resource)
	status, body, err := c.postForm(ctx, "/.pomerium/api/v1/token", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {renewal}, "resource": {resource}})
	if err != nil {
		return Grant{}, "", explain(doing, err)
	}
	answer := tokenAnswer(body)
	switch {
	case status == http.StatusOK && answer.AccessToken != "" && answer.RefreshToken != "" && answer.Next != "":
		return Grant{Token: answer.AccessToken, Renewal: answer.RefreshToken}, answer.Next, nil
	case answer.Error == "invalid_grant" || answer.Error == "invalid_target" || status == http.StatusNotFound:
		return Grant{}, "", fmt.Errorf("%s: %w: %s", doing, ErrRejected, oauthMessage(body))
	}
	return Grant{}, "", fmt.Errorf("%s: the server answered %d: %s", doing, status, oauthMessage(body))
}

// Issuer is the sign-in service the route names in its discovery
// document (/.well-known/pomerium): the iss of its tokens. It is only
// compared with the issuer of tokens already held; nothing is sent to it
// on the route's word alone.
func (c *Client) Issuer(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint("/.well-known/pomerium", nil), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", explain(fmt.Sprintf("asking %s for its sign-in service", c.URL), err)
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer string `json:"issuer"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &doc) != nil || doc.Issuer == "" {
		return "", fmt.Errorf("asking %s for its sign-in service: the server answered %s without an issuer", c.URL, resp.Status)
	}
	return doc.Issuer, nil
}

// tokenAnswer reads a token endpoint's answer (RFC 6749 §5.1, §5.2).
func tokenAnswer(body []byte) (a struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Next         string `json:"portcullis_renewal_next"`
	Error        string `json:"error"`
}) {
	json.Unmarshal(body, &a)
	return a
}

// postForm POSTs form to the route's path and returns the status and at
// most 64 KiB of the body.
func (c *Client) postForm(ctx context.Context, path string, form url.Values) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(path, nil), strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	ua := c.UserAgent
	if ua == "" {
		ua = "portcullis-cli"
	}
	req.Header.Set("User-Agent", ua)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, nil
}

// oauthMessage is what an OAuth error answer says (error_description, else
// error), or else a Status's message or the start of the body, printable.
func oauthMessage(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) == nil && (e.Error != "" || e.Description != "") {
		if e.Description != "" {
			return printable([]byte(e.Description))
		}
		return printable([]byte(e.Error))
	}
	return serverMessage(body)
}
