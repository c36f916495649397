// Package login signs a person in through their browser, the way
// pomerium-cli does: it listens on a loopback port (127.0.0.1:0), asks the
// route's login endpoint for a sign-in URL that ends on that port, opens
// the URL in a browser (--browser-cmd, else $BROWSER, else the system's
// opener: xdg-open on Linux, open on macOS, rundll32's url.dll handler on
// Windows; or none with --no-browser) and always prints it on stderr so
// it can be opened by hand, then waits — with a timeout — for the browser
// to arrive on the loopback listener with ?pomerium_jwt=<token>, and
// answers it with a page saying the tab can be closed.
//
// The loopback path carries a random component, so another local process
// that finds the port cannot hand the CLI a token of its choosing without
// also knowing the path (which travels only inside the server's sealed
// sign-in state and the browser's redirect).
//
// The URL reaches the browser command as one argument, never through a
// shell (cmd.exe would run what follows an & in it), and only an http or
// https URL is opened at all.
//
// Device signs in without a browser on this machine (RFC 8628's device
// authorization grant, served by the route): it prints the route's
// verification address and a short code, with a QR code of the address
// on a terminal, and polls the route until a person approves the sign-in
// in a browser on any device. It is for SSH sessions and machines without
// a display (Headless).
//
// It must not cache or check tokens (packages cache and broker do), and
// it writes only to the stderr it is given: stdout belongs to the
// ExecCredential kubectl reads.
package login
