package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// A Browser is an HTTP client with a cookie jar that signs in the way a
// person does: it follows redirects, and when a page shows a login form
// (a username and a password field) it fills and submits it. It stands in
// for a real browser where the browser itself is not under test.
type Browser struct {
	Client *http.Client
	// Visited lists every URL requested, in order, for assertions.
	Visited []string
}

// NewBrowser returns a Browser that trusts tlsConfig's roots (nil: system).
func NewBrowser(tlsConfig *tls.Config) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{Client: &http.Client{
		Jar:       jar,
		Transport: &http.Transport{TLSClientConfig: tlsConfig},
		// Redirects are followed by SignIn itself so that it can stop at
		// a target and record each hop.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// SignIn opens start, follows redirects and submits login forms with the
// given credentials, until a redirect points at a URL beginning with stopAt
// (returned without being requested) or a page without a login form is
// reached (its URL is returned; the body is in page). At most 20 hops.
func (b *Browser) SignIn(ctx context.Context, start, username, password, stopAt string) (final *url.URL, page string, err error) {
	next, err := url.Parse(start)
	if err != nil {
		return nil, "", fmt.Errorf("browser: bad start URL: %w", err)
	}
	method, form, origin := http.MethodGet, url.Values(nil), ""
	submitted := false
	for hop := 0; hop < 20; hop++ {
		if stopAt != "" && strings.HasPrefix(next.String(), stopAt) {
			return next, "", nil
		}
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, next.String(), body)
		if err != nil {
			return nil, "", err
		}
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			// As a browser does for a form POST: the page's origin.
			req.Header.Set("Origin", origin)
		}
		b.Visited = append(b.Visited, method+" "+next.String())
		resp, err := b.Client.Do(req)
		if err != nil {
			return nil, "", fmt.Errorf("browser: %s %s: %w", method, next.Redacted(), err)
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		method, form = http.MethodGet, nil
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			if next, err = next.Parse(loc); err != nil {
				return nil, "", fmt.Errorf("browser: bad redirect %q: %w", loc, err)
			}
			continue
		}
		action, fields, ok := loginForm(string(raw))
		if !ok {
			if resp.StatusCode >= 400 {
				return next, string(raw), fmt.Errorf("browser: %s %s: %s: %s", req.Method, next.Redacted(), resp.Status, strings.TrimSpace(string(raw)))
			}
			return next, string(raw), nil
		}
		if submitted {
			return nil, string(raw), fmt.Errorf("browser: the login form came back after submitting it: sign-in refused for %q", username)
		}
		submitted = true
		for name := range fields {
			switch {
			case strings.Contains(name, "password"):
				fields.Set(name, password)
			case strings.Contains(name, "user") || strings.Contains(name, "email") || name == "login":
				fields.Set(name, username)
			}
		}
		origin = next.Scheme + "://" + next.Host
		if next, err = next.Parse(action); err != nil {
			return nil, "", fmt.Errorf("browser: bad form action %q: %w", action, err)
		}
		method, form = http.MethodPost, fields
	}
	return nil, "", fmt.Errorf("browser: more than 20 redirects from %s", start)
}

// loginForm finds the first form with a password input and returns its
// action and all its named inputs with their values.
func loginForm(page string) (action string, fields url.Values, ok bool) {
	z := html.NewTokenizer(strings.NewReader(page))
	inForm, hasPassword := false, false
	for {
		switch z.Next() {
		case html.ErrorToken:
			return "", nil, false
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			switch t.Data {
			case "form":
				inForm, hasPassword = true, false
				action, fields = attr(t, "action"), url.Values{}
			case "input":
				if !inForm || attr(t, "name") == "" {
					continue
				}
				if attr(t, "type") == "password" {
					hasPassword = true
				}
				fields.Set(attr(t, "name"), attr(t, "value"))
			}
		case html.EndTagToken:
			if t := z.Token(); t.Data == "form" {
				if hasPassword {
					return action, fields, true
				}
				inForm = false
			}
		}
	}
}

func attr(t html.Token, name string) string {
	for _, a := range t.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}
