package stream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	restwatch "k8s.io/client-go/rest/watch"

	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// testEnding is the ending of most tests: a person signed out.
var testEnding = Ending{Code: http.StatusUnauthorized, Message: "portcullis: your session was signed out"}

// wantStatusJSON is testEnding's Status as kube-apiserver writes one.
const wantStatusJSON = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",` +
	`"message":"portcullis: your session was signed out","reason":"Unauthorized","code":401}`

// Responses to long-lived requests as kube-apiserver (or kubelet, through
// it) answers them; the tests give each its body.

func response(code int, header ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Add(header[i], header[i+1])
	}
	return &http.Response{StatusCode: code, Header: h, ProtoMajor: 1, ProtoMinor: 1}
}

func jsonWatch() *http.Response { return response(http.StatusOK, "Content-Type", "application/json") }

func protobufWatch() *http.Response {
	return response(http.StatusOK, "Content-Type", "application/vnd.kubernetes.protobuf;stream=watch")
}

func textLog() *http.Response {
	return response(http.StatusOK, "Content-Type", "text/plain")
}

func webSocket(subprotocol string) *http.Response {
	return response(http.StatusSwitchingProtocols, "Upgrade", "websocket", "Connection", "Upgrade",
		"Sec-WebSocket-Protocol", subprotocol)
}

func spdy() *http.Response {
	return response(http.StatusSwitchingProtocols, "Upgrade", "SPDY/3.1", "Connection", "Upgrade")
}

