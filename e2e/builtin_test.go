package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/idp/builtin"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
)

// TestSignInBuiltinProvider signs in with the provider built into
// Portcullis (IDP_PROVIDER=builtin): users and groups from a file, and the
// groups reach the apiserver.
func TestSignInBuiltinProvider(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cluster := testenv.NewCluster(t)
	for _, f := range []string{"../deploy/kubernetes/service-account.yaml", "../deploy/kubernetes/user-binding.yaml"} {
		if _, _, err := cluster.Kubectl(ctx, nil, "apply", "-f", f); err != nil {
			t.Fatal(err)
		}
	}
	saToken, err := cluster.CreateToken(ctx, "default", "portcullis", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hash, err := builtin.HashPassword("a long demo password")
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users.yaml")
	writeFile(t, users, fmt.Sprintf("- email: someuser@example.com\n  groups: [dev, oncall]\n  password_hash: %q\n", hash))

	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	routeURL := fmt.Sprintf("https://127.0.0.1:%d", port)
	ca, err := testenv.NewCA("portcullis-e2e")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("portcullis", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf("- from: %s\n  to: %s\n  tls_custom_ca: %s\n  allow_any_authenticated_user: true\n  kubernetes_service_account_token: %q\n",
		routeURL, cluster.URL, b64(cluster.CA.CertPEM), saToken)
	env := []string{
		"ADDRESS=127.0.0.1:" + strconv.Itoa(port),
		fmt.Sprintf("AUTHENTICATE_SERVICE_URL=https://localhost:%d", port),
		"CERTIFICATE=" + b64(cert),
		"CERTIFICATE_KEY=" + b64(key),
		"COOKIE_SECRET=" + b64(random(32)),
		"SHARED_SECRET=" + b64(random(32)),
		"IDP_PROVIDER=builtin",
		"IDP_USERS_FILE=" + users,
		"POLICY=" + b64([]byte(policy)),
	}
	bin, err := testenv.BuildCommand(ctx, "github.com/portcullis-proxy/portcullis/cmd/portcullis", dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartServer(t, "portcullis", bin, dir, nil, env, routeURL+"/healthz", ca.ClientTLS())

	browser := testenv.NewBrowser(ca.ClientTLS())
	if _, _, err := browser.SignIn(ctx, routeURL+"/.pomerium/", "someuser@example.com", "wrong password", ""); err == nil || !strings.Contains(err.Error(), "sign-in refused") {
		t.Errorf("wrong password: got %v, want the login form back", err)
	}
	browser = testenv.NewBrowser(ca.ClientTLS())
	final, page, err := browser.SignIn(ctx, routeURL+"/.pomerium/", "someuser@example.com", "a long demo password", "")
	if err != nil || final.String() != routeURL+"/.pomerium/" || !strings.Contains(page, "someuser@example.com") {
		t.Fatalf("sign-in: ended at %v with %v; visited %v", final, err, browser.Visited)
	}
	var who struct {
		Email  string   `json:"email"`
		Groups []string `json:"groups"`
	}
	resp := get(t, browser.Client, routeURL+"/.pomerium/", "application/json", "")
	if json.Unmarshal([]byte(resp.body), &who); strings.Join(who.Groups, ",") != "dev,oncall" {
		t.Errorf("who am I: got %q, want groups dev and oncall", resp.body)
	}
	_, groups, _, code := selfSubjectReview(t, browser.Client, routeURL, http.Header{})
	if code != http.StatusCreated || !contains(groups, "dev") || !contains(groups, "oncall") {
		t.Errorf("apiserver saw groups %v (status %d), want dev and oncall", groups, code)
	}
	logs, _ := os.ReadFile(srv.LogPath)
	if !strings.Contains(string(logs), "built-in") {
		t.Errorf("the log does not warn that the built-in provider is for development")
	}
}
