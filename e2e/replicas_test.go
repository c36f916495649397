package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// replicaStack is Portcullis as a production deployment runs it: three
// replicas of the real binary with the same secrets, sharing sessions
// through a real PostgreSQL, behind nginx balancing requests round robin,
// in front of a real kube-apiserver, with a real OpenID provider. The
// route is https://127.0.0.1:LB and sign-in https://localhost:LB, both on
// the load balancer.
type replicaStack struct {
	cluster  *testenv.Cluster
	pg       *testenv.Postgres
	idp      *testenv.OIDCProvider
	ca       *testenv.CA
	routeURL string
	authURL  string
	bin      string
	dir      string
	env      []string // every replica's, but for its addresses
	replicas []*replica
	lb       *testenv.LoadBalancer
}

// A replica is one Portcullis process of the stack.
type replica struct {
	name        string
	port        int // its own listener, which the load balancer uses
	metricsPort int
	proc        *testenv.Process
}

func startReplicaStack(t *testing.T, ctx context.Context, n int) *replicaStack {
	t.Helper()
	s := &replicaStack{cluster: testenv.NewCluster(t), pg: testenv.NewPostgres(t), dir: t.TempDir()}
	saToken := installPortcullisRBAC(t, ctx, s.cluster)
	tokenFile := filepath.Join(s.dir, "sa-token")
	writeFile(t, tokenFile, saToken)
	lbPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s.routeURL = fmt.Sprintf("https://127.0.0.1:%d", lbPort)
	s.authURL = fmt.Sprintf("https://localhost:%d", lbPort)
	s.idp = testenv.NewOIDCProvider(t, []string{s.authURL + "/oauth2/callback"}, []testenv.OIDCUser{
		{Email: signinEmail, Password: signinPassword, FirstName: "Some", LastName: "User"},
		{Email: signinOutsiderEmail, Password: signinPassword, FirstName: "Other", LastName: "Person"},
	})
	if s.ca, err = testenv.NewCA("portcullis-e2e"); err != nil {
		t.Fatal(err)
	}
	cert, key, err := s.ca.Issue("portcullis", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile := filepath.Join(s.dir, "tls.crt"), filepath.Join(s.dir, "tls.key"), filepath.Join(s.dir, "ca.crt")
	writeFile(t, certFile, string(cert))
	writeFile(t, keyFile, string(key))
	writeFile(t, caFile, string(s.ca.CertPEM))
	policy := fmt.Sprintf("- from: %s\n  to: %s\n  tls_custom_ca: %s\n  allow_any_authenticated_user: true\n  kubernetes_service_account_token_file: %s\n",
		s.routeURL, s.cluster.URL, b64(s.cluster.CA.CertPEM), tokenFile)
	s.env = []string{
		"AUTHENTICATE_SERVICE_URL=" + s.authURL,
		"CERTIFICATE_FILE=" + certFile,
		"CERTIFICATE_KEY_FILE=" + keyFile,
		"COOKIE_SECRET=" + b64(random(32)),
		"SHARED_SECRET=" + b64(random(32)),
		"IDP_PROVIDER=oidc",
		"IDP_PROVIDER_URL=" + s.idp.Issuer,
		"IDP_CLIENT_ID=" + s.idp.ClientID,
		"IDP_CLIENT_SECRET=" + s.idp.ClientSecret,
		"POLICY=" + b64([]byte(policy)),
		"DATABROKER_STORAGE_TYPE=postgres",
		"DATABROKER_STORAGE_CONNECTION_STRING=" + s.pg.ConnString(),
		// Short, so that the test sees an outage outlast it.
		"DATABROKER_STORAGE_GRACE=20s",
		"LOG_LEVEL=debug",
	}
	if s.bin, err = testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/cmd/portcullis", s.dir); err != nil {
		t.Fatal(err)
	}
	var backends []string
	for i := range n {
		r := s.startReplica(t, ctx, fmt.Sprintf("replica-%c", 'a'+i), s.pg.ConnString())
		s.replicas = append(s.replicas, r)
		backends = append(backends, "127.0.0.1:"+strconv.Itoa(r.port))
	}
	s.lb = testenv.NewLoadBalancer(t, testenv.LoadBalancerOptions{Backends: backends, CertFile: certFile, KeyFile: keyFile, CAFile: caFile, Port: lbPort})
	return s
}