// wsFrame is an RFC 6455 frame, masked with key if there is one.
func wsFrame(fin bool, opcode byte, key []byte, payload string) string {
	b := []byte{opcode}
	if fin {
		b[0] |= 0x80
	}
	var mask byte
	if key != nil {
		mask = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mask|byte(n))
	case n < 1<<16:
		b = append(b, mask|126, byte(n>>8), byte(n))
	default:
		b = append(b, mask|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	p := []byte(payload)
	if key != nil {
		b = append(b, key...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return string(append(b, p...))
}

// protoFrame is a protobuf watch frame around payload.
func protoFrame(payload string) string {
	return string(binary.BigEndian.AppendUint32(nil, uint32(len(payload)))) + payload
}

// spdyFrame is a SPDY/3.1 frame: head is the header's first 5 bytes.
func spdyFrame(head, payload string) string {
	n := len(payload)
	return head + string([]byte{byte(n >> 16), byte(n >> 8), byte(n)}) + payload
}

// wantClose is the close frame ending a stream with testEnding.
func wantClose(code uint16) string {
	return wsFrame(true, 0x8, nil, string(binary.BigEndian.AppendUint16(nil, code))+testEnding.Message)
}

// endCase is a stream from the upstream cut into segments: the bytes
// passed end at a message boundary exactly at the end of a segment (or
// anywhere, for a log).
type endCase struct {
	name      string
	resp      func() *http.Response
	segments  []string
	anywhere  bool   // a log: every byte is a boundary
	wantFinal string // what follows a boundary
}

func (tc endCase) stream() string { return strings.Join(tc.segments, "") }

// want is the output for End after k bytes of the stream.
func (tc endCase) want(k int) string {
	s := tc.stream()[:k]
	if tc.anywhere {
		if k > 0 && s[k-1] != '\n' {
			return s + "\n" + tc.wantFinal
		}
		return s + tc.wantFinal
	}
	at := 0
	for _, seg := range tc.segments {
		if at == k {
			break
		}
		at += len(seg)
	}
	if at == k {
		return s + tc.wantFinal
	}
	return s
}

func endCases() []endCase {
	big := strings.Repeat("x", 300)
	wsStatus := "\x03" + wantStatusJSON
	return []endCase{
		{
			name: "JSON watch",
			resp: jsonWatch,
			segments: []string{
				`{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a\"}{[","labels":{"x":"y\\"}},"spec":{"containers":[{"name":"c","args":["]","}"]}]}}}`,
				"\n",
				`{"type":"MODIFIED","object":{"a":[1,2.5e3,{"b":"\u00e9\\\"]"}],"n":null,"t":true,"f":false,"e":{},"l":[]}}`,
				"\n", " ", "\t", "\r", "\n",
				`{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"12"}}}`,
				"\n",
			},
			wantFinal: `{"type":"ERROR","object":` + wantStatusJSON + "}\n",
		},
		{
			name: "JSON watch of Tables",
			resp: func() *http.Response {
				return response(http.StatusOK, "Content-Type", "application/json;as=Table;v=v1;g=meta.k8s.io")
			},
			segments: []string{
				`{"type":"ADDED","object":{"kind":"Table","apiVersion":"meta.k8s.io/v1","rows":[{"cells":["a","Running",0]}]}}`,
				"\n",
			},
			wantFinal: `{"type":"ERROR","object":` + wantStatusJSON + "}\n",
		},
		{
			name: "protobuf watch",
			resp: protobufWatch,
			segments: []string{
				protoFrame("\x0a\x05ADDED\x12\x03\x0a\x01x"),
				protoFrame(""),
				protoFrame(big),
				protoFrame("\x00\x00\x00\x04"),
			},
			wantFinal: wantProtobufEvent(testEnding),
		},
		{
			name:      "followed log",
			resp:      textLog,
			segments:  []string{"2026-01-02T03:04:05Z starting\n", "line two\n", "a line still being written"},
			anywhere:  true,
			wantFinal: testEnding.Message + "\n",
		},
		{
			name: "exec over WebSocket v5",
			resp: func() *http.Response { return webSocket("v5.channel.k8s.io") },
			segments: []string{
				wsFrame(true, 0x2, nil, "\x01"),
				wsFrame(true, 0x2, nil, "\x01hello\n"),
				wsFrame(true, 0x2, nil, "\x02"+big),
				wsFrame(false, 0x2, nil, "\x01part one, ") + wsFrame(true, 0x9, nil, "ping") +
					wsFrame(false, 0x0, nil, "part two, ") + wsFrame(true, 0x0, nil, "part three"),
				wsFrame(true, 0x9, nil, ""),
				wsFrame(true, 0xa, nil, "pong"),
				wsFrame(true, 0x2, []byte{1, 2, 3, 4}, "\x01masked"),
				wsFrame(true, 0x2, []byte{5, 6, 7, 8}, "\x01"+big),
			},
			wantFinal: wsFrame(true, 0x2, nil, wsStatus) + wantClose(1000),
		},
		{
			name:      "exec over WebSocket v4",
			resp:      func() *http.Response { return webSocket("v4.channel.k8s.io") },
			segments:  []string{wsFrame(true, 0x2, nil, "\x01hello\n")},
			wantFinal: wsFrame(true, 0x2, nil, wsStatus) + wantClose(1000),
		},
		{
			name:     "exec over WebSocket v4 base64",
			resp:     func() *http.Response { return webSocket("v4.base64.channel.k8s.io") },
			segments: []string{wsFrame(true, 0x1, nil, "1aGVsbG8K"), wsFrame(false, 0x1, nil, "1aGVs") + wsFrame(true, 0x0, nil, "bG8K")},
			wantFinal: wsFrame(true, 0x1, nil, "3"+base64.StdEncoding.EncodeToString([]byte(wantStatusJSON))) +
				wantClose(1000),
		},
		{
			name:      "exec over WebSocket v1",
			resp:      func() *http.Response { return webSocket("channel.k8s.io") },
			segments:  []string{wsFrame(true, 0x2, nil, "\x01hello\n")},
			wantFinal: wsFrame(true, 0x2, nil, "\x03"+testEnding.Message) + wantClose(1000),
		},
		{
			name:     "exec over WebSocket v1 base64",
			resp:     func() *http.Response { return webSocket("base64.channel.k8s.io") },
			segments: []string{wsFrame(true, 0x1, nil, "1aGVsbG8K")},
			wantFinal: wsFrame(true, 0x1, nil, "3"+base64.StdEncoding.EncodeToString([]byte(testEnding.Message))) +
				wantClose(1000),
		},
		{
			name:      "port-forward tunnelled over WebSocket",
			resp:      func() *http.Response { return webSocket("SPDY/3.1+portforward.k8s.io") },
			segments:  []string{wsFrame(true, 0x2, nil, "\x80\x03\x00\x02\x00\x00\x00\x04\x00\x00\x00\x01"), wsFrame(true, 0x2, nil, big)},
			wantFinal: wantClose(1008),
		},
		{
			name: "exec over SPDY",
			resp: spdy,
			segments: []string{
				spdyFrame("\x80\x03\x00\x02\x00", "\x00\x00\x00\x01\x78\x9c\x00\x00\x00\xff\xff\x00"),
				spdyFrame("\x00\x00\x00\x03\x00", "hello\n"),
				spdyFrame("\x00\x00\x00\x03\x00", big),
				spdyFrame("\x00\x00\x00\x03\x01", ""),
				spdyFrame("\x80\x03\x00\x06\x00", "\x00\x00\x00\x07"),
			},
			wantFinal: "",
		},
		{
			name:      "CBOR watch",
			resp:      func() *http.Response { return response(http.StatusOK, "Content-Type", "application/cbor-seq") },
			segments:  []string{"\xa2\x64type\x65ADDED\x66object\xa0"},
			wantFinal: "",
		},
		{
			name: "compressed JSON",
			resp: func() *http.Response {
				return response(http.StatusOK, "Content-Type", "application/json", "Content-Encoding", "gzip")
			},
			segments:  []string{"\x1f\x8b\x08\x00\x00\x00\x00\x00"},
			wantFinal: "",
		},
	}
}

// chunkBody is an upstream body that returns its chunks one Read each.
type chunkBody struct {
	chunks  [][]byte
	closed  atomic.Bool
	written bytes.Buffer
}

var errUpstreamClosed = errors.New("read on a closed upstream body")

func (c *chunkBody) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, errUpstreamClosed
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *chunkBody) Write(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, errUpstreamClosed
	}
	return c.written.Write(p)
}

func (c *chunkBody) Close() error {
	c.closed.Store(true)
	return nil
}

// newBodyOver is NewBody for resp with upstream as its body.
func newBodyOver(resp *http.Response, upstream io.ReadCloser) *Body {
	resp.Body = upstream
	return NewBody(resp)
}

// endAfter passes k chunks, ends the stream and reads it to its end with
// a small buffer, so that the final message takes several Reads. It
// returns everything read.
func endAfter(t *testing.T, resp *http.Response, chunks [][]byte, k int) string {
	t.Helper()
	up := &chunkBody{chunks: chunks}
	b := newBodyOver(resp, up)
	var out []byte
	buf := make([]byte, 1<<16)
	for range k {
		n, err := b.Read(buf)
		if err != nil {
			t.Fatalf("Read before End: %v", err)
		}
		out = append(out, buf[:n]...)
	}
	b.End(testEnding)
	if !up.closed.Load() {
		t.Error("End did not close the upstream body")
	}
	select {
	case <-b.Done():
		t.Fatal("Done closed before the final message was read")
	default:
	}
	rest, err := readSmall(b)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Done():
	default:
		t.Error("Done not closed after Read returned io.EOF")
	}
	if n, err := b.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("Read after io.EOF: got %d, %v, want 0, io.EOF", n, err)
	}
	return string(append(out, rest...))
}

