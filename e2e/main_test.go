package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// Environment of the browser stand-in (see TestMain).
const (
	browserEnv         = "PORTCULLIS_E2E_BROWSER"          // set: run as the browser
	browserCAEnv       = "PORTCULLIS_E2E_BROWSER_CA"       // PEM file of the CA to trust
	browserUserEnv     = "PORTCULLIS_E2E_BROWSER_USER"     // username for the provider's form
	browserPasswordEnv = "PORTCULLIS_E2E_BROWSER_PASSWORD" // its password
	browserRunsEnv     = "PORTCULLIS_E2E_BROWSER_RUNS"     // file that gets a line per run
)

// TestMain runs the tests, unless the test binary was started as a
// browser: portcullis-cli, run by kubectl as its exec plugin, opens the
// sign-in page with `--browser-cmd <this binary> URL`. The stand-in
// counts its run, then does what a person does in a browser — follow the
// redirects, fill in the provider's login form — with testenv's Browser,
// until the loopback listener of portcullis-cli answers.
func TestMain(m *testing.M) {
	if os.Getenv(browserEnv) != "" {
		os.Exit(browserStandIn(os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

func browserStandIn(start string) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "e2e browser stand-in: "+format+"\n", args...)
		return 1
	}
	if runs := os.Getenv(browserRunsEnv); runs != "" {
		f, err := os.OpenFile(runs, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fail("counting the run: %v", err)
		}
		fmt.Fprintln(f, start)
		f.Close()
	}
	pemBytes, err := os.ReadFile(os.Getenv(browserCAEnv))
	if err != nil {
		return fail("reading the CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return fail("no certificate in %s", os.Getenv(browserCAEnv))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := testenv.NewBrowser(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	final, page, err := b.SignIn(ctx, start, os.Getenv(browserUserEnv), os.Getenv(browserPasswordEnv), "")
	if err != nil {
		return fail("%v\nvisited:\n  %s", err, strings.Join(b.Visited, "\n  "))
	}
	// The last page is portcullis-cli's own, on the loopback listener.
	if final.Scheme != "http" || final.Hostname() != "127.0.0.1" || !strings.Contains(page, "You can close this tab") {
		return fail("ended at %s with %q, want portcullis-cli's loopback page", redactQuery(final), page)
	}
	return 0
}

// redactQuery drops the query (it holds the token) from a URL for messages.
func redactQuery(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.String()
}
