package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// GitHub signs people in with GitHub's OAuth web application flow
// (https://docs.github.com/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps):
// OAuth 2.0, not OpenID Connect. It works with an OAuth app or a GitHub App.
//
// There is no ID token, hence no nonce. What binds the callback to the
// browser that started the sign-in is the state, which authenticate seals
// and ties to its CSRF cookie, and PKCE with S256, which GitHub supports
// since July 2025
// (https://github.blog/changelog/2025-07-14-pkce-support-for-oauth-and-github-app-authentication):
// a code taken from the callback cannot be exchanged without the verifier,
// which never leaves the server. The nonce passed to AuthCodeURL and
// Exchange is not used.
//
// Who signed in is read with the access token from GitHub's REST API on
// the configured host, over its TLS: GET /user (the subject is the numeric
// user ID, which unlike the login never changes hands), /user/emails (the
// primary address, and only if GitHub has verified it) and /user/teams
// (groups, as "org/team-slug"; organizations that restrict OAuth app
// access list only the teams of approved apps). The default scopes are
// user:email and read:org.
//
// IDP_PROVIDER_URL is GitHub's web URL: https://github.com by default, whose
// API is https://api.github.com; a GitHub Enterprise Cloud subdomain
// https://{name}.ghe.com, whose API is https://api.{name}.ghe.com; or a
// GitHub Enterprise Server, whose API is at /api/v3 on the same host.
type GitHub struct {
	opts  Options
	oauth *oauth2.Config
	api   *url.URL
	// tokenClient is opts.HTTPClient asking the token endpoint for JSON:
	// by default GitHub answers it form-encoded.
	tokenClient *http.Client
}

const (
	// githubAccessMark prefixes Tokens.RefreshToken when GitHub gave no
	// refresh token: an OAuth app's token (and a GitHub App's, with token
	// expiry turned off) does not expire until revoked, so Refresh renews
	// the identity by reading the user again with it. Revoking the app's
	// authorization then ends the session at its next refresh. The token
	// stays server-side like any refresh token.
	githubAccessMark = "github-access-token:"
	// githubRecheck is how long an identity read with a token that does
	// not expire is used before it is read again: team changes and a
	// revoked authorization take effect within it.
	githubRecheck = time.Hour
	// githubMaxPages bounds the pages of teams or emails read (100 each).
	// Stopping early would drop groups, which could skip a rule that
	// denies by group: more is an error instead.
	githubMaxPages = 20
	// githubMaxBody bounds one API answer.
	githubMaxBody = 4 << 20
)

func newGitHub(opts Options) (*GitHub, error) {
	web, err := url.Parse(opts.ProviderURL)
	if err != nil {
		return nil, fmt.Errorf("identity provider %q: IDP_PROVIDER_URL %q: %w", opts.Provider, opts.ProviderURL, err)
	}
	next := opts.HTTPClient.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	tokenClient := *opts.HTTPClient
	tokenClient.Transport = acceptJSON{next}
	return &GitHub{
		opts: opts,
		oauth: &oauth2.Config{
			ClientID:     opts.ClientID,
			ClientSecret: opts.ClientSecret,
			Endpoint: oauth2.Endpoint{
				AuthURL:  web.JoinPath("login/oauth/authorize").String(),
				TokenURL: web.JoinPath("login/oauth/access_token").String(),
				// As GitHub documents it: client_id and client_secret in
				// the form.
				AuthStyle: oauth2.AuthStyleInParams,
			},
			RedirectURL: opts.RedirectURL,
			Scopes:      opts.Scopes,
		},
		api:         githubAPI(web),
		tokenClient: &tokenClient,
	}, nil
}

// githubAPI is the REST API's base URL for GitHub's web URL web.
// https://docs.github.com/rest/using-the-rest-api/getting-started-with-the-rest-api
// https://docs.github.com/enterprise-cloud@latest/admin/data-residency/network-details-for-ghecom
func githubAPI(web *url.URL) *url.URL {
	host := strings.ToLower(web.Host)
	switch {
	case host == "github.com":
		return &url.URL{Scheme: "https", Host: "api.github.com"}
	case strings.HasSuffix(host, ".ghe.com") && !strings.HasPrefix(host, "api."):
		return &url.URL{Scheme: web.Scheme, Host: "api." + web.Host}
	}
	return web.JoinPath("api/v3")
}

