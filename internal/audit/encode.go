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
		dst = appendAnnotations(dst, e.Annotations)
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

// appendAnnotations appends a as a JSON object, its keys sorted. Set and
// MakeAnnotations keep them so; annotations built otherwise are sorted,
// and of a key given twice the last value kept, in a copy, so that the
// object is what encoding/json writes of the map they stand for.
func appendAnnotations(dst []byte, a Annotations) []byte {
	for i := 1; i < len(a); i++ {
		if a[i-1].Key >= a[i].Key {
			a = MakeAnnotations(a.Map())
			break
		}
	}
	dst = append(dst, '{')
	for i, an := range a {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, an.Key)
		dst = append(dst, ':')
		dst = appendString(dst, an.Value)
	}
	return append(dst, '}')
}

// appendExtra appends UserInfo.Extra as a JSON object, its keys sorted as
// encoding/json sorts a map's.
func appendExtra(dst []byte, m map[string][]string) []byte {
	var buf [4]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendStrings(dst, m[k])
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

// Eight copies of a byte, and of its high bit, for plainPrefix.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainPrefix returns the length of s's longest prefix of plainASCII
// bytes. Most of an event's text is such: it is tested eight bytes at a
// time, whether any has its high bit set (a byte of UTF-8 beyond ASCII),
// is below ' ', or is one of the five that are escaped. A byte is found
// zero, or below n, by the borrow it takes in a subtraction (Hacker's
// Delight, 6-1): a word holds one exactly when the result has a high bit
// set.
func plainPrefix(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8] // one bounds check for the eight loads, which become one
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		q, b, l, g, a := x^(ones*'"'), x^(ones*'\\'), x^(ones*'<'), x^(ones*'>'), x^(ones*'&')
		bad := x&highs | (x-ones*' ')&^x |
			(q-ones)&^q | (b-ones)&^b | (l-ones)&^l | (g-ones)&^g | (a-ones)&^a
		if bad&highs != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || !plainASCII[c] {
			break
		}
	}
	return i
}

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
		if i += plainPrefix(s[i:]); i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
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
