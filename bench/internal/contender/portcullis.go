package contender

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// PortcullisContender is the real portcullis binary, built from this
// checkout the way `make build` builds it, with one Kubernetes route the way
// docs/kubernetes.md configures it: a service-account token, impersonation
// and a policy that every request is evaluated against.
type PortcullisContender struct {
	// Bin is the built binary; Prepare sets it.
	Bin string
	// Profiling builds the binary with -tags pprof, which serves Go's
	// runtime profiles on a loopback port (Instance.Pprof).
	Profiling bool
	// BinDir is where Prepare puts the binary: the run's own directory,
	// removed with it.
	BinDir string
}

func (*PortcullisContender) Name() string { return Portcullis }

// Prepare builds cmd/portcullis from the repository this harness lives in,
// stripped and trimmed like a release, so the binary size is the real one.
func (c *PortcullisContender) Prepare(ctx context.Context, progress io.Writer) error {
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
	if c.Bin == "" {
		return nil, errors.New("starting portcullis: not prepared")
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
	// The token a signed-in person's exec-credential plugin would hold.
	jwt, err := keys.Issue(session.Claims{
		Subject: "sub-" + env.User, Email: env.User, Groups: env.Groups,
		Audience: addr, Expiry: time.Now().Add(24 * time.Hour),
	})
	if err != nil {
		return nil, fmt.Errorf("starting portcullis: minting a token: %w", err)
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
	h := http.Header{}
	h.Set("Authorization", "Bearer Pomerium-"+jwt)
	inst := &Instance{
		Name:    Portcullis,
		URL:     routeURL,
		Header:  h,
		Binary:  c.Bin,
		Metrics: "http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/metrics",
	}
	if c.Profiling {
		inst.Pprof = "http://127.0.0.1:" + strconv.Itoa(ports[2]) + "/debug/pprof"
	}
	if err := startProcess(ctx, inst, env, nil, environ); err != nil {
		return nil, err
	}
	return inst, nil
}
