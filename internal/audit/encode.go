package audit

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendEvent appends e's JSON to dst, as kube-apiserver writes an
// audit.k8s.io/v1 Event: its fields in the order of the Go type
// (k8s.io/apiserver/pkg/apis/audit/v1), the optional ones omitted when
// empty, timestamps as metav1.MicroTime, map keys sorted, and strings
// escaped as encoding/json escapes them (see appendString). It is what
// MarshalJSON returns, written by hand because an event is encoded for
// every request and encoding/json's reflection cost more CPU than the rest
// of the audit trail.
func appendEvent(dst []byte, e *Event) []byte {
	dst = append(dst, '{')
	if e.Kind != "" {
		dst = append(dst, `"kind":`...)
		dst = appendString(dst, e.Kind)
		dst = append(dst, ',')
	}
	if e.APIVersion != "" {
		dst = append(dst, `"apiVersion":`...)
		dst = appendString(dst, e.APIVersion)
		dst = append(dst, ',')
	}
	dst = append(dst, `"level":`...)
	dst = appendString(dst, string(e.Level))
	dst = append(dst, `,"auditID":`...)
	dst = appendString(dst, e.AuditID)
	dst = append(dst, `,"stage":`...)
	dst = appendString(dst, string(e.Stage))
	dst = append(dst, `,"requestURI":`...)
	dst = appendString(dst, e.RequestURI)
	dst = append(dst, `,"verb":`...)
	dst = appendString(dst, e.Verb)
	dst = append(dst, `,"user":`...)
	dst = appendUser(dst, &e.User)
	if e.ImpersonatedUser != nil {
		dst = append(dst, `,"impersonatedUser":`...)
		dst = appendUser(dst, e.ImpersonatedUser)
	}
	if len(e.SourceIPs) > 0 {
		dst = append(dst, `,"sourceIPs":`...)
		dst = appendStrings(dst, e.SourceIPs)
	}
	if e.UserAgent != "" {
		dst = append(dst, `,"userAgent":`...)
		dst = appendString(dst, e.UserAgent)
	}
	if e.ObjectRef != nil {
		dst = append(dst, `,"objectRef":`...)
		dst = appendObjectRef(dst, e.ObjectRef)
	}
	if e.ResponseStatus != nil {
		dst = append(dst, `,"responseStatus":`...)
		dst = appendStatus(dst, e.ResponseStatus)
	}
	dst = append(dst, `,"requestReceivedTimestamp":`...)
	dst = appendMicroTime(dst, e.RequestReceivedTimestamp)
	dst = append(dst, `,"stageTimestamp":`...)
	dst = appendMicroTime(dst, e.StageTimestamp)
	if len(e.Annotations) > 0 {
		dst = append(dst, `,"annotations":`...)
		dst = appendStringMap(dst, e.Annotations)
	}
	return append(dst, '}')
}

// appendEventList appends an audit.k8s.io/v1 EventList of events.
func appendEventList(dst []byte, events []*Event) []byte {
	dst = append(dst, `{"kind":"EventList","apiVersion":"`+APIVersion+`","items":[`...)
	for i, ev := range events {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendEvent(dst, ev)
	}
	return append(dst, "]}"...)
}

// appendUser appends u as authentication.k8s.io/v1 UserInfo.
func appendUser(dst []byte, u *UserInfo) []byte {
	dst = append(dst, '{')
	n := len(dst)
	dst = appendStringField(dst, n, "username", u.Username)
	dst = appendStringField(dst, n, "uid", u.UID)
	if len(u.Groups) > 0 {
		dst = appendKey(dst, n, "groups")
		dst = appendStrings(dst, u.Groups)
	}
	if len(u.Extra) > 0 {
		dst = appendKey(dst, n, "extra")
		dst = appendExtra(dst, u.Extra)
	}
	return append(dst, '}')
}

// appendObjectRef appends r as audit.k8s.io/v1 ObjectReference.
func appendObjectRef(dst []byte, r *ObjectReference) []byte {
	dst = append(dst, '{')
	n := len(dst)
	dst = appendStringField(dst, n, "resource", r.Resource)
	dst = appendStringField(dst, n, "namespace", r.Namespace)
	dst = appendStringField(dst, n, "name", r.Name)
	dst = appendStringField(dst, n, "uid", r.UID)
	dst = appendStringField(dst, n, "apiGroup", r.APIGroup)
	dst = appendStringField(dst, n, "apiVersion", r.APIVersion)
	dst = appendStringField(dst, n, "subresource", r.Subresource)
	return append(dst, '}')
}

