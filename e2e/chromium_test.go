package e2e

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// artifactsEnv names a directory for files a test leaves for people to look
// at (screenshots). The files also always go to e2e/artifacts/ (ignored by
// git).
const artifactsEnv = "PORTCULLIS_E2E_ARTIFACTS"

// TestChromiumSignIn signs in with a real browser: headless Chromium opens
// the who-am-I page, lands on the built-in provider's login page, fills in
// the form and comes back signed in, with the user's groups shown.
func TestChromiumSignIn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const email, password = "someuser@example.com", "a long demo password"
	users := builtinUsersFile(t, email, password, "dev", "oncall")
	st := startBuiltinStack(t, ctx, users)
	routeURL, authURL := st.routeURL, st.authURL

	tab := testenv.NewChromium(t, st.certPEM)
	bctx, bcancel := context.WithTimeout(tab, 2*time.Minute)
	defer bcancel()

	// The who-am-I page sends a browser without a session to the provider.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(routeURL+"/.pomerium/"),
		chromedp.WaitVisible(chromedp.ID("password")),
	); err != nil {
		t.Fatalf("opening %s/.pomerium/: %v", routeURL, err)
	}
	loginURL, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loginURL, authURL+"/.portcullis/idp/") {
		t.Fatalf("landed on %s, want the built-in provider's login page under %s/.portcullis/idp/", loginURL, authURL)
	}

	// Fill in the form as a person does, and press the button.
	if err := chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		// #groups is only on the who-am-I page, not on the login page.
		chromedp.WaitVisible(chromedp.ID("groups")),
	); err != nil {
		t.Fatalf("signing in on %s: %v", loginURL, err)
	}
	final, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if final != routeURL+"/.pomerium/" {
		t.Errorf("signed in at %s, want %s/.pomerium/", final, routeURL)
	}
	gotEmail, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("email")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(gotEmail) != email {
		t.Errorf("who-am-I page shows email %q, want %q", gotEmail, email)
	}
	gotGroups, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("groups")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(gotGroups) != "dev, oncall" {
		t.Errorf("who-am-I page shows groups %q, want \"dev, oncall\"", gotGroups)
	}

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	saveArtifact(t, "whoami.png", shot)
	checkNotBlankPNG(t, shot)
}

// saveArtifact writes a file for people to look at: to $PORTCULLIS_E2E_ARTIFACTS
// (else the test's temporary directory) and to e2e/artifacts/.
func saveArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	first := os.Getenv(artifactsEnv)
	if first == "" {
		first = t.TempDir()
	}
	for _, d := range []string{first, "artifacts"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(p)
		t.Logf("artifact: %s", abs)
	}
}

// checkNotBlankPNG fails the test unless data is a PNG with something drawn
// on it: enough pixels that differ from the top-left (background) one.
func checkNotBlankPNG(t *testing.T, data []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 100 || b.Dy() < 100 {
		t.Fatalf("the screenshot is %dx%d, want a page", b.Dx(), b.Dy())
	}
	bg := img.At(b.Min.X, b.Min.Y)
	br, bgG, bb, ba := bg.RGBA()
	differ := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			if r != br || g != bgG || bl != bb || a != ba {
				differ++
			}
		}
	}
	if differ < 500 {
		t.Errorf("the screenshot (%dx%d) looks blank: %d pixels differ from the background", b.Dx(), b.Dy(), differ)
	}
}
