package login

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"rsc.io/qr"

	"github.com/portcullis-proxy/portcullis/internal/cli/route"
	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// deviceRun is one Device sign-in against a route stand-in whose polls
// answer answers in order.
type deviceRun struct {
	answers []error // nil: the token
	polls   int
	slept   []time.Duration
}

func (d *deviceRun) run(t *testing.T, timeout time.Duration) (string, string, error) {
	t.Helper()
	verify, _ := url.Parse("https://k8s.example.com/.pomerium/device")
	complete, _ := url.Parse("https://k8s.example.com/.pomerium/device?user_code=BCDF-GHJK")
	var stderr logbuf.Buffer
	tok, err := Device(context.Background(), DeviceOptions{
		Authorize: func(context.Context) (*route.DeviceAuthorization, error) {
			return &route.DeviceAuthorization{DeviceCode: "the-device-code", UserCode: "BCDF-GHJK", VerificationURI: verify,
				VerificationURIComplete: complete, ExpiresIn: 10 * time.Minute, Interval: 5 * time.Second}, nil
		},
		Poll: func(_ context.Context, code string) (route.Grant, error) {
			if code != "the-device-code" {
				t.Errorf("polled with %q, want the device code", code)
			}
			d.polls++
			if len(d.answers) == 0 {
				return route.Grant{}, route.ErrAuthorizationPending
			}
			err := d.answers[0]
			d.answers = d.answers[1:]
			if err == nil {
				return route.Grant{Token: "the.jwt.token"}, nil
			}
			return route.Grant{}, err
		},
		Server:  "https://k8s.example.com",
		Timeout: timeout,
		Stderr:  &stderr,
		Sleep: func(_ context.Context, d2 time.Duration) error {
			d.slept = append(d.slept, d2)
			return nil
		},
	})
	return tok.Token, stderr.String(), err
}

func TestDevice(t *testing.T) {
	const s = time.Second
	unavailable := fmt.Errorf("%w: connection refused", route.ErrDeviceUnavailable)
	tests := []struct {
		name      string
		answers   []error
		timeout   time.Duration
		wantToken bool
		wantErr   string
		wantSlept []time.Duration
	}{
		{name: "approved after two polls", answers: []error{route.ErrAuthorizationPending, route.ErrAuthorizationPending, nil},
			wantToken: true, wantSlept: []time.Duration{5 * s, 5 * s, 5 * s}},
		{name: "slow_down slows every later poll", answers: []error{route.ErrSlowDown, route.ErrAuthorizationPending, route.ErrSlowDown, nil},
			wantToken: true, wantSlept: []time.Duration{5 * s, 10 * s, 10 * s, 15 * s}},
		{name: "denied", answers: []error{route.ErrAuthorizationPending, fmt.Errorf("%w: the sign-in was denied", route.ErrAccessDenied)},
			wantErr: "signing in: the sign-in was denied: the sign-in was denied; if it was not you who denied it, run the command again"},
		{name: "expired", answers: []error{route.ErrExpiredToken},
			wantErr: "signing in: the sign-in expired before it was approved; run the command again for a new code"},
		{name: "the server unavailable for a while", answers: []error{unavailable, unavailable, unavailable, unavailable, unavailable, nil},
			wantToken: true},
		{name: "the server unavailable for good", answers: []error{unavailable, unavailable, unavailable, unavailable, unavailable, unavailable},
			wantErr: "the server cannot answer right now: connection refused"},
		{name: "another error ends it", answers: []error{errors.New("the server answered 400: no such device sign-in")},
			wantErr: "the server answered 400: no such device sign-in"},
		{name: "no one approves within the timeout", timeout: 20 * s,
			wantErr:   "sign-in timed out after 20s: no one approved the sign-in for code BCDF-GHJK; run the command again for a new code",
			wantSlept: []time.Duration{5 * s, 5 * s, 5 * s, 5 * s}},
		{name: "nor within the code's life", timeout: time.Hour,
			wantErr: "sign-in timed out after 10m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &deviceRun{answers: tc.answers}
			tok, stderr, err := d.run(t, tc.timeout)
			if tc.wantToken != (tok == "the.jwt.token") || (err == nil) != (tc.wantErr == "") || err != nil && !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("got %q, %v; want token %v, error %q", tok, err, tc.wantToken, tc.wantErr)
			}
			if tc.wantSlept != nil && !slices.Equal(d.slept, tc.wantSlept) {
				t.Errorf("slept %v, want %v", d.slept, tc.wantSlept)
			}
			for _, want := range []string{
				"To sign in to https://k8s.example.com, open this address in a browser on any device:\n\n    https://k8s.example.com/.pomerium/device\n\nand enter the code\n\n    BCDF-GHJK\n",
				"Or open https://k8s.example.com/.pomerium/device?user_code=BCDF-GHJK\n",
				"Check that the page names this machine's address before you approve.",
			} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if strings.Contains(stderr, "\x1b[") {
				t.Errorf("a QR code drawn on a stderr that is no terminal:\n%s", stderr)
			}
		})
	}
}