// acceptJSON asks for a JSON answer where the request does not say.
type acceptJSON struct{ next http.RoundTripper }

func (t acceptJSON) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Accept") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Accept", "application/json")
	}
	return t.next.RoundTrip(r)
}

func (p *GitHub) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, p.tokenClient)
}

// AuthCodeURL is GitHub's authorize URL with state and the PKCE challenge.
// nonce is not used: see GitHub.
func (p *GitHub) AuthCodeURL(_ context.Context, state, _, verifier string) (string, error) {
	return p.oauth.AuthCodeURL(state, authOptions(p.opts.RequestParams, oauth2.S256ChallengeOption(verifier))...), nil
}

// Exchange trades the code and PKCE verifier for an access token and reads
// the user with it. nonce is not used: see GitHub.
func (p *GitHub) Exchange(ctx context.Context, code, verifier, _ string) (*Identity, *Tokens, error) {
	tok, err := p.oauth.Exchange(p.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, nil, classify("exchanging the authorization code", err)
	}
	id, err := p.user(ctx, tok.AccessToken)
	if err != nil {
		return nil, nil, err
	}
	return id, p.tokens(tok), nil
}

// Refresh renews the identity: with a refresh token (a GitHub App whose user
// tokens expire) by the refresh grant, then reading the user; with a marked
// access token (see githubAccessMark) by reading the user again.
func (p *GitHub) Refresh(ctx context.Context, refreshToken string) (*Identity, *Tokens, error) {
	if access, ok := strings.CutPrefix(refreshToken, githubAccessMark); ok {
		if access == "" {
			return nil, nil, errors.New("refreshing the session: no GitHub access token")
		}
		id, err := p.user(ctx, access)
		if err != nil {
			return nil, nil, err
		}
		return id, &Tokens{RefreshToken: refreshToken, Expiry: time.Now().Add(githubRecheck)}, nil
	}
	if refreshToken == "" {
		return nil, nil, errors.New("refreshing the session: GitHub gave no token to refresh with")
	}
	tok, err := p.oauth.TokenSource(p.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return nil, nil, classify("refreshing the session", err)
	}
	id, err := p.user(ctx, tok.AccessToken)
	if err != nil {
		return nil, nil, err
	}
	return id, p.tokens(tok), nil
}

// tokens keeps what Refresh needs from tok.
func (p *GitHub) tokens(tok *oauth2.Token) *Tokens {
	if tok.RefreshToken == "" {
		return &Tokens{RefreshToken: githubAccessMark + tok.AccessToken, Expiry: time.Now().Add(githubRecheck)}
	}
	// A GitHub App with expiring user tokens (eight hours; the refresh
	// token six months, and used once).
	expiry := tok.Expiry
	if expiry.IsZero() {
		expiry = time.Now().Add(githubRecheck)
	}
	return &Tokens{RefreshToken: tok.RefreshToken, Expiry: expiry}
}

// EndSessionURL is "": GitHub has no sign-out endpoint for applications.
func (p *GitHub) EndSessionURL(context.Context, string, string) string { return "" }

// user reads who holds token: ID, name, primary verified email and teams.
func (p *GitHub) user(ctx context.Context, token string) (*Identity, error) {
	var u struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
		Name  string `json:"name"`
	}
	if _, err := p.get(ctx, token, p.api.JoinPath("user").String(), &u); err != nil {
		return nil, err
	}
	if u.ID == 0 {
		return nil, errors.New("reading the GitHub user: the answer has no user ID")
	}
	type email struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	emails, err := getAll[email](ctx, p, token, p.apiURL("user/emails"))
	if err != nil {
		return nil, err
	}
	id := &Identity{Subject: strconv.FormatInt(u.ID, 10), Name: u.Name}
	if id.Name == "" {
		id.Name = u.Login
	}
	for _, e := range emails {
		// Only the address GitHub has verified: anyone can add any
		// address to their account.
		if e.Primary && e.Verified {
			id.Email = e.Email
		}
	}
	if id.Email == "" {
		return nil, fmt.Errorf("GitHub user %q has no verified primary email address: verify it at GitHub, then sign in again", u.Login)
	}
	type team struct {
		Slug         string `json:"slug"`
		Organization struct {
			Login string `json:"login"`
		} `json:"organization"`
	}
	teams, err := getAll[team](ctx, p, token, p.apiURL("user/teams"))
	if err != nil {
		return nil, err
	}
	for _, t := range teams {
		if t.Slug != "" && t.Organization.Login != "" {
			id.Groups = append(id.Groups, t.Organization.Login+"/"+t.Slug)
		}
	}
	return id, nil
}

