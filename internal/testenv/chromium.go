package testenv

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// ChromiumPath is where the e2e tests expect Chromium: Debian's package
// (internal/testenv/install-chromium.sh, run by `make testenv`).
const ChromiumPath = "/usr/bin/chromium"

const howToGetChromium = "the real-browser e2e tests need Chromium at " + ChromiumPath +
	": run `make testenv` as root, or `apt-get update && apt-get install -y chromium`"

// NewChromium starts a headless Chromium for one test and returns the
// chromedp context of its first tab. The browser gets a fresh profile and
// trusts exactly the server certificates in serverCertPEM (by the SHA-256
// of their public keys, --ignore-certificate-errors-spki-list); every other
// certificate error still fails. The browser stops when the test ends, and
// its output is shown if the test failed. A missing Chromium fails the test.
func NewChromium(t testing.TB, serverCertPEM []byte) context.Context {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("testenv: %v\n%s", err, howToGetChromium)
	}
	spki, err := spkiHashes(serverCertPEM)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	out := &logbuf.Buffer{} // chromedp writes the browser's output from its own goroutines
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spki, ",")),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 768),
		chromedp.CombinedOutput(out),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output:\n%s", tail(out.String(), 40))
		}
	})
	// Start the browser now, so that a browser that cannot start fails here
	// with its output rather than in the first step of the test.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err = <-started:
	case <-time.After(time.Minute):
		err = fmt.Errorf("no answer within a minute")
	}
	if err != nil {
		t.Fatalf("testenv: starting %s: %v\n%s\n%s", ChromiumPath, err, tail(out.String(), 40), howToGetChromium)
	}
	return ctx
}

// spkiHashes returns the base64 SHA-256 of the SubjectPublicKeyInfo of each
// certificate in certPEM, as --ignore-certificate-errors-spki-list wants.
func spkiHashes(certPEM []byte) ([]string, error) {
	var hashes []string
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing the server certificate: %w", err)
		}
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		hashes = append(hashes, base64.StdEncoding.EncodeToString(sum[:]))
	}
	if len(hashes) == 0 {
		return nil, fmt.Errorf("no certificate in the server certificate PEM")
	}
	return hashes, nil
}
