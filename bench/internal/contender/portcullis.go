package contender

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// PortcullisContender is the real portcullis binary, built from this
// checkout the way `make build` builds it, with one Kubernetes route the way
// docs/kubernetes.md configures it: a service-account token, impersonation
// and a policy that every request is evaluated against. With Env.Session,
// the client's token comes from signing in through the built-in identity
// provider, so each request looks up its session in the store.
type PortcullisContender struct {
	// Bin is the built binary; Prepare sets it.
	Bin string
	// Postgres keeps the sessions in a PostgreSQL server of the
	// contender's own (DATABROKER_STORAGE_TYPE=postgres, docs/postgres.md)
	// instead of in memory; nothing else changes.
	Postgres bool
	// Audit writes the audit trail to a file in the contender's directory
	// (AUDIT_LOG_PATH, docs/audit.md; Instance.AuditLog), with the default
	// rotation and no audit policy, so every request is recorded at
	// Metadata level; nothing else changes.
	Audit bool
	// BinaryOf, if set, is the contender whose binary this one runs
	// (Prepare builds it if it has not been): the PostgreSQL and audit
	// contenders run the very build the plain one does.
	BinaryOf *PortcullisContender
	// Profiling builds the binary with -tags pprof, which serves Go's
	// runtime profiles on a loopback port (Instance.Pprof).
	Profiling bool
	// BinDir is where Prepare puts the binary: the run's own directory,
	// removed with it.
	BinDir string
	// DirectMode makes the contender direct mode's (DirectMode): once
	// Portcullis serves and the person has signed in, `portcullis
	// direct-config` writes kube-apiserver's files, the apiserver restarts
	// with them (Env.RestartUpstream), and the client talks to the
	// apiserver with the bare token. The Instance's process is
	// Portcullis, the webhook, so its CPU counts.
	DirectMode bool
}

func (c *PortcullisContender) Name() string {
	switch {
	case c.Postgres:
		return PortcullisPostgres
	case c.Audit:
		return PortcullisAudit
	case c.DirectMode:
		return DirectMode
	}
	return Portcullis
}

// Prepare builds cmd/portcullis from the repository this harness lives in,
// stripped and trimmed like a release, so the binary size is the real one.
func (c *PortcullisContender) Prepare(ctx context.Context, progress io.Writer) error {
	if b := c.BinaryOf; b != nil {
		if b.Bin == "" {
			if err := b.Prepare(ctx, progress); err != nil {
				return err
			}
		}
		c.Bin, c.Profiling = b.Bin, b.Profiling
		return nil
	}
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	if c.BinDir == "" {
		return errors.New("preparing portcullis: no directory for the binary (BinDir)")
	}
	bin := filepath.Join(c.BinDir, "portcullis")
	args := []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", bin}
	if c.Profiling {
		args = append(args, "-tags", "pprof")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/portcullis")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building portcullis in %s: %w\n%s", root, err, out)
	}
	c.Bin = bin
	return nil
}

// RepoRoot is the Portcullis checkout: two directories above bench/ from
// this source file, or $PORTCULLIS_ROOT.
func RepoRoot() (string, error) {
	if d := os.Getenv("PORTCULLIS_ROOT"); d != "" {
		return d, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locating the portcullis source: no caller information; set PORTCULLIS_ROOT")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	if _, err := os.Stat(filepath.Join(root, "cmd", "portcullis")); err != nil {
		return "", fmt.Errorf("locating the portcullis source: %w; run from a checkout or set PORTCULLIS_ROOT", err)
	}
	return filepath.Clean(root), nil
}

