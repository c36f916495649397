// Package contender starts the proxies the benchmark compares, each in
// front of the same upstream with the same TLS on both sides: direct (no
// proxy), Portcullis (with its sessions in memory, with them in
// PostgreSQL, and writing its audit trail to a file), nginx and
// oauth2-proxy. It knows how to configure and start each one and how a
// client authenticates to it; it does not measure.
package contender

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// Names of the contenders, in the order the results list them.
const (
	Direct     = "direct"
	Portcullis = "portcullis"
	// PortcullisPostgres is the same binary and configuration as
	// Portcullis with its sessions in PostgreSQL.
	PortcullisPostgres = "portcullis-postgres"
	// PortcullisAudit is the same binary and configuration as Portcullis
	// writing its audit trail to a file.
	PortcullisAudit = "portcullis-audit"
	// DirectMode is Portcullis in direct mode: the client talks to
	// kube-apiserver itself with a Portcullis token, which the apiserver
	// validates, and the apiserver asks Portcullis's authorization
	// webhook (docs/direct-mode.md). Only in front of kube-apiserver.
	DirectMode  = "direct-mode"
	Nginx       = "nginx"
	OAuth2Proxy = "oauth2-proxy"
)

// ReadyPath is the request that proves a contender serves: a GET of one
// ConfigMap, which both upstreams (the stub and kube-apiserver) answer.
const ReadyPath = "/api/v1/namespaces/default/configmaps/bench"

// Upstream is what every contender fronts.
type Upstream struct {
	URL    string // https://127.0.0.1:PORT
	CAFile string // PEM of the CA that signed the upstream's certificate
	CAPEM  []byte
	// Token is the service-account bearer token a proxy sends upstream in
	// place of the client's credential.
	Token string
}

// Env is everything a contender is started with.
type Env struct {
	Dir string // scratch directory for this contender: config files, logs
	// CA signed the contenders' serving certificates; clients trust it.
	CA *testenv.CA
	// CertFile and KeyFile (and their PEM) are the serving certificate
	// for 127.0.0.1 and localhost.
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte
	Upstream          Upstream
	// User and Groups are the person every request is made as: proxies
	// send them upstream as Impersonate-User and Impersonate-Group.
	User   string
	Groups []string
	// Issuer mints the JWTs oauth2-proxy validates (nil for the others).
	Issuer *Issuer
	// Session makes Portcullis's client token name a live session: the
	// contender signs User in through its built-in identity provider, so
	// that every request looks its session up in the store, as a signed-in
	// person's requests do. Without it the token is minted with the shared
	// secret and names no session (the startup scenario: the built-in
	// provider's key generation is start-up work a deployment with an
	// external provider does not do).
	Session bool
	// RestartUpstream, when the upstream is kube-apiserver, restarts it
	// with args as its extra flags (direct mode's configuration); nil for
	// the stub.
	RestartUpstream func(ctx context.Context, args ...string) error
	Log             io.Writer // progress messages; may be nil
}

// An Instance is one running contender.
type Instance struct {
	Name string
	URL  string // https://127.0.0.1:PORT, where clients connect
	// TLS is the client side of the connection: trust in the contender's
	// certificate (the bench CA, or the upstream's own for direct).
	TLS *tls.Config
	// Header is what a client sends on every request to authenticate
	// (Authorization; for direct also the Impersonate-* headers).
	Header http.Header
	// Process is the proxy's process; nil for direct.
	Process *testenv.Process
	Binary  string // the proxy's executable; "" for direct
	// Ready is the time from starting the process to the first request
	// it served successfully.
	Ready time.Duration
	// Metrics is a Prometheus endpoint of the proxy (go_goroutines), or "".
	Metrics string
	// Pprof is the base URL of the proxy's Go profiles, or "".
	Pprof string
	// AuditLog is the file the proxy writes its audit events to, one JSON
	// line each, rotated beside it; "" when it keeps no audit trail.
	AuditLog string
	stop     func()
}

// NewRequest is a request for path on inst, with the client's credentials.
func (i *Instance) NewRequest(ctx context.Context, method, path string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, i.URL+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range i.Header {
		req.Header[k] = v
	}
	return req, nil
}

// Stop ends the contender.
func (i *Instance) Stop() {
	if i != nil && i.stop != nil {
		i.stop()
		i.stop = nil
	}
}

// PID is the proxy's process id, or 0 for direct.
func (i *Instance) PID() int {
	if i.Process == nil {
		return 0
	}
	return i.Process.PID()
}

// A Contender configures and starts one kind of proxy.
type Contender interface {
	Name() string
	// Prepare finds or builds the binary; it is not part of any timing.
	Prepare(ctx context.Context, progress io.Writer) error
	// Start starts the contender in front of env.Upstream and returns once
	// it has served ReadyPath with a 200.
	Start(ctx context.Context, env Env) (*Instance, error)
}

// ClientTLS is the client side of the contenders' TLS: trust the bench CA
// (which also signs the stub), offer HTTP/2 like kubectl.
func ClientTLS(ca *testenv.CA) *tls.Config {
	c := ca.ClientTLS()
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// startProcess starts a proxy and waits until it has served ReadyPath
// with header, so that Instance.Ready is start to first served request.
func startProcess(ctx context.Context, inst *Instance, env Env, args, environ []string) error {
	if inst.TLS == nil {
		inst.TLS = ClientTLS(env.CA)
	}
	start := time.Now()
	p, err := testenv.StartProcess(inst.Name, env.Dir, inst.Binary, args, environ)
	if err != nil {
		return err
	}
	inst.Process = p
	inst.stop = func() { p.Stop(10 * time.Second) }
	if err := WaitServed(ctx, inst, 60*time.Second); err != nil {
		inst.Stop()
		return fmt.Errorf("starting %s: %w\nits log %s ends:\n%s", inst.Name, err, p.LogPath, p.LogTail(30))
	}
	inst.Ready = time.Since(start)
	return nil
}

// startOnFreePorts picks n free loopback ports and starts a proxy on them
// with start. Another process can take a port between the pick and the
// proxy's bind; then the start is tried again, up to three times in all.
func startOnFreePorts(n int, start func(ports []int) (*Instance, error)) (*Instance, error) {
	for attempt := 1; ; attempt++ {
		ports, err := testenv.FreePorts(n)
		if err != nil {
			return nil, err
		}
		inst, err := start(ports)
		if err != nil && attempt < 3 && strings.Contains(strings.ToLower(err.Error()), "address already in use") {
			continue
		}
		return inst, err
	}
}

// WaitServed polls GET inst.URL+ReadyPath every 2 ms until it answers 200,
// the process exits, or timeout passes.
func WaitServed(ctx context.Context, inst *Instance, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: inst.TLS.Clone(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var last error
	for {
		if inst.Process != nil {
			if exited, err := inst.Process.Exited(); exited {
				return fmt.Errorf("%s exited before serving (%v)", inst.Name, err)
			}
		}
		req, err := inst.NewRequest(ctx, http.MethodGet, ReadyPath)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("GET %s: %s: %s", ReadyPath, resp.Status, body)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to serve %s: %w (last: %v)", inst.Name, ReadyPath, ctx.Err(), last)
		case <-time.After(2 * time.Millisecond):
		}
	}
}
