package respond

import (
	"html/template"
	"net/http"
)

// HTML answers with the page tmpl makes of data, and the headers every
// Portcullis page carries:
//
//   - Content-Type, and X-Content-Type-Options: nosniff: pages quote what
//     the identity provider or the client sent (a name, a group, an error
//     description); the browser must read them as HTML and nothing else
//     (html/template escapes them for HTML);
//   - Cache-Control: no-store: a page is about this person and this
//     request, and no cache may show it to anyone else or later;
//   - Content-Security-Policy: frame-ancestors 'none' and, for browsers
//     that predate it, X-Frame-Options: DENY: no other site may frame a
//     page and have the person click its buttons (sign out) unseen
//     (clickjacking).
//
// An error executing tmpl cannot be answered any more: the status line is
// out. The templates are fixed and their data plain, so it does not happen.
func HTML(w http.ResponseWriter, code int, tmpl *template.Template, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(code)
	tmpl.Execute(w, data)
}

// Page answers with a small HTML page in the look of the sign-in pages: a
// heading and a paragraph, both escaped. Error uses it for browsers; it is
// also the page of a result ("Signed out").
func Page(w http.ResponseWriter, code int, title, text string) {
	HTML(w, code, pageTemplate, struct{ Title, Text string }{title, text})
}

// Style is the style sheet of every Portcullis page, for templates of
// their own (the who-am-I page, the sign-out button) to look the same.
const Style = `body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}dt{font-weight:600;margin-top:.6rem}`

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} · Portcullis</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + Style + `</style>
</head><body><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))