func (c *PortcullisContender) Start(ctx context.Context, env Env) (*Instance, error) {
	name := c.Name()
	if c.Bin == "" {
		return nil, fmt.Errorf("starting %s: not prepared", name)
	}
	if c.DirectMode && (env.RestartUpstream == nil || !env.Session) {
		return nil, fmt.Errorf("starting %s: direct mode needs kube-apiserver as the upstream and a signed-in session", name)
	}
	ports, err := testenv.FreePorts(3)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	routeURL := "https://" + addr
	authURL := "https://localhost:" + strconv.Itoa(ports[0])
	secret := make([]byte, 32)
	cookie := make([]byte, 32)
	rand.Read(secret)
	rand.Read(cookie)
	keys, err := session.NewKeys(nil, secret, authURL)
	if err != nil {
		return nil, err
	}
	// The token a signed-in person's exec-credential plugin would hold,
	// minted with the shared secret; it names no session. With
	// env.Session it proves only that the proxy serves, and the token of
	// a real sign-in replaces it below.
	jwt, err := keys.Issue(session.Claims{
		Subject: "sub-" + env.User, Email: env.User, Groups: env.Groups,
		Audience: addr, Expiry: time.Now().Add(24 * time.Hour),
	})
	if err != nil {
		return nil, fmt.Errorf("starting %s: minting a token: %w", name, err)
	}
	policy := fmt.Sprintf(`- from: %s
  to: %s
  tls_custom_ca_file: %s
  kubernetes_service_account_token: %s
  policy:
    - allow:
        or:
          - authenticated_user: true
`, routeURL, env.Upstream.URL, env.Upstream.CAFile, env.Upstream.Token)
	b64 := base64.StdEncoding.EncodeToString
	environ := []string{
		"ADDRESS=" + addr,
		"AUTHENTICATE_SERVICE_URL=" + authURL,
		"CERTIFICATE_FILE=" + env.CertFile,
		"CERTIFICATE_KEY_FILE=" + env.KeyFile,
		"COOKIE_SECRET=" + b64(cookie),
		"SHARED_SECRET=" + b64(secret),
		"POLICY=" + b64([]byte(policy)),
		"METRICS_ADDRESS=127.0.0.1:" + strconv.Itoa(ports[1]),
	}
	if c.Profiling {
		environ = append(environ, "PORTCULLIS_PPROF_ADDRESS=127.0.0.1:"+strconv.Itoa(ports[2]))
	}
	password := rand.Text()
	if env.Session {
		users, err := usersFile(env, password)
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		// The built-in provider's tokens outlive any run, so that no
		// session is renewed with the provider while it is measured.
		environ = append(environ, "IDP_PROVIDER=builtin", "IDP_USERS_FILE="+users, "IDP_BUILTIN_TOKEN_TTL=12h")
	}
	var db *testenv.Postgres
	if c.Postgres {
		if db, err = testenv.StartPostgres(ctx, env.Dir); err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		environ = append(environ, "DATABROKER_STORAGE_TYPE=postgres", "DATABROKER_STORAGE_CONNECTION_STRING="+db.ConnString())
	}
	var auditLog string
	if c.Audit {
		auditLog = filepath.Join(env.Dir, "audit.log")
		environ = append(environ, "AUDIT_LOG_PATH="+auditLog)
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer Pomerium-"+jwt)
	inst := &Instance{
		Name:     name,
		URL:      routeURL,
		Header:   h,
		Binary:   c.Bin,
		Metrics:  "http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/metrics",
		AuditLog: auditLog,
	}
	if c.Profiling {
		inst.Pprof = "http://127.0.0.1:" + strconv.Itoa(ports[2]) + "/debug/pprof"
	}
	if err := startProcess(ctx, inst, env, nil, environ); err != nil {
		if db != nil {
			db.Close()
		}
		return nil, err
	}
	if db != nil {
		stopProxy := inst.stop
		inst.stop = func() { stopProxy(); db.Close() }
	}
	if env.Session {
		tok, err := signIn(ctx, env, routeURL, password)
		if err != nil {
			inst.Stop()
			return nil, fmt.Errorf("starting %s: %w\nits log %s ends:\n%s", name, err, inst.Process.LogPath, inst.Process.LogTail(30))
		}
		inst.Header.Set("Authorization", "Bearer Pomerium-"+tok)
		if err := WaitServed(ctx, inst, 10*time.Second); err != nil {
			inst.Stop()
			return nil, fmt.Errorf("starting %s: the signed-in token: %w", name, err)
		}
		if c.DirectMode {
			if err := c.goDirect(ctx, env, inst, routeURL, environ, tok); err != nil {
				inst.Stop()
				return nil, fmt.Errorf("starting %s: %w\nits log %s ends:\n%s", name, err, inst.Process.LogPath, inst.Process.LogTail(30))
			}
		}
	}
	return inst, nil
}

// goDirect turns inst, Portcullis serving routeURL with environ, into
// direct mode: it writes the apiserver's files with `portcullis
// direct-config` from the same environment, restarts the apiserver with
// them, and points the client at the apiserver with the bare token tok,
// as `portcullis-cli k8s exec-credential --direct` hands it to kubectl.
func (c *PortcullisContender) goDirect(ctx context.Context, env Env, inst *Instance, routeURL string, environ []string, tok string) error {
	caFile := filepath.Join(env.Dir, "portcullis-ca.pem")
	if err := os.WriteFile(caFile, env.CA.CertPEM, 0o600); err != nil {
		return err
	}
	dir := filepath.Join(env.Dir, "direct")
	cmd := exec.CommandContext(ctx, c.Bin, "direct-config", "--route", routeURL, "--ca-cert", caFile, "--out", dir)
	// The server's settings, without its profiling listener, which the
	// server holds.
	cmd.Env = slices.DeleteFunc(slices.Clone(environ), func(kv string) bool { return strings.HasPrefix(kv, "PORTCULLIS_PPROF_ADDRESS=") })
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("portcullis direct-config: %w\n%s", err, out)
	}
	if err := env.RestartUpstream(ctx, "--authentication-config", filepath.Join(dir, "authentication-config.yaml"),
		"--authorization-config", filepath.Join(dir, "authorization-config.yaml")); err != nil {
		return fmt.Errorf("restarting kube-apiserver in direct mode: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(env.Upstream.CAPEM) {
		return errors.New("no certificate in the upstream's CA PEM")
	}
	inst.URL = env.Upstream.URL
	inst.TLS = &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}}
	inst.Header.Set("Authorization", "Bearer "+tok)
	return WaitServed(ctx, inst, 30*time.Second)
}

