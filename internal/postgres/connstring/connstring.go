// Package connstring reads PostgreSQL connection strings (a postgres://
// URL or libpq's key=value pairs) for the session store and for
// --check-config, and says what is wrong with one without ever repeating
// it: it may hold a password. It must not connect to anything, and it
// stays free of Portcullis's other packages so that configuration can use
// it.
package connstring

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Check reports whether s is a connection string Portcullis can use,
// without connecting. Its error never holds the password.
func Check(s string) error {
	_, err := Parse(s)
	return err
}

// Parse reads s into pgx's pool configuration. Its error never holds the
// password.
func Parse(s string) (*pgxpool.Config, error) {
	if strings.TrimSpace(s) == "" {
		// pgx would take an empty string to mean "from PG* variables and
		// defaults": a setting left out must not quietly mean localhost.
		return nil, errors.New("parsing the database connection string: it is empty")
	}
	cfg, err := pgxpool.ParseConfig(s)
	if err != nil {
		return nil, fmt.Errorf("parsing the database connection string: %s", parseErrorReason(err))
	}
	return cfg, nil
}

// parseErrorReason is pgx's reason for refusing a connection string, without
// the string. pgx masks the password in its message on a best-effort basis
// (its comment says so: a malformed string can hide where it is), and
// net/url's errors, which it wraps, quote the URL whole or in part; so take
// pgx's own reason, between the quoted string and the cause, and the cause
// only if it is not net/url's.
func parseErrorReason(err error) string {
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		// pgxpool's own settings (pool_max_conns=x): the error quotes
		// the value, which is not the password.
		return err.Error()
	}
	msg := pce.Error()
	cause := errors.Unwrap(pce)
	if cause != nil {
		msg = strings.TrimSuffix(msg, " ("+cause.Error()+")")
	}
	i := strings.LastIndex(msg, "`: ")
	if i < 0 {
		return "not a valid URL or key=value string"
	}
	msg = msg[i+len("`: "):]
	var urlErr *url.Error
	if cause != nil && !errors.As(cause, &urlErr) {
		msg += ": " + cause.Error()
	}
	return unquote(msg)
}

// unquote blanks what a message quotes: pgx's reasons quote parts of the
// string they refuse ("unexpected spaces found in …"), which may be the
// password.
func unquote(msg string) string {
	var b strings.Builder
	in, escaped := false, false
	for _, r := range msg {
		switch {
		case in && escaped:
			escaped = false
		case in && r == '\\':
			escaped = true // Go's %q: \" does not end the quote
		case r == '"':
			if !in {
				b.WriteString(`"…"`)
			}
			in = !in
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}
