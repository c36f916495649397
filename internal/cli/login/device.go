package login

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/cli/route"
)

// DeviceOptions configure one device sign-in (RFC 8628): for a person
// whose browser is on another device than portcullis-cli, such as a
// laptop's, while the CLI runs over SSH.
type DeviceOptions struct {
	// Authorize asks the route for a device sign-in
	// (route.Client.DeviceAuthorize).
	Authorize func(ctx context.Context) (*route.DeviceAuthorization, error)
	// Poll asks the route once whether it was approved
	// (route.Client.DeviceToken).
	Poll func(ctx context.Context, deviceCode string) (route.Grant, error)
	// Server is the route's URL, for the messages.
	Server string
	// Timeout bounds the wait for the approval (DefaultTimeout if zero),
	// within the code's own life.
	Timeout time.Duration
	// Stderr receives every message for the person: the address, the
	// code and, on a terminal, a QR code of the address.
	Stderr io.Writer
	// Sleep waits d or until ctx ends; nil is a timer. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
}

// maxUnavailable is how many polls in a row may fail to get an answer (the
// network or the server's database down for a moment) before the sign-in
// gives up.
const maxUnavailable = 6

// Device runs one device sign-in and returns the raw JWT the route sent:
// it shows the person where to go and what to type, then polls at the
// interval the server asked for (and slower when told to) until a person
// approves or denies it, or it expires.
func Device(ctx context.Context, opts DeviceOptions) (route.Grant, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	stderr := opts.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	sleep := opts.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	d, err := opts.Authorize(ctx)
	if err != nil {
		return route.Grant{}, err
	}
	fmt.Fprintf(stderr, "To sign in to %s, open this address in a browser on any device:\n\n    %s\n\nand enter the code\n\n    %s\n\n",
		opts.Server, d.VerificationURI, d.UserCode)
	if d.VerificationURIComplete != nil {
		fmt.Fprintf(stderr, "Or open %s\n", d.VerificationURIComplete)
		if isTerminal(stderr) {
			fmt.Fprintf(stderr, "or scan this with your phone:\n\n%s\n", QR(d.VerificationURIComplete.String()))
		}
	}
	wait := min(timeout, d.ExpiresIn)
	fmt.Fprintf(stderr, "Check that the page names this machine's address before you approve. Waiting up to %s...\n", wait.Round(time.Second))
	// The time waited is the sum of the intervals slept, not the clock's:
	// the polls themselves take a moment each, and the code lasts a
	// little longer than the wait.
	var waited time.Duration
	interval, unavailable := d.Interval, 0
	for {
		if waited += interval; waited > wait {
			return route.Grant{}, fmt.Errorf("%w after %s: no one approved the sign-in for code %s; run the command again for a new code", ErrTimeout, wait.Round(time.Second), d.UserCode)
		}
		if err := sleep(ctx, interval); err != nil {
			return route.Grant{}, fmt.Errorf("signing in: %w", err)
		}
		tok, err := opts.Poll(ctx, d.DeviceCode)
		switch {
		case err == nil:
			return tok, nil
		case errors.Is(err, route.ErrAuthorizationPending):
			unavailable = 0
		case errors.Is(err, route.ErrSlowDown):
			// RFC 8628 §3.5: this and every later poll 5 seconds slower.
			interval += 5 * time.Second
		case errors.Is(err, route.ErrDeviceUnavailable) && ctx.Err() == nil:
			if unavailable++; unavailable >= maxUnavailable {
				return route.Grant{}, err
			}
		case errors.Is(err, route.ErrAccessDenied):
			return route.Grant{}, fmt.Errorf("signing in: %w; if it was not you who denied it, run the command again", err)
		case errors.Is(err, route.ErrExpiredToken):
			return route.Grant{}, fmt.Errorf("signing in: %w; run the command again for a new code", err)
		default:
			return route.Grant{}, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// isTerminal reports whether w is a terminal, where a QR code can be
// drawn: kubectl hands its exec plugin its own stderr.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Headless reports whether the person probably has no browser on this
// machine, so that a device sign-in (whose address they open anywhere)
// is the one that can work: a session over SSH (SSH_CONNECTION or
// SSH_TTY set), or, on Linux and the other Unix systems but macOS, no
// graphical display (neither DISPLAY nor WAYLAND_DISPLAY). goos is
// runtime.GOOS.
func Headless(getenv func(string) string, goos string) bool {
	if getenv("SSH_CONNECTION") != "" || getenv("SSH_TTY") != "" {
		return true
	}
	switch goos {
	case "darwin", "windows", "ios", "android":
		return false
	}
	return getenv("DISPLAY") == "" && getenv("WAYLAND_DISPLAY") == ""
}
