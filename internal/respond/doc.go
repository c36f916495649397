// Package respond owns how Portcullis answers a request it does not
// forward: whether the client is a person's browser or a program
// (FromBrowser), and the one error writer (Error) that answers a program
// with a Kubernetes Status JSON body, which kubectl and client-go print as
// "Error from server (Reason): message", and a browser with a small HTML
// page in the look of the sign-in pages. Page and HTML write the other
// pages Portcullis serves, with the same security headers.
//
// Every error response of the server, the proxy and sign-in goes through
// Error, so that a client always gets one format for one kind of request
// and the security headers cannot be forgotten on one path.
//
// It must not decide anything about the request beyond its format: who
// the user is (authenticate), whether the request is allowed (policy),
// what status a failure deserves (its caller). It keeps no state and logs
// nothing: the caller logs the full error; a Problem holds only what the
// client may see.
package respond