// readSmall reads b to io.EOF 7 bytes at a time.
func readSmall(b io.Reader) ([]byte, error) {
	var out []byte
	p := make([]byte, 7)
	for range 1 << 16 {
		n, err := b.Read(p)
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("got error %v after %q, want io.EOF", err, out)
		}
	}
	return out, fmt.Errorf("no io.EOF after %q", out)
}

func bytewise(s string) [][]byte {
	chunks := make([][]byte, len(s))
	for i := range chunks {
		chunks[i] = []byte{s[i]}
	}
	return chunks
}

// TestEndAtEveryByte ends each stream after every one of its bytes,
// delivered one Read each, so that every header is cut at every byte.
func TestEndAtEveryByte(t *testing.T) {
	for _, tc := range endCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.stream()
			for k := 0; k <= len(s); k++ {
				got := endAfter(t, tc.resp(), bytewise(s), k)
				if want := tc.want(k); got != want {
					t.Fatalf("End after %d bytes:\ngot  %q\nwant %q", k, got, want)
				}
			}
		})
	}
}

// TestEndRandomChunks delivers each stream in random chunks and ends it
// after every chunk.
func TestEndRandomChunks(t *testing.T) {
	for _, tc := range endCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.stream()
			for seed := range uint64(30) {
				rng := rand.New(rand.NewPCG(seed, 0))
				chunks := randomChunks(rng, s, 1+rng.IntN(200))
				for k, at := 0, 0; k <= len(chunks); k++ {
					got := endAfter(t, tc.resp(), cloneChunks(chunks), k)
					if want := tc.want(at); got != want {
						t.Fatalf("seed %d, End after %d bytes in %d chunks:\ngot  %q\nwant %q", seed, at, k, got, want)
					}
					if k < len(chunks) {
						at += len(chunks[k])
					}
				}
			}
		})
	}
}

func randomChunks(rng *rand.Rand, s string, maxChunk int) [][]byte {
	var chunks [][]byte
	for len(s) > 0 {
		n := min(len(s), 1+rng.IntN(maxChunk))
		chunks = append(chunks, []byte(s[:n]))
		s = s[n:]
	}
	return chunks
}

func cloneChunks(chunks [][]byte) [][]byte {
	c := make([][]byte, len(chunks))
	copy(c, chunks)
	return c
}

// TestWebSocketLongFrame covers the 64-bit payload length, ending the
// stream in the header, in the payload and after it.
func TestWebSocketLongFrame(t *testing.T) {
	frame := wsFrame(true, 0x2, nil, "\x01"+strings.Repeat("y", 70000))
	s := frame + wsFrame(true, 0x2, nil, "\x01end")
	if frame[1] != 127 {
		t.Fatalf("test frame has length byte %d, want 127", frame[1])
	}
	wantFinal := wsFrame(true, 0x2, nil, "\x03"+wantStatusJSON) + wantClose(1000)
	// The headers a byte at a time, the payloads in 4 KiB chunks.
	var chunks [][]byte
	for i := 0; i < len(s); {
		n := 1
		if (i >= 10 && i < len(frame)) || i >= len(frame)+2 {
			n = min(4096, len(frame)-i)
			if i >= len(frame) {
				n = len(s) - i
			}
		}
		chunks = append(chunks, []byte(s[i:i+n]))
		i += n
	}
	for k, at := 0, 0; k <= len(chunks); k++ {
		want := s[:at]
		if at == 0 || at == len(frame) || at == len(s) {
			want += wantFinal
		}
		if got := endAfter(t, webSocket("v5.channel.k8s.io"), cloneChunks(chunks), k); got != want {
			t.Fatalf("End after %d bytes: got %d bytes ending %q, want %d bytes ending %q", at, len(got), tail(got), len(want), tail(want))
		}
		if k < len(chunks) {
			at += len(chunks[k])
		}
	}
}

func tail(s string) string { return s[max(0, len(s)-40):] }

