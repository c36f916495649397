package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// referenceMarshal encodes e with encoding/json's reflection, as Event
// was encoded before appendEvent: the hand encoder must write the same
// JSON value (its members may come in another order).
func referenceMarshal(t testing.TB, e *Event) []byte {
	t.Helper()
	type status struct {
		Metadata struct{} `json:"metadata"`
		Code     int      `json:"code,omitempty"`
		Status   string   `json:"status,omitempty"`
		Message  string   `json:"message,omitempty"`
		Reason   string   `json:"reason,omitempty"`
	}
	type event struct {
		Kind                     string            `json:"kind,omitempty"`
		APIVersion               string            `json:"apiVersion,omitempty"`
		Level                    Level             `json:"level"`
		AuditID                  string            `json:"auditID"`
		Stage                    Stage             `json:"stage"`
		RequestURI               string            `json:"requestURI"`
		Verb                     string            `json:"verb"`
		User                     UserInfo          `json:"user"`
		ImpersonatedUser         *UserInfo         `json:"impersonatedUser,omitempty"`
		SourceIPs                []string          `json:"sourceIPs,omitempty"`
		UserAgent                string            `json:"userAgent,omitempty"`
		ObjectRef                *ObjectReference  `json:"objectRef,omitempty"`
		ResponseStatus           *status           `json:"responseStatus,omitempty"`
		RequestReceivedTimestamp *string           `json:"requestReceivedTimestamp"`
		StageTimestamp           *string           `json:"stageTimestamp"`
		Annotations              map[string]string `json:"annotations,omitempty"`
	}
	micro := func(t time.Time) *string {
		if t.IsZero() {
			return nil
		}
		s := t.UTC().Format(rfc3339Micro)
		return &s
	}
	r := event{Kind: e.Kind, APIVersion: e.APIVersion, Level: e.Level, AuditID: e.AuditID, Stage: e.Stage,
		RequestURI: e.RequestURI, Verb: e.Verb, User: e.User, ImpersonatedUser: e.ImpersonatedUser, SourceIPs: e.SourceIPs, UserAgent: e.UserAgent,
		ObjectRef: e.ObjectRef, RequestReceivedTimestamp: micro(e.RequestReceivedTimestamp),
		StageTimestamp: micro(e.StageTimestamp), Annotations: e.Annotations.Map()}
	if s := e.ResponseStatus; s != nil {
		r.ResponseStatus = &status{Code: s.Code, Status: s.Status, Message: s.Message, Reason: s.Reason}
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestEventEncodeGolden: the hand encoder writes the event kube-apiserver
// wrote byte for byte, member order and escapes included.
func TestEventEncodeGolden(t *testing.T) {
	golden, err := os.ReadFile("testdata/apiserver-event.json")
	if err != nil {
		t.Fatal(err)
	}
	golden = bytes.TrimSpace(golden)
	var ev Event
	if err := json.Unmarshal(golden, &ev); err != nil {
		t.Fatal(err)
	}
	if got := appendEvent(nil, &ev); !bytes.Equal(got, golden) {
		t.Errorf("got  %s\nwant %s", got, golden)
	}
}

// nastyStrings are pieces of strings that JSON must escape, or that
// encoding/json replaces.
var nastyStrings = []string{
	"", "plain", `"quoted"`, `back\slash`, "\x00", "\x01\x1f", "\b\f\n\r\t", "\x7f",
	"<script>&amp;</script>", "\u2028\u2029", "\xff", "\xc3", "a\xe2\x80", "\xed\xa0\x80", // a surrogate half
	"\ufffd", "é", "日本語", "🙂", "\U0010ffff", "/api/v1/namespaces/default/pods?watch=true&x=<y>",
}

// randomString strings together up to four nastyStrings.
func randomString(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(5) {
		b.WriteString(nastyStrings[r.IntN(len(nastyStrings))])
	}
	return b.String()
}

func randomStrings(r *rand.Rand) []string {
	switch r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	ss := make([]string, 1+r.IntN(3))
	for i := range ss {
		ss[i] = randomString(r)
	}
	return ss
}

func randomTime(r *rand.Rand) time.Time {
	switch r.IntN(6) {
	case 0:
		return time.Time{}
	case 1:
		// Years of four digits in UTC at the edges, in another zone.
		return time.Date([]int{0, 1, 1969, 1970, 9999}[r.IntN(5)], time.Month(1+r.IntN(12)), 1+r.IntN(31),
			r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1e9), time.UTC).In(time.FixedZone("X", 3600*(r.IntN(27)-12)))
	}
	return time.Unix(1.7e9+r.Int64N(1e9), r.Int64N(1e9))
}

// randomEvent is an event with every field set or not, at random.
func randomUser(r *rand.Rand) UserInfo {
	u := UserInfo{Username: randomString(r), UID: randomString(r), Groups: randomStrings(r)}
	if r.IntN(3) > 0 {
		u.Extra = map[string][]string{}
		for range r.IntN(3) {
			u.Extra[randomString(r)] = randomStrings(r)
		}
	}
	return u
}

func randomEvent(r *rand.Rand) *Event {
	ev := &Event{Level: Level(randomString(r)), AuditID: randomString(r), Stage: Stage(randomString(r)),
		RequestURI: randomString(r), Verb: randomString(r), UserAgent: randomString(r),
		RequestReceivedTimestamp: randomTime(r), StageTimestamp: randomTime(r)}
	if r.IntN(2) == 0 {
		ev.Kind, ev.APIVersion = "Event", APIVersion
	}
	ev.User = randomUser(r)
	if r.IntN(2) == 0 {
		u := randomUser(r)
		ev.ImpersonatedUser = &u
	}
	ev.SourceIPs = randomStrings(r)
	if r.IntN(3) > 0 {
		ev.ObjectRef = &ObjectReference{Resource: randomString(r), Namespace: randomString(r), Name: randomString(r),
			UID: randomString(r), APIGroup: randomString(r), APIVersion: randomString(r), Subresource: randomString(r)}
	}
	if r.IntN(3) > 0 {
		ev.ResponseStatus = &ResponseStatus{Code: r.IntN(600) - 50, Status: randomString(r),
			Message: randomString(r), Reason: randomString(r)}
	}
	if r.IntN(4) > 0 {
		for range r.IntN(20) {
			ev.Annotations.Set(randomString(r), randomString(r))
		}
	}
	return ev
}

// validString is s as JSON carries it: each byte that is not part of
// valid UTF-8 replaced by U+FFFD.
func validString(s string) string { return string([]rune(s)) }

func validStrings(ss []string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = validString(s)
	}
	return out
}