func TestDeviceAuthorizeFails(t *testing.T) {
	want := errors.New("asking https://k8s.example.com for a device sign-in: it has no device sign-in")
	_, err := Device(context.Background(), DeviceOptions{
		Authorize: func(context.Context) (*route.DeviceAuthorization, error) { return nil, want },
		Poll: func(context.Context, string) (route.Grant, error) {
			t.Fatal("polled without a device code")
			return route.Grant{}, nil
		},
	})
	if err != want {
		t.Errorf("got %v, want %v", err, want)
	}
}

func TestHeadless(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		goos string
		want bool
	}{
		{"a Linux desktop", map[string]string{"DISPLAY": ":0"}, "linux", false},
		{"a Wayland desktop", map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, "linux", false},
		{"a Linux server", nil, "linux", true},
		{"a FreeBSD server", nil, "freebsd", true},
		{"SSH into a desktop (X forwarding)", map[string]string{"DISPLAY": "localhost:10.0", "SSH_CONNECTION": "192.0.2.1 5000 192.0.2.2 22"}, "linux", true},
		{"SSH with a terminal", map[string]string{"SSH_TTY": "/dev/pts/1"}, "darwin", true},
		{"a Mac", nil, "darwin", false},
		{"Windows", nil, "windows", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Headless(func(k string) string { return tc.env[k] }, tc.goos); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestQR reads the drawn QR code back, module by module, and compares it
// with the code itself.
func TestQR(t *testing.T) {
	const text = "https://k8s.example.com/.pomerium/device?user_code=BCDF-GHJK"
	code, err := qr.Encode(text, qr.L)
	if err != nil {
		t.Fatal(err)
	}
	drawn := QR(text)
	lines := strings.Split(strings.TrimSuffix(drawn, "\n"), "\n")
	size := code.Size + 2*qrQuiet
	if len(lines) != (size+1)/2 {
		t.Fatalf("%d lines, want %d", len(lines), (size+1)/2)
	}
	for i, line := range lines {
		line = strings.TrimPrefix(line, "    \x1b[30;47m")
		line = strings.TrimSuffix(line, "\x1b[0m")
		cells := []rune(line)
		if len(cells) != size {
			t.Fatalf("line %d: %d cells, want %d", i, len(cells), size)
		}
		for x, c := range cells {
			top := strings.ContainsRune("█▀", c)
			bottom := strings.ContainsRune("█▄", c)
			if want := code.Black(x-qrQuiet, 2*i-qrQuiet); top != want {
				t.Fatalf("module (%d, %d): got %v, want %v", x, 2*i, top, want)
			}
			if want := code.Black(x-qrQuiet, 2*i+1-qrQuiet); bottom != want {
				t.Fatalf("module (%d, %d): got %v, want %v", x, 2*i+1, bottom, want)
			}
		}
	}
	if QR(strings.Repeat("x", 5000)) != "" {
		t.Errorf("a text too long for a QR code: want none")
	}
}