// usersFile writes the built-in provider's users file: env.User with
// env.Groups and password.
func usersFile(env Env, password string) (string, error) {
	hash, err := builtin.HashPassword(password)
	if err != nil {
		return "", err
	}
	groups, _ := json.Marshal(env.Groups)
	path := filepath.Join(env.Dir, "users.yaml")
	body := fmt.Sprintf("- email: %q\n  groups: %s\n  password_hash: %q\n", env.User, groups, hash)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return "", fmt.Errorf("writing the users file: %w", err)
	}
	return path, nil
}

// signIn signs env.User in the way portcullis-cli does: it asks the
// route's login API for the sign-in URL, signs in through the built-in
// provider's login form, and takes the token delivered to the loopback
// redirect. The token must name a session ("sid"), or the store would
// never be asked about it.
func signIn(ctx context.Context, env Env, routeURL, password string) (string, error) {
	const callback = "http://127.0.0.1:1/portcullis-cli"
	browser := testenv.NewBrowser(env.CA.ClientTLS())
	defer browser.Client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		routeURL+"/.pomerium/api/v1/login?pomerium_redirect_uri="+url.QueryEscape(callback), nil)
	if err != nil {
		return "", err
	}
	resp, err := browser.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("signing in: the login API: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("signing in: the login API: %s: %s", resp.Status, body)
	}
	final, _, err := browser.SignIn(ctx, strings.TrimSpace(string(body)), env.User, password, callback)
	if err != nil {
		return "", fmt.Errorf("signing in: %w", err)
	}
	tok := final.Query().Get("pomerium_jwt")
	if tok == "" {
		return "", fmt.Errorf("signing in: redirected to %s without pomerium_jwt", final.Redacted())
	}
	if sid, err := sessionID(tok); err != nil || sid == "" {
		return "", fmt.Errorf("signing in: the token names no session (sid %q, %v)", sid, err)
	}
	return tok, nil
}

// sessionID reads the "sid" claim of a JWT without verifying it: the
// proxy verifies; this only checks what the harness is about to send.
func sessionID(jwt string) (string, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWS in compact form")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var c session.Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", err
	}
	return c.SessionID, nil
}
