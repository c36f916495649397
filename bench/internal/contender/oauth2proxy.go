package contender

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// OAuth2ProxyContender is oauth2-proxy, the widely used Go auth proxy,
// set up the way its documentation suggests for API clients: it validates
// a JWT bearer token from an OpenID issuer (--skip-jwt-bearer-tokens, so no
// login and no session cookie), then replaces the client's credential with
// the service-account token and sends the user from the token's claims as
// Impersonate-* headers.
//
// What the harness should know about oauth2-proxy v7.15.6 (read from its
// source, checked by oauth2proxy_test.go):
//   - Clients get HTTP/1.1 only: its TLS listener offers no h2
//     (pkg/proxyhttp/server.go, NextProtos "http/1.1"), so concurrent
//     clients need a connection each.
//   - Upstream it uses a clone of http.DefaultTransport (pkg/upstream/http.go):
//     HTTP/2 when the upstream offers it (the stub and kube-apiserver do),
//     one connection for everything. Over HTTP/1.1 it keeps only two idle
//     connections (MaxIdleConnsPerHost's default): 200 requests from 8
//     clients opened 86 upstream connections in a trial.
//   - It joins the values of every multi-valued request header into one
//     comma-separated line before proxying (flattenHeaders in
//     pkg/middleware/headers.go). kube-apiserver takes each
//     Impersonate-Group line as one group and does not split on commas, so
//     with two or more groups it sees one group named "a,b". A single
//     group passes correctly.
//   - WebSocket upgrades pass: they go to a separate proxy whose transport
//     dials HTTP/1.1 for them. Any other upgrade, such as SPDY/3.1 for
//     kubectl exec and port-forward, goes to the ordinary transport, which
//     sends it over HTTP/2 when the upstream offers h2 and fails with 502
//     ("http2: invalid Upgrade request header"). Against an HTTP/1.1-only
//     upstream SPDY passes.
type OAuth2ProxyContender struct {
	// Bin is the built binary; Prepare sets it when empty.
	Bin string
}

// OAuth2ProxyVersion is the pinned upstream release, in
// bench/tools/oauth2-proxy/go.mod.
const OAuth2ProxyVersion = "v7.15.6"

func (*OAuth2ProxyContender) Name() string { return OAuth2Proxy }

// Prepare builds oauth2-proxy from the pinned module, once per machine (the
// testenv tool cache), and checks that the binary runs.
func (c *OAuth2ProxyContender) Prepare(ctx context.Context, progress io.Writer) error {
	if c.Bin == "" {
		dir, err := oauth2ProxyToolDir()
		if err != nil {
			return err
		}
		bin, err := testenv.BuildModuleTool(ctx, testenv.ModuleTool{
			Dir:     dir,
			Version: OAuth2ProxyVersion,
			Package: "github.com/oauth2-proxy/oauth2-proxy/v7",
			Name:    "oauth2-proxy",
			Note:    "about a minute on 2 cores, after the module download",
		}, progress)
		if err != nil {
			return fmt.Errorf("preparing oauth2-proxy: %w", err)
		}
		c.Bin = bin
	}
	// --version prints "oauth2-proxy undefined (built with goX)": the
	// release stamps its version with -ldflags, which the tool cache does
	// not pass; the module version is pinned by go.mod all the same.
	out, err := exec.CommandContext(ctx, c.Bin, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("running %s --version: %w\n%s", c.Bin, err, out)
	}
	if progress != nil {
		fmt.Fprintf(progress, "oauth2-proxy: %s (%s from bench/tools/oauth2-proxy)\n", c.Bin, OAuth2ProxyVersion)
	}
	return nil
}

// oauth2ProxyToolDir is bench/tools/oauth2-proxy in the checkout
// (RepoRoot), or under $PORTCULLIS_BENCH_TOOLS.
func oauth2ProxyToolDir() (string, error) {
	tools := os.Getenv("PORTCULLIS_BENCH_TOOLS")
	if tools == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		tools = filepath.Join(root, "bench", "tools")
	}
	dir := filepath.Join(tools, "oauth2-proxy")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("locating bench/tools/oauth2-proxy: %w; run from a checkout or set PORTCULLIS_BENCH_TOOLS to bench/tools", err)
	}
	return filepath.Abs(dir)
}