// TestEndAfterServerClose: once the server has sent its close frame, no
// frame may follow it (RFC 6455, section 5.5.1).
func TestEndAfterServerClose(t *testing.T) {
	closeFrame := wsFrame(true, 0x8, nil, "\x03\xe8")
	tests := []struct {
		name   string
		stream string
		want   string
	}{
		{"before the close frame", wsFrame(true, 0x2, nil, "\x01hi"),
			wsFrame(true, 0x2, nil, "\x01hi") + wsFrame(true, 0x2, nil, "\x03"+wantStatusJSON) + wantClose(1000)},
		{"after the close frame", wsFrame(true, 0x2, nil, "\x01hi") + closeFrame, wsFrame(true, 0x2, nil, "\x01hi") + closeFrame},
		{"after an empty close frame", wsFrame(true, 0x8, nil, ""), wsFrame(true, 0x8, nil, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := endAfter(t, webSocket("v5.channel.k8s.io"), [][]byte{[]byte(tt.stream)}, 1); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestEndBrokenStream: bytes that break the protocol get no message after
// them, even where the counts would say a message could follow.
func TestEndBrokenStream(t *testing.T) {
	tests := []struct {
		name   string
		resp   func() *http.Response
		stream string
	}{
		{"JSON closing what was never opened", jsonWatch, `{"a":1}}`},
		{"JSON scalar at the top level, unfinished", jsonWatch, `{"a":1}12`},
		{"WebSocket continuation with no message", func() *http.Response { return webSocket("v5.channel.k8s.io") },
			wsFrame(true, 0x0, nil, "x")},
		{"WebSocket message inside a message", func() *http.Response { return webSocket("v5.channel.k8s.io") },
			wsFrame(false, 0x2, nil, "x") + wsFrame(true, 0x2, nil, "y") + wsFrame(true, 0x0, nil, "z")},
		{"WebSocket fragmented ping", func() *http.Response { return webSocket("v5.channel.k8s.io") },
			wsFrame(false, 0x9, nil, "x")},
		{"WebSocket ping too long", func() *http.Response { return webSocket("v5.channel.k8s.io") },
			wsFrame(true, 0x9, nil, strings.Repeat("x", 126))},
		{"WebSocket reserved opcode", func() *http.Response { return webSocket("v5.channel.k8s.io") },
			wsFrame(true, 0x3, nil, "x")},
		{"WebSocket 64-bit length with its top bit set", func() *http.Response { return webSocket("v5.channel.k8s.io") },
			"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := endAfter(t, tt.resp(), [][]byte{[]byte(tt.stream)}, 1); got != tt.stream {
				t.Errorf("got %q, want the stream alone, %q", got, tt.stream)
			}
		})
	}
}

// TestEndWhileReadBlocked ends a stream whose Read waits for the upstream:
// the Read must return the final message, then io.EOF, at once.
func TestEndWhileReadBlocked(t *testing.T) {
	for _, tc := range endCases() {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			defer pw.Close()
			b := newBodyOver(tc.resp(), pr)
			first := tc.segments[0]
			go pw.Write([]byte(first))
			got := make([]byte, len(first))
			if _, err := io.ReadFull(b, got); err != nil {
				t.Fatal(err)
			}
			type result struct {
				out []byte
				err error
			}
			res := make(chan result, 1)
			go func() {
				out, err := io.ReadAll(b)
				res <- result{out, err}
			}()
			time.Sleep(10 * time.Millisecond) // let the Read block in the pipe
			b.End(testEnding)
			select {
			case r := <-res:
				if r.err != nil {
					t.Fatalf("reading after End: %v", r.err)
				}
				if want := tc.want(len(first))[len(first):]; string(r.out) != want {
					t.Errorf("got %q after End, want %q", r.out, want)
				}
			case <-time.After(time.Second):
				t.Fatal("Read still blocked a second after End")
			}
			select {
			case <-b.Done():
			case <-time.After(time.Second):
				t.Error("Done not closed after io.EOF")
			}
		})
	}
}

// endingBody is an upstream body whose Read ends the stream while it
// reads, then returns data, with err: End lands during the Read.
type endingBody struct {
	b    *Body
	data string
	err  error
	done bool
}

func (e *endingBody) Read(p []byte) (int, error) {
	if e.done {
		return 0, errUpstreamClosed
	}
	e.done = true
	e.b.End(testEnding)
	return copy(p, e.data), e.err
}

func (e *endingBody) Close() error { return nil }