// decoded is what decoding ev's JSON must give: strings made valid UTF-8,
// times in UTC to the microsecond, empty optional slices and maps absent.
// It is false when two keys of a map become one.
// decodedUser is u as it decodes; false when two of its extra keys
// become one.
func decodedUser(u UserInfo) (UserInfo, bool) {
	d := UserInfo{Username: validString(u.Username), UID: validString(u.UID)}
	if len(u.Groups) > 0 {
		d.Groups = validStrings(u.Groups)
	}
	if len(u.Extra) > 0 {
		d.Extra = map[string][]string{}
		for k, v := range u.Extra {
			d.Extra[validString(k)] = validStrings(v)
		}
		if len(d.Extra) != len(u.Extra) {
			return UserInfo{}, false
		}
	}
	return d, true
}

func decoded(ev *Event) (*Event, bool) {
	micro := func(t time.Time) time.Time {
		if t.IsZero() {
			return t
		}
		return t.UTC().Truncate(time.Microsecond)
	}
	d := &Event{Kind: ev.Kind, APIVersion: ev.APIVersion, Level: Level(validString(string(ev.Level))),
		AuditID: validString(ev.AuditID), Stage: Stage(validString(string(ev.Stage))),
		RequestURI: validString(ev.RequestURI), Verb: validString(ev.Verb), UserAgent: validString(ev.UserAgent),
		RequestReceivedTimestamp: micro(ev.RequestReceivedTimestamp), StageTimestamp: micro(ev.StageTimestamp)}
	var ok bool
	if d.User, ok = decodedUser(ev.User); !ok {
		return nil, false
	}
	if ev.ImpersonatedUser != nil {
		u, ok := decodedUser(*ev.ImpersonatedUser)
		if !ok {
			return nil, false
		}
		d.ImpersonatedUser = &u
	}
	if len(ev.SourceIPs) > 0 {
		d.SourceIPs = validStrings(ev.SourceIPs)
	}
	if o := ev.ObjectRef; o != nil {
		d.ObjectRef = &ObjectReference{Resource: validString(o.Resource), Namespace: validString(o.Namespace),
			Name: validString(o.Name), UID: validString(o.UID), APIGroup: validString(o.APIGroup),
			APIVersion: validString(o.APIVersion), Subresource: validString(o.Subresource)}
	}
	if s := ev.ResponseStatus; s != nil {
		d.ResponseStatus = &ResponseStatus{Code: s.Code, Status: validString(s.Status),
			Message: validString(s.Message), Reason: validString(s.Reason)}
	}
	if len(ev.Annotations) > 0 {
		m := map[string]string{}
		for _, an := range ev.Annotations {
			m[validString(an.Key)] = validString(an.Value)
		}
		if len(m) != len(ev.Annotations) {
			return nil, false
		}
		d.Annotations = MakeAnnotations(m)
	}
	return d, true
}