func (c *OAuth2ProxyContender) Start(ctx context.Context, env Env) (*Instance, error) {
	if c.Bin == "" {
		return nil, errors.New("starting oauth2-proxy: not prepared")
	}
	if env.Issuer == nil {
		return nil, fmt.Errorf("starting oauth2-proxy: %w", errNoIssuer)
	}
	files, err := writeOAuth2ProxyFiles(env)
	if err != nil {
		return nil, fmt.Errorf("starting oauth2-proxy: %w", err)
	}
	// What a client holds after logging in to the issuer; 24 h outlasts
	// any run.
	jwt, err := env.Issuer.Mint(env.User, env.Groups, 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("starting oauth2-proxy: %w", err)
	}
	args := []string{
		"--alpha-config=" + files.config,
		// Accept a bearer JWT that the provider's verifier (issuer,
		// audience = client ID, signature from the JWKS, expiry) accepts,
		// as the session. The issuer is the provider's own, so no
		// --extra-jwt-issuers is needed: a second verifier of the same
		// issuer would only be tried after the first had failed.
		"--skip-jwt-bearer-tokens",
		// A bearer token that fails verification is refused with 403
		// rather than sent on to the login page.
		"--bearer-token-login-fallback=false",
		// A request without a token gets 401 JSON, not a sign-in page.
		"--force-json-errors",
		"--email-domain=*",
		"--cookie-secret-file=" + files.cookieSecret,
	}
	// Go reads the system roots from SSL_CERT_FILE on Linux. oauth2-proxy
	// dials both the issuer (discovery, JWKS) and the upstream with
	// transports that use the system roots, so one bundle of both CAs
	// verifies both without skipping verification anywhere.
	environ := []string{"SSL_CERT_FILE=" + files.caBundle}

	inst, err := startOnFreePorts(2, func(ports []int) (*Instance, error) {
		port, metricsPort := ports[0], ports[1]
		cfg, err := oauth2ProxyConfig(env, files, port, metricsPort)
		if err != nil {
			return nil, fmt.Errorf("starting oauth2-proxy: %w", err)
		}
		if err := os.WriteFile(files.config, cfg, 0o600); err != nil {
			return nil, fmt.Errorf("starting oauth2-proxy: %w", err)
		}
		inst := &Instance{
			Name:    OAuth2Proxy,
			URL:     "https://127.0.0.1:" + strconv.Itoa(port),
			Header:  http.Header{"Authorization": {"Bearer " + jwt}},
			Binary:  c.Bin,
			Metrics: "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics",
		}
		if err := startProcess(ctx, inst, env, args, environ); err != nil {
			return nil, err
		}
		return inst, nil
	})
	if err != nil {
		return nil, err
	}
	if err := servesMetric(ctx, inst.Metrics, "go_goroutines"); err != nil {
		if env.Log != nil {
			fmt.Fprintf(env.Log, "oauth2-proxy: no goroutine metric: %v\n", err)
		}
		inst.Metrics = ""
	}
	return inst, nil
}

// oauth2ProxyFiles are the paths of what Start writes to env.Dir.
type oauth2ProxyFiles struct {
	config        string // the alpha configuration
	caBundle      string // the upstream's CA and the issuer's
	cookieSecret  string
	clientSecret  string
	upstreamToken string // "Bearer <service-account token>", the Authorization value
}

// writeOAuth2ProxyFiles writes the CA bundle and the secrets, which
// oauth2-proxy reads from files so that none is on its command line.
func writeOAuth2ProxyFiles(env Env) (oauth2ProxyFiles, error) {
	f := oauth2ProxyFiles{
		config:        filepath.Join(env.Dir, "oauth2-proxy.yaml"),
		caBundle:      filepath.Join(env.Dir, "oauth2-proxy-ca.pem"),
		cookieSecret:  filepath.Join(env.Dir, "oauth2-proxy-cookie-secret"),
		clientSecret:  filepath.Join(env.Dir, "oauth2-proxy-client-secret"),
		upstreamToken: filepath.Join(env.Dir, "oauth2-proxy-upstream-authorization"),
	}
	upstreamCA := env.Upstream.CAPEM
	if len(upstreamCA) == 0 {
		b, err := os.ReadFile(env.Upstream.CAFile)
		if err != nil {
			return f, fmt.Errorf("reading the upstream's CA: %w", err)
		}
		upstreamCA = b
	}
	// The issuer's CA is usually env.CA, but need not be.
	bundle := bytes.Join([][]byte{bytes.TrimSpace(upstreamCA), bytes.TrimSpace(env.Issuer.caPEM)}, []byte("\n"))
	// Bearer-token clients never get a cookie, and no one logs in to use
	// the client secret, but oauth2-proxy requires both. A cookie secret
	// must be 16, 24 or 32 bytes; it decodes base64url.
	cookie := make([]byte, 32)
	rand.Read(cookie)
	client := make([]byte, 32)
	rand.Read(client)
	for path, b := range map[string][]byte{
		f.caBundle:      append(bundle, '\n'),
		f.cookieSecret:  []byte(base64.RawURLEncoding.EncodeToString(cookie)),
		f.clientSecret:  []byte(base64.RawURLEncoding.EncodeToString(client)),
		f.upstreamToken: []byte("Bearer " + env.Upstream.Token),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return f, err
		}
	}
	return f, nil
}