// TestEndDuringRead: bytes a Read returns while End runs, with the stream
// between two messages before it, are dropped, and the final message
// follows.
func TestEndDuringRead(t *testing.T) {
	event := `{"type":"ADDED","object":{}}` + "\n"
	wantFinal := `{"type":"ERROR","object":` + wantStatusJSON + "}\n"
	tests := []struct {
		name string
		data string
		err  error
		want string
	}{
		// The stream was at a boundary when End came: what the read
		// brings is after the end, and dropped (a TLS upstream answers
		// End's close_notify before the socket closes).
		{"a whole event", event, nil, wantFinal},
		{"a whole event, and the close error", event, errUpstreamClosed, wantFinal},
		{"a whole event, and io.EOF", event, io.EOF, wantFinal},
		{"part of an event", event[:10], nil, wantFinal},
		{"part of an event, and the close error", event[:10], errUpstreamClosed, wantFinal},
		{"nothing, and the close error", "", errUpstreamClosed, wantFinal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &endingBody{data: tt.data, err: tt.err}
			b := newBodyOver(jsonWatch(), up)
			up.b = b
			got, err := io.ReadAll(b)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestEndRacesRead ends streams at random moments while the upstream
// writes: whatever passed is a prefix of the stream, followed by the final
// message exactly when that prefix ends at a boundary. Run with -race.
func TestEndRacesRead(t *testing.T) {
	for _, tc := range endCases() {
		if tc.wantFinal == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			// Long enough that End often lands inside it.
			n := max(20, 16<<10/len(tc.stream()))
			s := strings.Repeat(tc.stream(), n)
			tc.segments = repeatSegments(tc.segments, n)
			for i := range 30 {
				pr, pw := io.Pipe()
				b := newBodyOver(tc.resp(), pr)
				go func() {
					rng := rand.New(rand.NewPCG(uint64(i), 1))
					for _, c := range randomChunks(rng, s, 64) {
						if _, err := pw.Write(c); err != nil {
							return
						}
					}
				}()
				res := make(chan []byte, 1)
				go func() {
					out, err := io.ReadAll(b)
					if err != nil {
						t.Errorf("reading: %v", err)
					}
					res <- out
				}()
				time.Sleep(time.Duration(i*20) * time.Microsecond)
				b.End(testEnding)
				var out []byte
				select {
				case out = <-res:
				case <-time.After(5 * time.Second):
					t.Fatal("Read not done 5 s after End")
				}
				pw.Close()
				k := len(out)
				if bytes.HasSuffix(out, []byte(tc.wantFinal)) {
					k -= len(tc.wantFinal)
					if tc.anywhere && k > 0 && out[k-1] == '\n' && (k > len(s) || s[k-1] != '\n') {
						k-- // the "\n" before the message
					}
				}
				if k > len(s) || string(out[:k]) != s[:k] {
					t.Fatalf("run %d: output is not the stream's prefix: %q", i, tail(string(out)))
				}
				if want := tc.want(k); string(out) != want {
					t.Fatalf("run %d: End after %d bytes: got …%q, want …%q", i, k, tail(string(out)), tail(want))
				}
			}
		})
	}
}

func repeatSegments(segs []string, n int) []string {
	var r []string
	for range n {
		r = append(r, segs...)
	}
	return r
}

// TestEndTwice: the first End decides the message.
func TestEndTwice(t *testing.T) {
	b := newBodyOver(textLog(), &chunkBody{})
	b.End(testEnding)
	b.End(Ending{Code: http.StatusForbidden, Message: "portcullis: denied"})
	got, err := readSmall(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := testEnding.Message + "\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestDone checks when Done is closed.
func TestDone(t *testing.T) {
	tests := []struct {
		name     string
		steps    func(b *Body)
		wantDone bool
	}{
		{"ended, final message not read", func(b *Body) { b.End(testEnding) }, false},
		{"ended, final message read", func(b *Body) { b.End(testEnding); io.ReadAll(b) }, true},
		// ReverseProxy closes an upgraded body when the request's context
		// ends, while the final message may still be being read.
		{"ended, then closed unread", func(b *Body) { b.End(testEnding); b.Close() }, false},
		{"ended, closed, final message read", func(b *Body) { b.End(testEnding); b.Close(); io.ReadAll(b) }, true},
		{"closed, then ended", func(b *Body) { b.Close(); b.End(testEnding) }, false},
		{"upstream failed, then ended", func(b *Body) { b.Close(); b.Read(make([]byte, 10)); b.End(testEnding) }, true},
		{"upstream ended, then ended", func(b *Body) { io.ReadAll(b); b.End(testEnding) }, true},
		{"upstream ended, never ended", func(b *Body) { io.ReadAll(b); b.Close() }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBodyOver(jsonWatch(), &chunkBody{chunks: [][]byte{[]byte("{}\n")}})
			tt.steps(b)
			var done bool
			select {
			case <-b.Done():
				done = true
			default:
			}
			if done != tt.wantDone {
				t.Errorf("got Done closed %t, want %t", done, tt.wantDone)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name        string
		resp        *http.Response
		end         bool
		wantErr     error
		wantWritten string
	}{
		{name: "upgraded", resp: webSocket("v5.channel.k8s.io"), wantWritten: "client bytes"},
		{name: "upgraded, ended: discarded", resp: webSocket("v5.channel.k8s.io"), end: true},
		{name: "SPDY", resp: spdy(), wantWritten: "client bytes"},
		{name: "not upgraded", resp: jsonWatch(), wantErr: errNotWritable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &chunkBody{}
			b := newBodyOver(tt.resp, up)
			if tt.end {
				b.End(testEnding)
			}
			p := []byte("client bytes")
			n, err := b.Write(p)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err == nil && n != len(p) {
				t.Errorf("got %d written, want %d", n, len(p))
			}
			if got := up.written.String(); got != tt.wantWritten {
				t.Errorf("upstream got %q, want %q", got, tt.wantWritten)
			}
		})
	}
}

// TestCloseOnce: End and Close close the upstream once between them.
func TestCloseOnce(t *testing.T) {
	up := &countingCloser{}
	b := newBodyOver(spdy(), up)
	b.End(testEnding)
	b.Close()
	b.Close()
	if up.n != 1 {
		t.Errorf("got %d closes of the upstream, want 1", up.n)
	}
}

type countingCloser struct {
	chunkBody
	n int
}

func (c *countingCloser) Close() error {
	c.n++
	return c.chunkBody.Close()
}

// repeatBody returns its bytes over and over, for ever.
type repeatBody struct {
	data []byte
	off  int
}

func (r *repeatBody) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

func (r *repeatBody) Close() error { return nil }

// TestReadDoesNotAllocate: a watch lives for hours; passing its bytes
// through costs no garbage.
func TestReadDoesNotAllocate(t *testing.T) {
	for _, tc := range endCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := newBodyOver(tc.resp(), &repeatBody{data: []byte(tc.stream())})
			p := make([]byte, 4096)
			if allocs := testing.AllocsPerRun(100, func() { b.Read(p) }); allocs != 0 {
				t.Errorf("got %v allocations per Read, want 0", allocs)
			}
		})
	}
}

// BenchmarkRead passes each stream through, over and over, in reads of
// ReverseProxy's 4 KiB stream buffer.
func BenchmarkRead(b *testing.B) {
	for _, tc := range endCases() {
		b.Run(tc.name, func(b *testing.B) {
			body := newBodyOver(tc.resp(), &repeatBody{data: []byte(tc.stream())})
			p := make([]byte, 4096)
			var n int64
			b.ReportAllocs()
			for b.Loop() {
				k, _ := body.Read(p)
				n += int64(k)
			}
			b.SetBytes(n / int64(b.N))
		})
	}
}

func TestNewBodyFraming(t *testing.T) {
	tests := []struct {
		name         string
		resp         *http.Response
		wantFraming  framing
		wantChannels channels
	}{
		{"JSON watch", jsonWatch(), framingJSON, channelsNone},
		{"JSON watch of Tables", response(200, "Content-Type", "application/json;as=Table;v=v1;g=meta.k8s.io"), framingJSON, channelsNone},
		{"JSON, stream=watch", response(200, "Content-Type", "application/json;stream=watch"), framingJSON, channelsNone},
		{"JSON in capitals, spaced", response(200, "Content-Type", " Application/JSON ; charset=utf-8"), framingJSON, channelsNone},
		{"JSON compressed", response(200, "Content-Type", "application/json", "Content-Encoding", "gzip"), framingNone, channelsNone},
		{"JSON, identity encoding", response(200, "Content-Type", "application/json", "Content-Encoding", "identity"), framingJSON, channelsNone},
		{"JSON look-alike", response(200, "Content-Type", "application/json-seq"), framingNone, channelsNone},
		{"JSON patch", response(200, "Content-Type", "application/json-patch+json"), framingNone, channelsNone},
		{"protobuf watch", protobufWatch(), framingProtobuf, channelsNone},
		{"protobuf without stream=watch", response(200, "Content-Type", "application/vnd.kubernetes.protobuf"), framingProtobuf, channelsNone},
		{"CBOR watch", response(200, "Content-Type", "application/cbor-seq"), framingNone, channelsNone},
		{"log", textLog(), framingText, channelsNone},
		{"log with charset", response(200, "Content-Type", "text/plain; charset=utf-8"), framingText, channelsNone},
		{"no content type", response(200), framingNone, channelsNone},
		{"WebSocket v5", webSocket("v5.channel.k8s.io"), framingWebSocket, channelsStatus},
		{"WebSocket v4", webSocket("v4.channel.k8s.io"), framingWebSocket, channelsStatus},
		{"WebSocket v4 base64", webSocket("v4.base64.channel.k8s.io"), framingWebSocket, channelsStatusBase64},
		{"WebSocket v1", webSocket("channel.k8s.io"), framingWebSocket, channelsText},
		{"WebSocket v1 base64", webSocket("base64.channel.k8s.io"), framingWebSocket, channelsTextBase64},
		{"WebSocket port-forward tunnel", webSocket("SPDY/3.1+portforward.k8s.io"), framingWebSocket, channelsNone},
		{"WebSocket, no subprotocol", response(101, "Upgrade", "websocket"), framingWebSocket, channelsNone},
		{"WebSocket subprotocol in other case", webSocket("V5.Channel.K8s.Io"), framingWebSocket, channelsNone},
		{"WebSocket upgrade in capitals", response(101, "Upgrade", "WebSocket", "Sec-WebSocket-Protocol", "v5.channel.k8s.io"), framingWebSocket, channelsStatus},
		{"SPDY", spdy(), framingSPDY, channelsNone},
		{"SPDY in lower case", response(101, "Upgrade", "spdy/3.1"), framingSPDY, channelsNone},
		{"other upgrade", response(101, "Upgrade", "h2c"), framingNone, channelsNone},
		{"upgrade header without 101", response(200, "Upgrade", "websocket", "Content-Type", "text/plain"), framingText, channelsNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.resp.Header.Clone()
			b := newBodyOver(tt.resp, http.NoBody)
			if b.track.framing != tt.wantFraming || b.track.channels != tt.wantChannels {
				t.Errorf("got framing %d, channels %d; want %d, %d", b.track.framing, b.track.channels, tt.wantFraming, tt.wantChannels)
			}
			if diff := cmp.Diff(before, tt.resp.Header); diff != "" {
				t.Errorf("NewBody changed the response's header (-before +after):\n%s", diff)
			}
		})
	}
}