// appendStatus appends s as kube-apiserver writes a metav1.Status in an
// event: its ListMeta always, as "metadata":{}, and the code last.
func appendStatus(dst []byte, s *ResponseStatus) []byte {
	dst = append(dst, `{"metadata":{}`...)
	n := len(dst) - 1 // never the first field: every one takes a comma
	dst = appendStringField(dst, n, "status", s.Status)
	dst = appendStringField(dst, n, "message", s.Message)
	dst = appendStringField(dst, n, "reason", s.Reason)
	if s.Code != 0 {
		dst = append(dst, `,"code":`...)
		dst = strconv.AppendInt(dst, int64(s.Code), 10)
	}
	return append(dst, '}')
}

// appendKey appends the name of an object's member, after a comma unless
// it is the first member: the object's members start at dst[start].
func appendKey(dst []byte, start int, name string) []byte {
	if len(dst) > start {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...) // the names are ours, with nothing to escape
	return append(dst, '"', ':')
}

// appendStringField appends the member name: v unless v is empty
// (omitempty), as appendKey.
func appendStringField(dst []byte, start int, name, v string) []byte {
	if v == "" {
		return dst
	}
	dst = appendKey(dst, start, name)
	return appendString(dst, v)
}

// appendStrings appends a JSON array of ss; nil is null, as encoding/json
// writes a nil slice.
func appendStrings(dst []byte, ss []string) []byte {
	if ss == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

// sortedKeys returns m's keys in the order encoding/json writes them, in
// keys if they fit.
func sortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendStringMap appends m as a JSON object, its keys sorted.
func appendStringMap(dst []byte, m map[string]string) []byte {
	var buf [16]string
	return appendObject(dst, m, buf[:0], appendString)
}

// appendExtra appends UserInfo.Extra as a JSON object, its keys sorted.
func appendExtra(dst []byte, m map[string][]string) []byte {
	var buf [4]string
	return appendObject(dst, m, buf[:0], appendStrings)
}

// appendObject appends m as a JSON object, its keys sorted (into keys,
// the caller's room for them), each value by appendValue.
func appendObject[V any](dst []byte, m map[string]V, keys []string, appendValue func([]byte, V) []byte) []byte {
	dst = append(dst, '{')
	for i, k := range sortedKeys(keys, m) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendValue(dst, m[k])
	}
	return append(dst, '}')
}

// appendMicroTime appends t as metav1.MicroTime: null for the zero time,
// else RFC 3339 in UTC with exactly six fractional digits, truncated.
func appendMicroTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, "null"...)
	}
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		// Not four digits: Format knows how such a year is written.
		dst = append(dst, '"')
		dst = t.AppendFormat(dst, rfc3339Micro)
		return append(dst, '"')
	}
	hour, minute, sec := t.Clock()
	dst = append(dst, '"')
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, t.Nanosecond()/1000, 6)
	return append(dst, 'Z', '"')
}

// appendDigits appends the n lowest decimal digits of v ≥ 0, zero-padded.
func appendDigits(dst []byte, v, n int) []byte {
	dst = append(dst, "000000"[:n]...)
	for i := len(dst) - 1; v > 0 && i >= len(dst)-n; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
	return dst
}

// hexDigits are the digits of a \u escape.
const hexDigits = "0123456789abcdef"

// plainASCII holds the ASCII bytes a JSON string can hold as they are:
// not a control character, a quote or a backslash, and not '<', '>' or
// '&', which encoding/json, and so kube-apiserver, escapes so that the
// JSON can be embedded in HTML.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// appendString appends s as a JSON string, escaped byte for byte as
// encoding/json escapes it: '"' and '\' with a backslash; \b, \f, \n, \r
// and \t as such and the other control characters as \u00XX; '<', '>',
// '&', U+2028 and U+2029 as \u escapes; each byte that is not part of
// valid UTF-8 as U+FFFD, the replacement character (encoding/json wrote
// it as the escape \ufffd before it was built on encoding/json/v2: the
// same string); everything else as it is.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // of the run not yet appended
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plainASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