// checkEncoding checks the hand encoder's JSON of ev: valid, the same
// value as encoding/json's, and decoding to ev.
func checkEncoding(t *testing.T, ev *Event) {
	t.Helper()
	got := appendEvent(nil, ev)
	if !json.Valid(got) {
		t.Fatalf("not JSON: %q", got)
	}
	if m, err := ev.MarshalJSON(); err != nil || !bytes.Equal(m, got) {
		t.Fatalf("MarshalJSON: %q, %v; want %q", m, err, got)
	}
	var gotValue, wantValue any
	if err := json.Unmarshal(got, &gotValue); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(referenceMarshal(t, ev), &wantValue); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantValue, gotValue); diff != "" {
		t.Fatalf("JSON value against encoding/json's (-want +got):\n%s\n%q", diff, got)
	}
	want, ok := decoded(ev)
	if !ok {
		return // two map keys, different in Go, are one in JSON
	}
	var back Event
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("decoding %q: %v", got, err)
	}
	if diff := cmp.Diff(want, &back); diff != "" {
		t.Fatalf("decoded event (-want +got):\n%s\n%q", diff, got)
	}
}

// TestEventEncodeVaried: for many events, with every field present or
// not and strings that need escaping, the hand encoder writes what
// encoding/json would, and it decodes to the event.
func TestEventEncodeVaried(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	checkEncoding(t, typicalEvent())
	checkEncoding(t, &Event{})
	for range 5000 {
		checkEncoding(t, randomEvent(r))
	}
}