func TestCloseReason(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want string
	}{
		{"short", "portcullis: denied", "portcullis: denied"},
		{"123 bytes", strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{"124 bytes", strings.Repeat("a", 124), strings.Repeat("a", 123)},
		{"cut before a two-byte rune", strings.Repeat("a", 122) + "é", strings.Repeat("a", 122)},
		{"cut before a four-byte rune", strings.Repeat("a", 120) + "😀", strings.Repeat("a", 120)},
		{"runes only", strings.Repeat("é", 70), strings.Repeat("é", 61)},
		{"invalid UTF-8", "bad \xff byte", "bad \uFFFD byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := closeReason(tt.msg); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// testScheme knows ConfigMaps and Status, as a client's does.
func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}

// wantProtobufEvent is the frame apimachinery's own serializers write for
// a watch event of type ERROR holding e's Status.
func wantProtobufEvent(e Ending) string {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	st := &metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  e.Message,
		Reason:   metav1.StatusReason(respond.StatusReason(e.Code)),
		Code:     int32(e.Code),
	}
	var obj bytes.Buffer
	if err := protobuf.NewSerializer(scheme, scheme).Encode(st, &obj); err != nil {
		panic(err)
	}
	return encodeProtobufEvent(scheme, &metav1.WatchEvent{Type: string(watch.Error), Object: runtime.RawExtension{Raw: obj.Bytes()}})
}

func encodeProtobufEvent(scheme *runtime.Scheme, ev *metav1.WatchEvent) string {
	var out bytes.Buffer
	if err := protobuf.NewRawSerializer(scheme, scheme).Encode(ev, &out); err != nil {
		panic(err)
	}
	return protoFrame(out.String())
}

// TestProtobufEventSeenByApimachinery decodes the final frame of a
// protobuf watch as client-go does, with apimachinery's framer and
// serializers, and compares its bytes with theirs.
func TestProtobufEventSeenByApimachinery(t *testing.T) {
	tests := []struct {
		name   string
		ending Ending
	}{
		{"signed out", testEnding},
		{"denied by policy", Ending{Code: http.StatusForbidden, Message: "portcullis: denied by policy rule policy[0].allow.or (groups-unauthorized)"}},
		{"long message", Ending{Code: http.StatusForbidden, Message: strings.Repeat("é", 200)}},
		{"gone", Ending{Code: http.StatusGone, Message: "portcullis: the route was removed"}},
		{"unavailable", Ending{Code: http.StatusServiceUnavailable, Message: "portcullis: shutting down"}},
	}
	scheme := testScheme(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBodyOver(protobufWatch(), &chunkBody{})
			b.End(tt.ending)
			frame, err := io.ReadAll(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantProtobufEvent(tt.ending), string(frame)); diff != "" {
				t.Errorf("frame differs from apimachinery's (-want +got):\n%s", diff)
			}
			frames := protobuf.LengthDelimitedFramer.NewFrameReader(io.NopCloser(bytes.NewReader(frame)))
			dec := restwatch.NewDecoder(streaming.NewDecoder(frames, protobuf.NewRawSerializer(scheme, scheme)),
				protobuf.NewSerializer(scheme, scheme))
			typ, obj, err := dec.Decode()
			if err != nil {
				t.Fatalf("decoding the frame: %v", err)
			}
			checkErrorEvent(t, typ, obj, tt.ending)
			if _, _, err := dec.Decode(); err != io.EOF {
				t.Errorf("after the event: got %v, want io.EOF", err)
			}
		})
	}
}