// apiURL is the first page, of the largest size, of a list at path.
func (p *GitHub) apiURL(path string) string {
	u := p.api.JoinPath(path)
	u.RawQuery = "per_page=100"
	return u.String()
}

// getAll reads every page of the list at first, following the Link
// header's next page (https://docs.github.com/rest/using-the-rest-api/using-pagination-in-the-rest-api).
func getAll[T any](ctx context.Context, p *GitHub, token, first string) ([]T, error) {
	var all []T
	next := first
	for page := 0; next != ""; page++ {
		if page == githubMaxPages {
			return nil, fmt.Errorf("reading %s from GitHub: more than %d pages", strings.TrimPrefix(first, p.api.String()), githubMaxPages)
		}
		var items []T
		var err error
		if next, err = p.get(ctx, token, next, &items); err != nil {
			return nil, err
		}
		all = append(all, items...)
	}
	return all, nil
}

// get reads one API answer into v and returns the URL of the next page,
// if any. The token goes only to the API's own scheme and host: a next
// page anywhere else is refused.
func (p *GitHub) get(ctx context.Context, token, rawURL string, v any) (next string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != p.api.Scheme || u.Host != p.api.Host {
		return "", fmt.Errorf("reading from GitHub: %q is not on the API's host %s", rawURL, p.api.Host)
	}
	what := "GET " + u.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("reading from GitHub: %s: %w", what, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := p.opts.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: reading from GitHub: %s: %v", ErrProviderUnavailable, what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, githubMaxBody+1))
	if err != nil {
		return "", fmt.Errorf("%w: reading from GitHub: %s: %v", ErrProviderUnavailable, what, err)
	}
	limited := resp.Header.Get("X-RateLimit-Remaining") == "0" || resp.StatusCode == http.StatusTooManyRequests
	switch {
	case resp.StatusCode >= 500, limited && resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("%w: reading from GitHub: %s: %s", ErrProviderUnavailable, what, resp.Status)
	case resp.StatusCode == http.StatusUnauthorized:
		return "", fmt.Errorf("reading from GitHub: %s: GitHub refused the access token (%s): was the app's authorization revoked?", what, resp.Status)
	case resp.StatusCode == http.StatusForbidden, resp.StatusCode == http.StatusNotFound:
		return "", fmt.Errorf("reading from GitHub: %s: %s: does the token have the scopes user:email and read:org "+
			"(a GitHub App: the Email addresses and Members permissions)?", what, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("reading from GitHub: %s: %s", what, resp.Status)
	case len(body) > githubMaxBody:
		return "", fmt.Errorf("reading from GitHub: %s: the answer is larger than %d bytes", what, githubMaxBody)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return "", fmt.Errorf("reading from GitHub: %s: %w", what, err)
	}
	return nextLink(resp.Header.Get("Link")), nil
}

// nextLink finds rel="next" in a Link header (RFC 8288).
func nextLink(h string) string {
	for part := range strings.SplitSeq(h, ",") {
		target, params, ok := strings.Cut(part, ";")
		if !ok {
			continue
		}
		target = strings.TrimSpace(target)
		if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			continue
		}
		for p := range strings.SplitSeq(params, ";") {
			if k, v, _ := strings.Cut(strings.TrimSpace(p), "="); k == "rel" && strings.Trim(v, `"`) == "next" {
				return target[1 : len(target)-1]
			}
		}
	}
	return ""
}
