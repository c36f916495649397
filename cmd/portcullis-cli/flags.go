package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-proxy/portcullis/internal/cli/broker"
	"github.com/portcullis-proxy/portcullis/internal/cli/cache"
	"github.com/portcullis-proxy/portcullis/internal/cli/login"
	"github.com/portcullis-proxy/portcullis/internal/cli/route"
)

// connFlags are the flags of every command that reaches a route and may
// sign in: pomerium-cli's names, and --no-browser, --device and
// --login-timeout.
type connFlags struct {
	tls          route.TLSOptions
	browserCmd   string
	noBrowser    bool
	device       bool
	loginTimeout time.Duration
	// changed reports whether the command was given a flag, to tell a
	// --device given from its default.
	changed func(name string) bool
}

func (f *connFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	f.changed = fs.Changed
	fs.StringVar(&f.browserCmd, "browser-cmd", "", "program to open the sign-in page with (its argument is the URL); default $BROWSER, else the system's opener (xdg-open, open on macOS, rundll32 url.dll,FileProtocolHandler on Windows)")
	fs.BoolVar(&f.noBrowser, "no-browser", false, "do not open a browser: print the sign-in address (on stderr) and wait for a browser on this machine")
	fs.BoolVar(&f.device, "device", false, "sign in with a code on any device (a phone, a laptop): print an address and a code (on stderr) and wait for the approval; "+
		"the default over SSH and where there is no display, unless --browser-cmd, --no-browser or $BROWSER choose a browser here; --device=false never")
	fs.DurationVar(&f.loginTimeout, "login-timeout", login.DefaultTimeout, "how long to wait for the sign-in in the browser")
	fs.BoolVar(&f.tls.InsecureSkipVerify, "disable-tls-verification", false, "do not verify the server's TLS certificate (insecure)")
	fs.StringVar(&f.tls.CACert, "ca-cert", "", "CA certificate to trust for the server: a PEM file, or base64-encoded PEM as pomerium-cli takes")
	fs.StringVar(&f.tls.AlternateCAPath, "alternate-ca-path", "", "PEM file of CA certificates to trust for the server")
	cmd.MarkFlagFilename("ca-cert")
	cmd.MarkFlagFilename("alternate-ca-path", "pem", "crt")
}

// args returns the flags that reproduce f for the exec stanza `k8s setup`
// writes.
func (f *connFlags) args() ([]string, error) {
	args, err := f.tls.Args()
	if err != nil {
		return nil, err
	}
	if f.browserCmd != "" {
		args = append(args, "--browser-cmd", f.browserCmd)
	}
	if f.noBrowser {
		args = append(args, "--no-browser")
	}
	switch {
	case f.changed == nil || !f.changed("device"):
	case f.device:
		args = append(args, "--device")
	default:
		args = append(args, "--device=false")
	}
	if f.loginTimeout != login.DefaultTimeout {
		args = append(args, "--login-timeout", f.loginTimeout.String())
	}
	return args, nil
}

// broker returns the credential broker for the route at rawURL, and the
// client it talks to the route with (whose idle connections the caller
// closes when done).
func (f *connFlags) broker(rawURL string, stderr io.Writer) (*broker.Broker, *route.Client, error) {
	u, err := route.ParseURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	if f.loginTimeout <= 0 {
		return nil, nil, fmt.Errorf("--login-timeout must be positive, got %s", f.loginTimeout)
	}
	client, err := route.New(u, f.tls)
	if err != nil {
		return nil, nil, err
	}
	dir, err := cache.DefaultDir()
	if err != nil {
		return nil, nil, err
	}
	client.UserAgent = fmt.Sprintf("portcullis-cli/%s (%s/%s)", version, runtime.GOOS, runtime.GOARCH)
	b := &broker.Broker{
		URL:   u.String(),
		Cache: cache.New(dir),
		Check: func(ctx context.Context, jwt string) error {
			_, err := client.WhoAmI(ctx, jwt)
			return err
		},
		Login: func(ctx context.Context) (route.Grant, error) {
			if f.useDevice(os.Getenv, runtime.GOOS) {
				return login.Device(ctx, login.DeviceOptions{
					Authorize: client.DeviceAuthorize,
					Poll:      client.DeviceToken,
					Server:    u.String(),
					Timeout:   f.loginTimeout,
					Stderr:    stderr,
				})
			}
			g, err := login.Login(ctx, login.Options{
				SignInURL: client.LoginURL,
				Server:    u.String(),
				Browser:   login.ChooseBrowser(f.browserCmd, os.Getenv("BROWSER"), f.noBrowser),
				Timeout:   f.loginTimeout,
				Stderr:    stderr,
			})
			if err != nil || g.Renewal == "" {
				return g, err
			}
			// The renewal credential came through the browser, in a URL
			// its history keeps: spend it now, so that the one found
			// there later is a used one, and using it ends the session.
			next, err := client.Renew(ctx, g.Renewal)
			if err != nil {
				fmt.Fprintf(stderr, "portcullis-cli: warning: %v; the credential will not be renewed without a browser\n", err)
				return route.Grant{Token: g.Token}, nil
			}
			return next, nil
		},
		Renew:  client.Renew,
		Issuer: client.Issuer,
		Exchange: func(ctx context.Context, issuer, renewal string) (route.Grant, string, error) {
			iu, err := route.ParseURL(issuer)
			if err != nil {
				return route.Grant{}, "", err
			}
			ic, err := route.New(iu, f.tls)
			if err != nil {
				return route.Grant{}, "", err
			}
			defer ic.CloseIdleConnections()
			ic.UserAgent = client.UserAgent
			return ic.Exchange(ctx, renewal, u.String())
		},
		// kubectl runs the plugin; its process is the caller.
		Caller: os.Getppid(),
		Stderr: stderr,
	}
	return b, client, nil
}

// useDevice says whether to sign in with a code (login.Device) rather
// than through a browser on this machine: as --device says if it was
// given; otherwise where there is probably no browser here
// (login.Headless), unless a browser command (--browser-cmd, $BROWSER) or
// --no-browser chose the loopback sign-in.
func (f *connFlags) useDevice(getenv func(string) string, goos string) bool {
	if f.changed != nil && f.changed("device") {
		return f.device
	}
	if f.browserCmd != "" || f.noBrowser || getenv("BROWSER") != "" {
		return false
	}
	return login.Headless(getenv, goos)
}

// oneURL is cobra.ExactArgs(1) with a message that says what is missing.
func oneURL(cmd *cobra.Command, args []string) error {
	if len(args) != 1 || strings.TrimSpace(args[0]) == "" {
		return fmt.Errorf("%s needs the route's URL, such as https://k8s.example.com", cmd.CommandPath())
	}
	return nil
}