// checkErrorEvent checks that an event is the Error event of e.
func checkErrorEvent(t *testing.T, typ watch.EventType, obj runtime.Object, e Ending) {
	t.Helper()
	if typ != watch.Error {
		t.Errorf("got event type %q, want %q", typ, watch.Error)
	}
	st, ok := obj.(*metav1.Status)
	if !ok {
		t.Fatalf("got event object %T, want *metav1.Status", obj)
	}
	want := metav1.Status{
		Status:  metav1.StatusFailure,
		Message: e.Message,
		Reason:  metav1.StatusReason(respond.StatusReason(e.Code)),
		Code:    int32(e.Code),
	}
	got := *st
	got.TypeMeta = metav1.TypeMeta{}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Status in the event (-want +got):\n%s", diff)
	}
}

// proxied is a response through proxyWithBodies: its Body, and the
// cancel of the request's context ReverseProxy serves it with.
type proxied struct {
	body   *Body
	cancel context.CancelFunc
}

// proxyWithBodies serves h behind a ReverseProxy whose ModifyResponse
// wraps every upstream body in NewBody, as Portcullis's proxy does, and
// returns the proxy's URL and the responses as they are made.
func proxyWithBodies(t *testing.T, h http.Handler) (string, <-chan proxied) {
	t.Helper()
	upstream := httptest.NewServer(h)
	t.Cleanup(upstream.Close)
	target, err := url.Parse(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	responses := make(chan proxied, 1)
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			ModifyResponse: func(resp *http.Response) error {
				b := NewBody(resp)
				resp.Body = b
				responses <- proxied{b, cancel}
				return nil
			},
		}
		rp.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(px.Close)
	return px.URL, responses
}

// TestWatchEndSeenByClientGo runs a watch through ReverseProxy and
// client-go, ends it, and checks that client-go delivers the Error event
// with the Status, then ends the watch with no error of its own: the
// stream ended cleanly.
func TestWatchEndSeenByClientGo(t *testing.T) {
	const (
		jsonType     = "application/json"
		protobufType = "application/vnd.kubernetes.protobuf"
	)
	tests := []struct {
		name        string
		contentType string
	}{
		{"JSON", jsonType},
		{"protobuf", protobufType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scheme := testScheme(t)
			cm := &corev1.ConfigMap{
				TypeMeta:   metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
				ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "default"},
				Data:       map[string]string{"k": `v "}`},
			}
			var event []byte
			respType := tt.contentType
			if tt.contentType == jsonType {
				obj, err := json.Marshal(cm)
				if err != nil {
					t.Fatal(err)
				}
				event = fmt.Appendf(nil, `{"type":"ADDED","object":%s}`+"\n", obj)
			} else {
				var obj bytes.Buffer
				if err := protobuf.NewSerializer(scheme, scheme).Encode(cm, &obj); err != nil {
					t.Fatal(err)
				}
				event = []byte(encodeProtobufEvent(scheme, &metav1.WatchEvent{Type: string(watch.Added), Object: runtime.RawExtension{Raw: obj.Bytes()}}))
				respType += ";stream=watch"
			}
			stop := make(chan struct{})
			defer close(stop)
			pxURL, responses := proxyWithBodies(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("watch") != "true" {
					t.Errorf("upstream got %s, want a watch", r.URL)
				}
				w.Header().Set("Content-Type", respType)
				w.Write(event)
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-stop:
				}
			}))
			gv := schema.GroupVersion{Version: "v1"}
			c, err := rest.RESTClientFor(&rest.Config{
				Host:    pxURL,
				APIPath: "/api",
				ContentConfig: rest.ContentConfig{
					GroupVersion:         &gv,
					NegotiatedSerializer: serializer.NewCodecFactory(scheme).WithoutConversion(),
					AcceptContentTypes:   tt.contentType,
					ContentType:          tt.contentType,
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			w, err := c.Get().Namespace("default").Resource("configmaps").Param("watch", "true").Watch(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			ev := nextEvent(t, w)
			if got, ok := ev.Object.(*corev1.ConfigMap); ev.Type != watch.Added || !ok || got.Name != "a" {
				t.Fatalf("got first event %s %T, want ADDED ConfigMap a", ev.Type, ev.Object)
			}
			b := (<-responses).body
			b.End(testEnding)
			ev = nextEvent(t, w)
			checkErrorEvent(t, ev.Type, ev.Object, testEnding)
			select {
			case ev, ok := <-w.ResultChan():
				if ok {
					t.Errorf("got event %s %#v after the Error event, want the watch to end", ev.Type, ev.Object)
				}
			case <-time.After(5 * time.Second):
				t.Error("watch still open 5 s after End")
			}
			select {
			case <-b.Done():
			case <-time.After(5 * time.Second):
				t.Error("Done not closed")
			}
		})
	}
}

func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch ended, want an event")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	panic("unreachable")
}

// webSocketAccept is the Sec-WebSocket-Accept for key (RFC 6455, section
// 4.2.2).
func webSocketAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsMessage is a frame as a client reads it.
type wsMessage struct {
	opcode  byte
	payload string
}