// startReplica starts one more replica on a database, and waits until it
// is ready.
func (s *replicaStack) startReplica(t *testing.T, ctx context.Context, name, connString string) *replica {
	t.Helper()
	r, env, err := s.newReplica(name, connString)
	if err != nil {
		t.Fatal(err)
	}
	r.proc = testenv.StartServer(t, name, s.bin, s.dir, nil, env, r.readyURL(), nil)
	return r
}

// newReplica picks a replica's ports and returns its environment, for
// a database at connString.
func (s *replicaStack) newReplica(name, connString string) (*replica, []string, error) {
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return nil, nil, err
	}
	r := &replica{name: name, port: ports[0], metricsPort: ports[1]}
	env := append(s.env[:len(s.env):len(s.env)],
		"ADDRESS=127.0.0.1:"+strconv.Itoa(r.port),
		"METRICS_ADDRESS=127.0.0.1:"+strconv.Itoa(r.metricsPort),
		"DATABROKER_STORAGE_CONNECTION_STRING="+connString)
	return r, env, nil
}

func (r *replica) readyURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(r.metricsPort) + "/readyz"
}

func (r *replica) metricsURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(r.metricsPort) + "/metrics"
}

// client is an HTTP client that sends every request for the stack's hosts
// to replica r, bypassing the load balancer, with jar's cookies (may be
// nil).
func (s *replicaStack) client(r *replica, jar http.CookieJar) *http.Client {
	tr := &http.Transport{
		// No idle connections left behind: a connection open to a
		// replica means a request in flight (see the watch test).
		DisableKeepAlives: true,
		TLSClientConfig:   s.ca.ClientTLS(),
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(r.port))
		},
	}
	return &http.Client{Transport: tr, Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// served counts the requests replica r has answered on the route.
func (s *replicaStack) served(t *testing.T, r *replica) float64 {
	t.Helper()
	return metricSum(t, r.metricsURL(), "portcullis_http_requests_total{", `route="`+s.routeURL+`"`)
}

// TestReplicas is a person's day on a deployment of three replicas: they
// sign in once, and their kubectl commands land on every replica; a
// sign-out on one replica is refused by the others within a second; a
// sign-in's answer replayed to another replica is refused; PostgreSQL
// restarting loses nobody's session; a replica dying ends only the
// streams it held. And ten replicas starting at once against an empty
// database all serve.
func TestReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s := startReplicaStack(t, ctx, 3)
	a, b, c := s.replicas[0], s.replicas[1], s.replicas[2]
	u := newCLIUser(t, ctx, s.cluster.KubectlPath, s.routeURL, s.ca.CertPEM)

	t.Run("one sign-in, requests on every replica", func(t *testing.T) {
		u.setup()
		for i := range 12 {
			if user, errOut := u.whoami(ctx); user != signinEmail {
				t.Fatalf("kubectl auth whoami %d: got %q, want %s\n%s", i, user, signinEmail, errOut)
			}
		}
		if n := u.browserRuns(); n != 1 {
			t.Errorf("sign-ins: got %d, want 1", n)
		}
		for _, r := range s.replicas {
			if n := s.served(t, r); n == 0 {
				t.Errorf("%s served no request on the route: the load balancer did not spread them", r.name)
			}
		}
	})

	t.Run("PostgreSQL restarting loses no session", func(t *testing.T) {
		s.pg.Stop()
		// Every replica has seen the session: it keeps working.
		for i := range 6 {
			if user, errOut := u.whoami(ctx); user != signinEmail {
				t.Fatalf("whoami %d with the database down: got %q\n%s", i, user, errOut)
			}
		}
		// A new sign-in cannot be stored: a clear 503.
		browser := testenv.NewBrowser(s.ca.ClientTLS())
		_, page, err := browser.SignIn(ctx, s.routeURL+"/.pomerium/", signinOutsiderEmail, signinPassword, "")
		if err == nil || !strings.Contains(err.Error()+page, "cannot reach its session database") {
			t.Errorf("sign-in with the database down: got %v, page %q; want a 503 naming the session database", err, page)
		}
		// Within the grace every replica still does its job for those
		// signed in: it stays ready, or an outage of the database would
		// take every replica out of the load balancer at once.
		for _, r := range s.replicas {
			if code := status(t, r.readyURL()); code != http.StatusOK {
				t.Errorf("%s readiness within the grace: got %d, want 200", r.name, code)
			}
		}
		// Past the grace, nothing is served as if the database did not
		// matter: not ready, and requests refused with 503, not as
		// signed out (kubectl opens no browser).
		for _, r := range s.replicas {
			waitFor(t, ctx, time.Minute, r.name+" is not ready once the grace is over", func() error {
				if code := status(t, r.readyURL()); code != http.StatusServiceUnavailable {
					return fmt.Errorf("readiness %d", code)
				}
				return nil
			})
		}
		tok := u.cachedToken(s.routeURL)
		if got := do(t, s.client(a, nil), "GET", s.routeURL+"/api", http.Header{"Authorization": {"Bearer Pomerium-" + tok}}, ""); got.code != http.StatusServiceUnavailable ||
			!strings.Contains(got.body, "cannot reach the session database") {
			t.Errorf("a request past the grace: got %d %q, want 503 naming the session database", got.code, got.body)
		}
		if _, errOut := u.whoami(ctx); u.browserRuns() != 1 {
			t.Errorf("kubectl past the grace signed in again:\n%s", errOut)
		}
		if err := s.pg.Start(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range s.replicas {
			waitFor(t, ctx, time.Minute, r.name+" is ready again", func() error {
				if code := status(t, r.readyURL()); code != http.StatusOK {
					return fmt.Errorf("readiness %d", code)
				}
				return nil
			})
		}
		browser = testenv.NewBrowser(s.ca.ClientTLS())
		if _, page, err := browser.SignIn(ctx, s.routeURL+"/.pomerium/", signinOutsiderEmail, signinPassword, ""); err != nil || !strings.Contains(page, signinOutsiderEmail) {
			t.Errorf("sign-in after the database is back: %v, %q", err, page)
		}
		if user, errOut := u.whoami(ctx); user != signinEmail {
			t.Errorf("whoami after the database is back: got %q\n%s", user, errOut)
		}
		if n := u.browserRuns(); n != 1 {
			t.Errorf("sign-ins: got %d, want still 1", n)
		}
	})

	t.Run("a sign-in answer replayed to another replica is refused", func(t *testing.T) {
		browser := testenv.NewBrowser(s.ca.ClientTLS())
		callback, _, err := browser.SignIn(ctx, s.routeURL+"/.pomerium/", signinOutsiderEmail, signinPassword, s.authURL+"/oauth2/callback")
		if err != nil {
			t.Fatal(err)
		}
		// The attacker copied the browser's cookies too: only the
		// shared record of redeemed sign-ins stops the replay.
		authHost, err := url.Parse(s.authURL)
		if err != nil {
			t.Fatal(err)
		}
		stolen, _ := cookiejar.New(nil)
		stolen.SetCookies(authHost, browser.Client.Jar.Cookies(authHost))
		first := do(t, s.client(a, browser.Client.Jar), "GET", callback.String(), http.Header{}, "")
		if first.code != http.StatusFound {
			t.Fatalf("the callback on %s: got %d %q, want a redirect back", a.name, first.code, first.body)
		}
		replay := do(t, s.client(b, stolen), "GET", callback.String(), http.Header{}, "")
		if replay.code != http.StatusBadRequest || !strings.Contains(replay.body, "already") {
			t.Errorf("the same callback on %s: got %d %q, want 400 Sign-in already used", b.name, replay.code, replay.body)
		}
	})

	t.Run("a sign-out on one replica is refused by the others, and ends the session's streams there, within a second", func(t *testing.T) {
		tok := u.cachedToken(s.routeURL)
		auth := http.Header{"Authorization": {"Bearer Pomerium-" + tok}}
		// A watch open on each of the other replicas: the session's
		// streams there end too, not only its next requests.
		ended := make(chan string, 2)
		for _, r := range []*replica{a, b} {
			if got := do(t, s.client(r, nil), "GET", s.routeURL+"/.pomerium/", auth, ""); got.code != http.StatusOK {
				t.Fatalf("before sign-out, %s: got %d", r.name, got.code)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.routeURL+"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = auth.Clone()
			resp, err := s.client(r, nil).Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("a watch on %s: %v %v", r.name, resp, err)
			}
			defer resp.Body.Close()
			go func() {
				// The events of what is there already, then the last one.
				last, _ := io.ReadAll(resp.Body)
				ended <- r.name + ": " + string(last[bytes.LastIndexByte(bytes.TrimSuffix(last, []byte("\n")), '\n')+1:])
			}()
		}
		if got := do(t, s.client(c, nil), "POST", s.routeURL+"/.pomerium/sign_out", auth, ""); got.code >= 400 {
			t.Fatalf("sign-out on %s: got %d %q", c.name, got.code, got.body)
		}
		signedOut := time.Now()
		for range 2 {
			select {
			case last := <-ended:
				if !strings.Contains(last, `"type":"ERROR"`) || !strings.Contains(last, "session ended") {
					t.Errorf("the watch on %s, want it to end with an ERROR event saying the session ended", last)
				}
				if took := time.Since(signedOut); took > time.Second {
					t.Errorf("a watch ended %s after the sign-out on %s, want within 1s", took, c.name)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("a watch on another replica still open 10s after the sign-out on %s", c.name)
			}
		}
		for _, r := range []*replica{a, b} {
			for {
				got := do(t, s.client(r, nil), "GET", s.routeURL+"/.pomerium/", auth, "")
				if got.code == http.StatusUnauthorized {
					break
				}
				if time.Since(signedOut) > time.Second {
					t.Fatalf("%s still accepts the signed-out token %s after the sign-out (got %d)", r.name, time.Since(signedOut), got.code)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		// kubectl's first command gets 401 with the cached token, and
		// the plugin, run again, signs in; the next command works.
		if _, errOut := u.whoami(ctx); !strings.Contains(errOut, "has ended") {
			t.Errorf("kubectl after sign-out: want a new sign-in, saying why\n%s", errOut)
		}
		if user, errOut := u.whoami(ctx); user != signinEmail {
			t.Errorf("kubectl after signing in again: got %q\n%s", user, errOut)
		}
	})

	t.Run("a session refresh happens once across replicas when several race", func(t *testing.T) {
		// The provider's ID tokens now last 20 s: Portcullis renews a
		// session a quarter of that before it ends, 15 s after sign-in.
		s.idp.SetTokenLifetime(20 * time.Second)
		defer s.idp.SetTokenLifetime(0)
		tok := programmaticLogin(t, ctx, testenv.NewBrowser(s.ca.ClientTLS()), s.routeURL, s.authURL, signinOutsiderEmail, signinPassword)
		auth := http.Header{"Authorization": {"Bearer Pomerium-" + tok}}
		before := s.idp.Refreshes()
		refreshed := func() (n float64) {
			for _, r := range s.replicas {
				n += metricValue(t, r.metricsURL(), `portcullis_session_refreshes_total{result="refreshed"}`)
			}
			return n
		}
		refreshedBefore := refreshed()
		time.Sleep(16 * time.Second)
		// Requests of the session on every replica at once: each replica
		// finds the session due.
		var wg sync.WaitGroup
		codes := make([]int, 30)
		for i := range codes {
			wg.Go(func() {
				codes[i] = do(t, s.client(s.replicas[i%len(s.replicas)], nil), "GET", s.routeURL+"/.pomerium/", auth, "").code
			})
		}
		wg.Wait()
		for i, code := range codes {
			if code != http.StatusOK {
				t.Errorf("request %d on %s: got %d, want 200", i, s.replicas[i%len(s.replicas)].name, code)
			}
		}
		waitFor(t, ctx, 30*time.Second, "the session is refreshed", func() error {
			if s.idp.Refreshes() == before {
				return errors.New("no refresh yet")
			}
			return nil
		})
		time.Sleep(2 * time.Second) // room for a second refresh, were there one
		if n := s.idp.Refreshes() - before; n != 1 {
			t.Errorf("refreshes at the provider: got %d, want 1 for the three replicas", n)
		}
		if n := refreshed() - refreshedBefore; n != 1 {
			t.Errorf("portcullis_session_refreshes_total{result=refreshed}, summed over the replicas, rose by %v; want 1", n)
		}
		for _, r := range s.replicas {
			if got := do(t, s.client(r, nil), "GET", s.routeURL+"/.pomerium/", auth, ""); got.code != http.StatusOK {
				t.Errorf("after the refresh, %s: got %d", r.name, got.code)
			}
		}
	})

	t.Run("a replica dying ends only its own streams", func(t *testing.T) {
		// Another person's session, which must not notice.
		other := programmaticLogin(t, ctx, testenv.NewBrowser(s.ca.ClientTLS()), s.routeURL, s.authURL, signinOutsiderEmail, signinPassword)
		if got := whoamiWith(t, s.client(a, nil), s.routeURL, "Bearer Pomerium-"+other); got != signinOutsiderEmail {
			t.Fatalf("the other person: got %q", got)
		}
		if _, _, err := s.cluster.Kubectl(ctx, nil, "-n", "default", "create", "configmap", "watched"); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer wcancel()
		watch := u.kubectlCmd(wctx, nil, "--context", "e2e", "get", "configmaps", "-n", "default", "-w", "-o", "name")
		out, err := watch.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var errOut strings.Builder
		watch.Stderr = &errOut
		if err := watch.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewReader(out)
		if line, err := lines.ReadString('\n'); err != nil || line != "configmap/watched\n" {
			t.Fatalf("watch: first line %q, %v\n%s", line, err, errOut.String())
		}
		// The replica holding the watch is the one with a connection
		// open: nginx keeps none to the replicas between requests.
		var holder *replica
		waitFor(t, ctx, 30*time.Second, "one replica holds the watch", func() error {
			holder = nil
			for _, r := range s.replicas {
				if metricSum(t, r.metricsURL(), "portcullis_connections_open ") > 0 {
					if holder != nil {
						return fmt.Errorf("%s and %s both have connections open", holder.name, r.name)
					}
					holder = r
				}
			}
			if holder == nil {
				return errors.New("no replica has a connection open")
			}
			return nil
		})
		holder.proc.Kill()
		ended := make(chan error, 1)
		go func() {
			io.Copy(io.Discard, lines)
			ended <- watch.Wait()
		}()
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("the watch through %s ended with %v when it died, want kubectl to end cleanly; it said %q", holder.name, err, errOut.String())
			}
		case <-wctx.Done():
			t.Fatalf("the watch through %s did not end when it died", holder.name)
		}
		// The person's next command, and the other person, go on through
		// the replicas left.
		for i := range 4 {
			if user, errOut := u.whoami(ctx); user != signinEmail {
				t.Errorf("whoami %d after %s died: got %q\n%s", i, holder.name, user, errOut)
			}
		}
		for _, r := range s.replicas {
			if r != holder {
				if got := whoamiWith(t, s.client(r, nil), s.routeURL, "Bearer Pomerium-"+other); got != signinOutsiderEmail {
					t.Errorf("the other person on %s after %s died: got %q", r.name, holder.name, got)
				}
			}
		}
	})

	t.Run("ten replicas starting at once against an empty database all serve", func(t *testing.T) {
		db, err := s.pg.NewDatabase(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 10)
		for i := range errs {
			wg.Go(func() {
				r, env, err := s.newReplica(fmt.Sprintf("fresh-%d", i), db)
				if err != nil {
					errs[i] = err
					return
				}
				p, err := testenv.StartServerProcess(ctx, r.name, s.bin, s.dir, nil, env, r.readyURL(), nil)
				if err != nil {
					errs[i] = err
					return
				}
				t.Cleanup(func() { p.Stop(10 * time.Second) })
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
		}
		conn, err := pgx.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var versions, rows int
		if err := conn.QueryRow(ctx, "SELECT count(DISTINCT version), count(*) FROM portcullis_schema_migrations").Scan(&versions, &rows); err != nil {
			t.Fatal(err)
		}
		if versions == 0 || rows != versions {
			t.Errorf("schema migrations: %d rows for %d versions, want each version applied once", rows, versions)
		}
	})
}

// status is the status code of a GET of url.
func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