// TestEventEncodeYears: a timestamp whose year is not four digits is
// written as encoding/json writes Format's string.
func TestEventEncodeYears(t *testing.T) {
	for _, y := range []int{-1, 10000, 123456} {
		ev := &Event{RequestReceivedTimestamp: time.Date(y, 2, 3, 4, 5, 6, 7008, time.UTC)}
		var got, want any
		if err := json.Unmarshal(appendEvent(nil, ev), &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(referenceMarshal(t, ev), &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("year %d (-want +got):\n%s", y, diff)
		}
	}
}

// TestAppendString: strings are escaped byte for byte as encoding/json
// escapes them.
func TestAppendString(t *testing.T) {
	for _, s := range nastyStrings {
		checkString(t, s)
	}
	for c := range 256 {
		checkString(t, string([]byte{byte(c)}))
		checkString(t, "a"+string([]byte{byte(c)})+"z")
	}
	for r := range rune(0x3000) {
		checkString(t, string(r))
	}
}

func checkString(t *testing.T, s string) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	// encoding/json wrote a byte of invalid UTF-8 as the escape \ufffd
	// before it was built on encoding/json/v2, and since as U+FFFD itself,
	// as appendString does: the same string.
	want = bytes.ReplaceAll(want, []byte(`\ufffd`), []byte("\uFFFD"))
	if got := appendString(nil, s); !bytes.Equal(got, want) {
		t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range nastyStrings {
		f.Add(s)
	}
	f.Fuzz(checkString)
}

// FuzzEventEncode: decode(encode(ev)) is ev, and encode(ev) is the JSON
// value encoding/json writes, for events made of the fuzzer's strings.
func FuzzEventEncode(f *testing.F) {
	f.Add("get", "/api/v1/pods?x=<y>&z", "alice@example.com", "portcullis.io/route", "a\"b\\c\n\u2028\xff", int64(1.7e18), 200)
	f.Add("", "", "", "", "", int64(0), 0)
	f.Fuzz(func(t *testing.T, verb, uri, user, key, value string, nanos int64, code int) {
		at := time.Unix(0, nanos)
		ev := NewEvent(LevelMetadata, value+key, at)
		ev.Stage, ev.StageTimestamp = StageResponseComplete, at.Add(time.Duration(code))
		ev.Verb, ev.RequestURI, ev.UserAgent = verb, uri, value
		ev.User = UserInfo{Username: user, UID: key, Groups: []string{user, value},
			Extra: map[string][]string{key: {value}, ExtraSessionID: {user}}}
		ev.SourceIPs = []string{value}
		ev.ObjectRef = &ObjectReference{Resource: verb, Namespace: key, Name: value, Subresource: uri}
		ev.ResponseStatus = &ResponseStatus{Code: code, Status: value, Message: uri, Reason: key}
		ev.Annotations = MakeAnnotations(map[string]string{key: value, verb: uri, user: key, "portcullis.io/route": value})
		checkEncoding(t, ev)
	})
}

// TestEventListEncode: an EventList is what encoding/json wrote of it,
// and decodes to its events.
func TestEventListEncode(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var events []*Event
	for len(events) < 50 {
		ev := randomEvent(r)
		if _, ok := decoded(ev); ok { // no map keys that become one
			events = append(events, ev)
		}
	}
	got := appendEventList(nil, events)
	var list struct {
		Kind       string   `json:"kind"`
		APIVersion string   `json:"apiVersion"`
		Items      []*Event `json:"items"`
	}
	if err := json.Unmarshal(got, &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "EventList" || list.APIVersion != APIVersion || len(list.Items) != len(events) {
		t.Fatalf("got kind %q, apiVersion %q, %d items", list.Kind, list.APIVersion, len(list.Items))
	}
	for i, ev := range events {
		want, _ := decoded(ev)
		if diff := cmp.Diff(want, list.Items[i]); diff != "" {
			t.Errorf("item %d (-want +got):\n%s", i, diff)
		}
	}
}

// TestPlainPrefix: the word-at-a-time scan stops at the first byte that
// plainASCII does not hold, for every byte in every position of strings
// long enough to be scanned by words and by bytes, among plain bytes next
// to the ones it must catch.
func TestPlainPrefix(t *testing.T) {
	for b := range 256 {
		plain := b < utf8.RuneSelf && plainASCII[b]
		for _, n := range []int{1, 7, 8, 9, 16, 19} {
			for pos := range n {
				for _, fill := range []byte{'a', ' ', '~', 0x7f, '!', '%', '=', '?', ']', '#', '{'} {
					w := bytes.Repeat([]byte{fill}, n)
					w[pos] = byte(b)
					want := pos
					if plain {
						want = n
					}
					if got := plainPrefix(string(w)); got != want {
						t.Errorf("plainPrefix(%q) = %d, want %d", w, got, want)
					}
				}
			}
		}
	}
}