// readFrames splits what a client received into frames; the test's own
// reader, separate from the tracker.
func readFrames(t *testing.T, s string) []wsMessage {
	t.Helper()
	var frames []wsMessage
	for len(s) > 0 {
		if len(s) < 2 || s[1]&0x80 != 0 {
			t.Fatalf("bad frame header in %q", s)
		}
		n, h := uint64(s[1]&0x7f), 2
		switch n {
		case 126:
			n, h = uint64(binary.BigEndian.Uint16([]byte(s[2:4]))), 4
		case 127:
			n, h = binary.BigEndian.Uint64([]byte(s[2:10])), 10
		}
		if uint64(len(s)) < uint64(h)+n || s[0]&0x80 == 0 {
			t.Fatalf("truncated or unfinished frame in %q", s)
		}
		frames = append(frames, wsMessage{s[0] & 0x0f, s[h : h+int(n)]})
		s = s[h+int(n):]
	}
	return frames
}

// TestWebSocketEndThroughReverseProxy runs an exec's WebSocket through
// ReverseProxy, ends it, and reads what a client gets: the Status on the
// error channel, as client-go's executor decodes it (channel byte 3, then
// a metav1.Status in JSON, whose message becomes StreamWithContext's
// error), then a close frame with code 1000, then the end of the
// connection. The client sends a ping after End, which must not cut the
// final message short; nor must the request's context ending, which makes
// ReverseProxy close the body while the final message is being read.
func TestWebSocketEndThroughReverseProxy(t *testing.T) {
	tests := []struct {
		name   string
		cancel bool
	}{
		{"ended", false},
		{"ended, and the request's context cancelled", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout := wsFrame(true, 0x2, nil, "\x01hello\n")
			pxURL, responses := proxyWithBodies(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
					t.Errorf("upstream got Upgrade %q, want websocket", r.Header.Get("Upgrade"))
				}
				conn, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
					"Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n%s",
					webSocketAccept(r.Header.Get("Sec-WebSocket-Key")), stdout)
				brw.Flush()
				io.Copy(io.Discard, brw) // until the proxy closes the connection
			}))

			conn, err := net.Dial("tcp", strings.TrimPrefix(pxURL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			const key = "dGhlIHNhbXBsZSBub25jZQ=="
			fmt.Fprintf(conn, "GET /api/v1/namespaces/default/pods/p/exec?command=sh&stdout=true HTTP/1.1\r\nHost: k8s.example.com\r\n"+
				"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n"+
				"Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n", key)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != webSocketAccept(key) {
				t.Fatalf("got %s, Sec-WebSocket-Accept %q, want 101 with %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"), webSocketAccept(key))
			}
			got := make([]byte, len(stdout))
			if _, err := io.ReadFull(br, got); err != nil || string(got) != stdout {
				t.Fatalf("got %q, %v, want the stdout frame %q", got, err, stdout)
			}

			p := <-responses
			p.body.End(testEnding)
			if tt.cancel {
				p.cancel()
			}
			if _, err := conn.Write([]byte(wsFrame(true, 0x9, []byte{9, 8, 7, 6}, "are you there"))); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("reading after End: %v, after %q", err, rest)
			}
			frames := readFrames(t, string(rest))
			if len(frames) != 2 {
				t.Fatalf("got %d frames after End, want 2: %q", len(frames), rest)
			}

			errFrame := frames[0]
			if errFrame.opcode != 0x2 || len(errFrame.payload) == 0 || errFrame.payload[0] != 3 {
				t.Fatalf("got first frame opcode %d, payload %q; want a binary frame on channel 3", errFrame.opcode, errFrame.payload)
			}
			var st metav1.Status
			if err := json.Unmarshal([]byte(errFrame.payload[1:]), &st); err != nil {
				t.Fatalf("the error channel's payload is not a Status: %v", err)
			}
			// client-go's errorDecoderV4: a Failure whose reason is not
			// NonZeroExitCode is reported as errors.New(status.Message).
			if st.Status != metav1.StatusFailure || st.Message != testEnding.Message ||
				st.Code != int32(testEnding.Code) || st.Reason != metav1.StatusReasonUnauthorized {
				t.Errorf("got Status %+v, want a Failure with message %q, code %d, reason Unauthorized", st, testEnding.Message, testEnding.Code)
			}

			closeFrame := frames[1]
			if closeFrame.opcode != 0x8 || len(closeFrame.payload) < 2 {
				t.Fatalf("got second frame opcode %d, payload %q; want a close frame", closeFrame.opcode, closeFrame.payload)
			}
			if code, reason := binary.BigEndian.Uint16([]byte(closeFrame.payload)), closeFrame.payload[2:]; code != 1000 || reason != testEnding.Message {
				t.Errorf("got close %d %q, want 1000 %q", code, reason, testEnding.Message)
			}
			select {
			case <-p.body.Done():
			case <-time.After(5 * time.Second):
				t.Error("Done not closed")
			}
		})
	}
}

// TestBytes counts what passes each way of an upgraded connection, not
// the final message.
func TestBytes(t *testing.T) {
	up := &rwc{Reader: strings.NewReader("hello")}
	resp := &http.Response{StatusCode: http.StatusSwitchingProtocols, Header: http.Header{"Upgrade": {"SPDY/3.1"}}, Body: up}
	b := NewBody(resp)
	if _, err := io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("typed")); err != nil {
		t.Fatal(err)
	}
	b.End(testEnding)
	if from, to := b.Bytes(); from != 5 || to != 5 {
		t.Errorf("Bytes: got %d from the upstream and %d to it, want 5 and 5", from, to)
	}
}

// rwc is an upstream connection for TestBytes: reads from Reader, writes
// are counted nowhere.
type rwc struct{ io.Reader }

func (rwc) Write(p []byte) (int, error) { return len(p), nil }
func (rwc) Close() error                { return nil }