// oauth2ProxyConfig renders the alpha configuration (--alpha-config), the
// only way to set request headers from claims and static secrets, and to
// tune the upstream. It is written as JSON, which YAML reads, so that no
// value needs YAML quoting. oauth2-proxy expands $VAR in the file; no path
// or URL here has a $.
func oauth2ProxyConfig(env Env, f oauth2ProxyFiles, port, metricsPort int) ([]byte, error) {
	fromFile := func(p string) map[string]any { return map[string]any{"fromFile": p} }
	claim := func(c string) []any { return []any{map[string]any{"claimSource": map[string]any{"claim": c}}} }
	cfg := map[string]any{
		"server": map[string]any{
			"bindAddress":       "-", // no plain-HTTP listener
			"secureBindAddress": "https://127.0.0.1:" + strconv.Itoa(port),
			"tls": map[string]any{
				"cert":       fromFile(env.CertFile),
				"key":        fromFile(env.KeyFile),
				"minVersion": "TLS1.2",
			},
		},
		// Prometheus's default registry, so go_goroutines is there.
		"metricsServer": map[string]any{
			"bindAddress":       "127.0.0.1:" + strconv.Itoa(metricsPort),
			"secureBindAddress": "-",
		},
		"providers": []any{map[string]any{
			"id":               "bench",
			"provider":         "oidc",
			"clientID":         env.Issuer.ClientID,
			"clientSecretFile": f.clientSecret,
			"oidcConfig": map[string]any{
				// Discovery at start: oauth2-proxy exits if it fails.
				"issuerURL":      env.Issuer.URL,
				"emailClaim":     "email",
				"groupsClaim":    "groups",
				"audienceClaims": []string{"aud"},
			},
		}},
		"upstreamConfig": map[string]any{
			"upstreams": []any{map[string]any{
				"id":   "kubernetes",
				"path": "/",
				"uri":  env.Upstream.URL,
				// Negative is httputil.ReverseProxy's "flush after every
				// write". Go already flushes a response without a length
				// (a watch) at once; this covers the rest and keeps the
				// 1 s default from delaying anything.
				"flushInterval": "-1ns",
				// The upstream sees its own host, as from any client.
				"passHostHeader":  false,
				"proxyWebSockets": true,
			}},
		},
		// Each header listed here is first removed from the client's
		// request (preserveRequestValue defaults to false), then set.
		"injectRequestHeaders": []any{
			// The client's JWT must not reach the upstream.
			map[string]any{"name": "Authorization", "values": []any{map[string]any{"secretSource": fromFile(f.upstreamToken)}}},
			map[string]any{"name": "Impersonate-User", "values": claim("email")},
			// One value per group from the token's groups claim, but see
			// the type's comment: oauth2-proxy joins them into one line.
			map[string]any{"name": "Impersonate-Group", "values": claim("groups")},
			// Listed without values only to strip it from the client.
			// Impersonate-Extra-* cannot be stripped: oauth2-proxy
			// matches header names exactly, not by prefix.
			map[string]any{"name": "Impersonate-Uid"},
		},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// servesMetric checks that a Prometheus endpoint serves the named metric,
// trying for up to 5 s: the metrics listener starts alongside the proxy's.
func servesMetric(ctx context.Context, url, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode != http.StatusOK:
				last = fmt.Errorf("GET %s: %s", url, resp.Status)
			case !bytes.Contains(body, []byte("\n"+name+" ")) && !bytes.HasPrefix(body, []byte(name+" ")):
				return fmt.Errorf("GET %s: no %s", url, name)
			default:
				return nil
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", url, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
