package route

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// requestTimeout bounds each request to the server: both endpoints answer
// from memory.
const requestTimeout = 30 * time.Second

// A Client talks to one Portcullis route.
type Client struct {
	// URL is the route's canonical URL (see ParseURL).
	URL *url.URL
	// UserAgent is what the client calls itself in a device sign-in's
	// requests ("portcullis-cli" if empty): the person who approves it
	// sees it.
	UserAgent string
	http      *http.Client
}

// New returns a client for the route at u with the given TLS options.
func New(u *url.URL, opts TLSOptions) (*Client, error) {
	cfg, err := opts.Config()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &Client{URL: u, http: &http.Client{
		Transport: tr,
		Timeout:   requestTimeout,
		// Neither endpoint redirects a client that asks as the CLI does;
		// a redirect would carry the token somewhere it was not meant to go.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// CloseIdleConnections closes kept-alive connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

func (c *Client) endpoint(path string, q url.Values) string {
	u := *c.URL
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery = q.Encode()
	return u.String()
}

// A Grant is what a sign-in or a renewal gives: the route's token, and
// the credential that renews it without a browser ("" from a server that
// does not offer renewal).
type Grant struct {
	Token   string
	Renewal string
}

// LoginURL asks the route where to sign in: the server answers with a URL
// to open in a browser, which after sign-in redirects to redirectURI
// (a loopback URL) with ?pomerium_jwt=<token>, and, as asked here,
// &portcullis_renewal=<credential>.
func (c *Client) LoginURL(ctx context.Context, redirectURI string) (*url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		c.endpoint("/.pomerium/api/v1/login", url.Values{"pomerium_redirect_uri": {redirectURI}, "portcullis_renewal": {"1"}}), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, explain(fmt.Sprintf("asking %s for a sign-in URL", c.URL), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("asking %s for a sign-in URL: it has no login endpoint (404 for /.pomerium/api/v1/login); is this the address of a Portcullis route?", c.URL)
	default:
		return nil, fmt.Errorf("asking %s for a sign-in URL: the server answered %s: %s", c.URL, resp.Status, serverMessage(body))
	}
	u, err := url.Parse(strings.TrimSpace(string(body)))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// Only a web address is ever handed to a browser command.
		return nil, fmt.Errorf("asking %s for a sign-in URL: the answer is not a web address: %s", c.URL, printable(body))
	}
	return u, nil
}

// Identity is what the route says about a token's person.
type Identity struct {
	Email     string    `json:"email"`
	User      string    `json:"user"`
	Groups    []string  `json:"groups"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ErrRejected means the server no longer accepts the token: its session
// was signed out or has expired, or the server's keys changed.
var ErrRejected = errors.New("the server no longer accepts this credential")

// WhoAmI asks the route whom jwt signs in. It returns ErrRejected if the
// server refuses the token (401 or 403), and another error if it could
// not tell.
func (c *Client) WhoAmI(ctx context.Context, jwt string) (*Identity, error) {
	resp, body, err := c.getJSON(ctx, "/.pomerium/", jwt, 64<<10, fmt.Sprintf("checking the cached credential with %s", c.URL))
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		if msg, ok := statusMessage(body); ok {
			return nil, fmt.Errorf("%w: %s", ErrRejected, msg)
		}
		return nil, ErrRejected
	default:
		return nil, fmt.Errorf("checking the cached credential with %s: the server answered %s: %s", c.URL, resp.Status, serverMessage(body))
	}
	var id Identity
	if err := json.Unmarshal(body, &id); err != nil {
		return nil, fmt.Errorf("checking the cached credential with %s: the answer is not the JSON of /.pomerium/: %w", c.URL, err)
	}
	return &id, nil
}

// getJSON GETs path with jwt as the bearer token, asking for JSON, and
// reads at most limit bytes of the answer. doing says what for, in a
// transport error.
func (c *Client) getJSON(ctx context.Context, path, jwt string, limit int64, doing string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint(path, nil), nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer Pomerium-"+jwt)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, explain(doing, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
	return resp, body, nil
}

// explain words a transport error for the person at the terminal.
func explain(doing string, err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordHeader tls.RecordHeaderError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: interrupted", doing)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%s: the server's TLS certificate is signed by an unknown authority; "+
			"pass the CA certificate with --ca-cert FILE (or --alternate-ca-path FILE), "+
			"or --disable-tls-verification to skip the check (insecure: anyone on the way can take your credential)", doing)
	case errors.As(err, &hostname):
		return fmt.Errorf("%s: the server's TLS certificate is not valid for this name: %v", doing, hostname.Error())
	case errors.As(err, &invalid):
		return fmt.Errorf("%s: the server's TLS certificate is not valid: %v", doing, invalid.Error())
	case errors.As(err, &recordHeader) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%s: the server does not speak TLS there; should the URL start with http://?", doing)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("%s: cannot resolve %s: %v; check the URL", doing, dnsErr.Name, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: cannot reach the server (connection refused); check the URL and that Portcullis is running", doing)
	case isTimeout(err):
		return fmt.Errorf("%s: the server did not answer in time; check the URL and your network", doing)
	}
	return fmt.Errorf("%s: cannot reach the server: %w", doing, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// statusMessage returns the message of a Kubernetes Status body, which
// is how Portcullis answers an error, made printable.
func statusMessage(body []byte) (string, bool) {
	var status struct {
		Kind    string
		Message string
	}
	if json.Unmarshal(body, &status) != nil || status.Kind != "Status" || status.Message == "" {
		return "", false
	}
	return printable([]byte(status.Message)), true
}

// serverMessage is what an error answer says: a Status's message, or the
// start of whatever else the server sent (an older Portcullis answered
// the login endpoint in plain text), made printable.
func serverMessage(body []byte) string {
	if msg, ok := statusMessage(body); ok {
		return msg
	}
	return printable(body)
}

// printable returns the first line of b, at most 200 characters, without
// control characters: the server's words go to a terminal.
func printable(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	if s == "" {
		return "(no message)"
	}
	return s
}
