package respond

import (
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// FromBrowser reports whether r comes from a person's browser, to be
// answered with a page or sent to sign in, rather than from a program
// (kubectl, client-go, curl, portcullis-cli, a page's fetch), to be
// answered with a Kubernetes Status it can parse.
//
// A request with a credential a program put there itself is from a
// program: X-Pomerium-Authorization, or Authorization in any scheme but
// the ones a browser fills in by itself from its own store when a server
// challenges it (Basic, RFC 7617; Digest, RFC 7616; Negotiate and NTLM,
// RFC 4559). kubectl always sends Bearer. Counting those four too, as an
// earlier test did, sent a browser that had once signed in to an upstream
// application with Basic a JSON 401 instead of the sign-in page.
//
// Otherwise a browser is what lists text/html in Accept with a quality
// above zero (RFC 9110, section 12.5.1), as browsers do on every
// navigation; kubectl, client-go and curl ask for application/json or
// */*, and a page's fetch() for */* unless it asks otherwise.
func FromBrowser(r *http.Request) bool {
	if r.Header.Get("X-Pomerium-Authorization") != "" {
		return false
	}
	for _, v := range r.Header.Values("Authorization") {
		if !browserScheme(v) {
			return false
		}
	}
	return acceptsHTML(r.Header.Values("Accept"))
}

// browserScheme reports whether an Authorization value is in a scheme a
// browser sends by itself. Schemes are case-insensitive (RFC 9110,
// section 11.1).
func browserScheme(auth string) bool {
	scheme, _, _ := strings.Cut(strings.TrimSpace(auth), " ")
	for _, s := range []string{"Basic", "Digest", "Negotiate", "NTLM"} {
		if strings.EqualFold(scheme, s) {
			return true
		}
	}
	return false
}

// acceptsHTML reports whether the Accept header values list text/html with
// a quality above zero.
func acceptsHTML(accept []string) bool {
	for _, v := range accept {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "text/html" {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// A Problem is an error response as the client sees it: a status code, and
// what a program and a person are told. It holds nothing the client may
// not see; the full error belongs in the caller's log.
type Problem struct {
	// Code is the HTTP status code.
	Code int
	// Message is what a program is told: the message of the Status, which
	// kubectl prints as "Error from server (Reason): Message". Lower case,
	// beginning "portcullis: ", it says what went wrong and what to do, and
	// never holds a token or a header value. If empty, it is made from
	// Title, in lower case, and Text: "portcullis: title: Text".
	Message string
	// Title and Text are the heading and the paragraph of the page a
	// browser gets. If empty, they are the status text of Code ("Bad
	// Gateway") and Message.
	Title, Text string
}

func (p Problem) message() string {
	if p.Message != "" {
		return p.Message
	}
	title := p.Title
	if title == "" {
		title = http.StatusText(p.Code)
	}
	msg := "portcullis: " + strings.ToLower(title)
	if text := strings.TrimSuffix(p.Text, "."); text != "" {
		msg += ": " + text
	}
	return msg
}

func (p Problem) title() string {
	if p.Title != "" {
		return p.Title
	}
	if t := http.StatusText(p.Code); t != "" {
		return t
	}
	return "Error"
}

func (p Problem) text() string {
	if p.Text != "" {
		return p.Text
	}
	return p.Message
}

// Error answers r with p: a page for a browser, a Kubernetes Status for a
// program (see FromBrowser). Every error response Portcullis makes itself
// goes through here.
func Error(w http.ResponseWriter, r *http.Request, p Problem) {
	if FromBrowser(r) {
		Page(w, p.Code, p.title(), p.text())
		return
	}
	writeStatus(w, p.Code, p.message())
}

// signInAgain is what a kubectl user does about a missing or expired
// session: the exec-credential plugin (portcullis-cli) opens the browser
// on the next call once kubectl has seen a 401.
const signInAgain = "run any kubectl command to sign in again"

// Unauthenticated is the 401 for a request with no usable credential;
// detail says what was wrong with it (e.g. "the request has no Portcullis
// token", "token signature is invalid") and must not quote the credential.
func Unauthenticated(detail string) Problem {
	msg := "portcullis: no valid credentials"
	if detail != "" {
		msg += ": " + detail
	}
	return Problem{Code: http.StatusUnauthorized, Message: msg + ": " + signInAgain}
}

// SessionExpired is the 401 for a session or token that was valid and has
// expired, or was signed out.
func SessionExpired() Problem {
	return Problem{Code: http.StatusUnauthorized, Message: "portcullis: your session expired: " + signInAgain}
}
