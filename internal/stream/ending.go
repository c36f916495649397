package stream

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/portcullis-proxy/portcullis/internal/respond"
)

// Ending is why a stream is ended, as the person is told: Code is the HTTP status a
// Kubernetes Status carries (401 for a session that ended, 403 for a policy that now denies),
// Message the text (e.g. `portcullis: your session was signed out`).
type Ending struct {
	Code    int
	Message string
}

// Body is the body of an upstream response to a long-lived request
// (a watch, a followed log, exec, attach, port-forward) as ReverseProxy
// copies it to the client: it passes the upstream's bytes through
// unchanged while following where the protocol's messages begin and end,
// so that End can stop the stream between two messages and add one of its
// own saying why, in a form the client shows the person.
//
// Read and Close are for ReverseProxy (one reader at a time, as io.Reader
// has it); End and Done may be used from any goroutine.
type Body struct {
	body   io.ReadCloser
	writer io.Writer // body as a writer, for a 101 response; nil otherwise

	// Owned by the reader: Read is never called concurrently with
	// itself, and End touches none of these, so they need no lock.
	track tracker
	phase readPhase
	final []byte // the part of the final message not yet handed out

	// fromUpstream and toUpstream count the bytes passed each way, for
	// the audit trail (Bytes).
	fromUpstream, toUpstream atomic.Int64

	ending    atomic.Pointer[Ending] // set once, by the first End
	finished  atomic.Bool            // Read has returned an error: nothing more will be read
	closeOnce sync.Once
	closeErr  error
	doneOnce  sync.Once
	done      chan struct{}
}

// readPhase is how far Read is in ending the stream.
type readPhase uint8

const (
	phasePassing   readPhase = iota // passing the upstream's bytes through
	phaseFinishing                  // handing out the final message
	phaseOver                       // io.EOF returned after End
)

// errNotWritable is Write's answer for a body that is not an upgraded
// connection: only a 101 response has a client-to-upstream direction.
var errNotWritable = errors.New("writing to the body of a response that did not switch protocols")

// NewBody wraps resp.Body (resp is the upstream's response to a long-lived request) and picks
// the framing from the response: 101 + "Upgrade: websocket" with Sec-WebSocket-Protocol, 101 +
// "Upgrade: SPDY/3.1", or for other responses the Content-Type. It does not modify resp.
//
// A response whose framing Body does not know (another content type, a
// compressed body, another upgrade) is passed through all the same; End
// then ends it with no message.
func NewBody(resp *http.Response) *Body {
	b := &Body{
		body:  resp.Body,
		track: tracker{framing: framingOf(resp), channels: channelsOf(resp)},
		done:  make(chan struct{}),
	}
	if b.body == nil {
		b.body = http.NoBody
	}
	// For a 101 response, the transport's body is the upstream connection
	// itself (an io.ReadWriteCloser), which ReverseProxy requires and
	// writes the client's bytes to.
	if w, ok := b.body.(io.Writer); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		b.writer = w
	}
	return b
}

// Read passes the upstream's bytes through, and after End the final
// message, then io.EOF. In passing it neither copies nor allocates: a
// watch lives for hours.
func (b *Body) Read(p []byte) (int, error) {
	if b.ending.Load() != nil {
		return b.readFinal(p)
	}
	atBoundary := b.track.atBoundary()
	n, err := b.body.Read(p)
	if n > 0 && atBoundary && b.ending.Load() != nil {
		// End came during the read, between two messages: the stream
		// ends there, and what arrived after is dropped. It may well be
		// the upstream's answer to End itself: closing a TLS connection
		// sends close_notify before the socket closes, and kube-apiserver
		// answers with a WebSocket close frame, which would leave no
		// place for the message if it were passed on.
		return b.readFinal(p)
	}
	// Bytes read mid-message when End came are passed on: they complete
	// what the client has begun to read, and the boundary state must
	// count them.
	b.track.scan(p[:n])
	b.fromUpstream.Add(int64(n))
	if err != nil {
		// End sets ending before it closes the body, so the error of a
		// Read that the close unblocked always finds it set: the close
		// error is End's doing, not the upstream's, and is not passed on.
		// An upstream that ended or failed at the same moment is ended
		// the same way.
		if b.ending.Load() != nil {
			if n > 0 {
				return n, nil
			}
			return b.readFinal(p)
		}
		b.finish()
	}
	return n, err
}

// readFinal hands out the final message, then io.EOF.
func (b *Body) readFinal(p []byte) (int, error) {
	switch b.phase {
	case phasePassing:
		b.final = b.track.finalMessage(*b.ending.Load())
		b.phase = phaseFinishing
		fallthrough
	case phaseFinishing:
		if len(b.final) > 0 {
			n := copy(p, b.final)
			b.final = b.final[n:]
			return n, nil
		}
		b.final = nil
		b.phase = phaseOver
		// io.Copy, as ReverseProxy uses it, has written everything Read
		// returned before it reads again: the final message has reached
		// the client connection, which the caller may now close.
		b.finish()
	}
	return 0, io.EOF
}

// Write passes the client's bytes of an upgraded connection to the
// upstream. For a response that did not switch protocols it fails.
//
// After End it discards them and reports success: the upstream is gone,
// and an error would make ReverseProxy close the client connection at once,
// perhaps before the final message is written, and while the client's own
// bytes (a WebSocket ping, typed input) lie unread on it, which makes the
// kernel reset the connection and the client lose what it had not yet
// read. The copy stops when the client closes, or the caller closes the
// connection after Done.
func (b *Body) Write(p []byte) (int, error) {
	if b.writer == nil {
		return 0, errNotWritable
	}
	if b.ending.Load() != nil {
		return len(p), nil
	}
	n, err := b.writer.Write(p)
	b.toUpstream.Add(int64(n))
	if err != nil && b.ending.Load() != nil {
		return len(p), nil // End closed the upstream during the write
	}
	return n, err
}

// Close closes the wrapped body (once, whether End or Close is first).
// After End, Read still hands out the final message: ReverseProxy closes an
// upgraded connection's body from another goroutine as soon as the
// request's context ends, which may be while the final message is on its
// way to the client.
func (b *Body) Close() error {
	return b.closeBody()
}

// End ends the stream: safe to call from any goroutine, any number of times (the first wins),
// concurrently with Read. It closes the wrapped body (that unblocks a Read waiting for the upstream);
// the following Reads return the final message (only if the bytes passed through so far end
// exactly at a message boundary of the protocol, else none), then io.EOF.
//
// Ended mid-message, the stream gets no message: the rest of the message
// was in the upstream connection End has just closed, so it can never be
// completed, and bytes of ours after a partial message would be read as
// its remainder. The client sees the stream cut short, as when the
// upstream goes away.
func (b *Body) End(e Ending) {
	if !b.ending.CompareAndSwap(nil, &e) {
		return
	}
	b.closeBody()
	// The reader may be done already (the upstream ended or failed on its
	// own): then nothing will hand out a message, and Done must not wait
	// for it. finish checks ending after setting finished, and End checks
	// finished after setting ending, so one of them sees both.
	if b.finished.Load() {
		b.closeDone()
	}
}

// Bytes returns how many of the upstream's bytes were passed to the
// client, and how many of the client's to the upstream (an upgraded
// connection's other direction), so far. The final message is not counted:
// it is Portcullis's, not the upstream's.
func (b *Body) Bytes() (fromUpstream, toUpstream int64) {
	return b.fromUpstream.Load(), b.toUpstream.Load()
}

// Done is closed once Read has returned io.EOF after End (the final message has been handed
// to the reader), so the caller can then close the client connection.
//
// It is also closed at End if Read had already returned an error (io.EOF
// from an upstream that ended on its own, or a failure): the reader reads
// no more. Close does not close it, as Close can come while the final
// message is still being read (see Close); nor does a reader that stops
// without an error, as ReverseProxy does when it cannot write to the
// client, so the caller needs a deadline of its own as well. A Body that is
// never ended never closes it.
func (b *Body) Done() <-chan struct{} { return b.done }

// finish records that Read has returned its last error and, if the
// stream was ended, closes Done.
func (b *Body) finish() {
	b.finished.Store(true)
	if b.ending.Load() != nil {
		b.closeDone()
	}
}

func (b *Body) closeDone() { b.doneOnce.Do(func() { close(b.done) }) }

// closeBody closes the wrapped body once: End and ReverseProxy both close
// it, and an upstream connection closed twice reports an error the second
// time.
func (b *Body) closeBody() error {
	b.closeOnce.Do(func() { b.closeErr = b.body.Close() })
	return b.closeErr
}

// framing is the protocol of the bytes from the upstream.
type framing uint8

const (
	framingNone      framing = iota // unknown: no message, just io.EOF
	framingJSON                     // a JSON watch: a sequence of JSON values
	framingProtobuf                 // a protobuf watch: 4-byte big-endian length, then the bytes
	framingText                     // a followed log: lines of text
	framingWebSocket                // RFC 6455 frames from the server
	framingSPDY                     // SPDY/3.1 frames
)

func framingOf(resp *http.Response) framing {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		up := strings.TrimSpace(resp.Header.Get("Upgrade"))
		switch {
		case strings.EqualFold(up, "websocket"):
			return framingWebSocket
		case strings.EqualFold(up, "SPDY/3.1"):
			return framingSPDY
		}
		return framingNone
	}
	// A compressed body's framing is inside the compression, out of
	// sight.
	if ce := strings.TrimSpace(resp.Header.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") {
		return framingNone
	}
	mediaType, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	switch strings.ToLower(strings.TrimSpace(mediaType)) {
	case "application/json":
		// A watch, as objects or as Tables
		// (application/json;as=Table;v=v1;g=meta.k8s.io).
		return framingJSON
	case "application/vnd.kubernetes.protobuf":
		// kube-apiserver marks a protobuf watch ";stream=watch", and
		// serves protobuf on no other long-lived request; a single
		// unframed object taken for a frame would read as an enormous
		// length ("k8s\x00") and get no message, so the parameter need
		// not be required.
		return framingProtobuf
	case "text/plain":
		return framingText
	}
	// Among others application/cbor-seq, a CBOR watch: ended without a
	// message.
	return framingNone
}

// channels is what a WebSocket subprotocol gives for telling the client
// why the stream ends.
type channels uint8

const (
	channelsNone         channels = iota // no error channel: a close frame only
	channelsStatus                       // v4/v5.channel.k8s.io: binary frames, a Status on channel 3
	channelsStatusBase64                 // v4.base64.channel.k8s.io: base64 text frames, a Status on '3'
	channelsText                         // channel.k8s.io, v2, v3: binary frames, plain text on channel 3
	channelsTextBase64                   // base64.channel.k8s.io: base64 text frames, plain text on '3'
)

// channelsOf reads the subprotocol the upstream chose. The error channel's
// content follows kubelet's remote command server (k8s.io/cri-streaming,
// remotecommand/websocket.go): a metav1.Status in JSON from v4 on, plain
// text before. port-forward over v4.channel.k8s.io has no error channel 3
// of its own meaning (its channels are data and error per port); a message
// there is at worst an error reported for the second port.
func channelsOf(resp *http.Response) channels {
	switch strings.TrimSpace(resp.Header.Get("Sec-WebSocket-Protocol")) {
	case "v5.channel.k8s.io", "v4.channel.k8s.io":
		return channelsStatus
	case "v4.base64.channel.k8s.io":
		return channelsStatusBase64
	case "channel.k8s.io", "v2.channel.k8s.io", "v3.channel.k8s.io":
		return channelsText
	case "base64.channel.k8s.io":
		return channelsTextBase64
	}
	// Among others port-forward's SPDY/3.1+portforward.k8s.io tunnel,
	// and no subprotocol at all.
	return channelsNone
}

// tracker follows the upstream's bytes, read by read, to know whether
// what has passed through ends at a message boundary. A read may end
// anywhere, inside a frame header included, so the state is kept between
// reads; it is a few words, whatever the stream.
type tracker struct {
	framing  framing
	channels channels // WebSocket only

	// Length-prefixed frames (protobuf, SPDY, WebSocket).
	hdr    uint8  // bytes seen of the current frame's header; 0 outside one
	hdrLen uint8  // WebSocket: the header's length, known from its second byte
	lenEnd uint8  // WebSocket: where the header's extended length ends
	first  byte   // WebSocket: the header's first byte (FIN and opcode)
	left   uint64 // payload bytes of the current frame still to come; in a header, the length so far

	fragmented bool // WebSocket: a fragmented data message is in progress
	closed     bool // WebSocket: the server has sent its close frame

	// JSON.
	depth    int  // nesting of {} and []
	inString bool // inside a string
	escaped  bool // inside a string, after a backslash
	inScalar bool // inside a number or literal at the top level

	// Text.
	passed bool // some bytes have passed
	lastNL bool // the last byte passed was '\n'

	broken bool // the bytes break the protocol: never a message
}

// scan follows p, the next bytes passed to the client.
func (t *tracker) scan(p []byte) {
	if len(p) == 0 {
		return
	}
	switch t.framing {
	case framingJSON:
		t.scanJSON(p)
	case framingProtobuf:
		t.scanLengthPrefixed(p, 4, 0)
	case framingSPDY:
		// Control and data frames alike: 8 bytes of header, the last 3
		// of them the payload's length (SPDY/3.1 draft, section 2.2).
		t.scanLengthPrefixed(p, 8, 5)
	case framingWebSocket:
		t.scanWebSocket(p)
	case framingText:
		t.passed = true
		t.lastNL = p[len(p)-1] == '\n'
	}
}

// atBoundary reports whether the bytes passed so far end between two
// messages, where a message of ours may follow.
func (t *tracker) atBoundary() bool {
	if t.broken {
		return false
	}
	switch t.framing {
	case framingJSON:
		return t.depth == 0 && !t.inString && !t.inScalar
	case framingProtobuf, framingSPDY:
		return t.hdr == 0 && t.left == 0
	case framingWebSocket:
		// After its close frame the server may send nothing more
		// (RFC 6455, section 5.5.1).
		return t.hdr == 0 && t.left == 0 && !t.fragmented && !t.closed
	case framingText:
		return true
	}
	return false
}

// scanJSON follows a sequence of JSON values: kube-apiserver writes one
// watch event object per event, then "\n". Only nesting, strings and
// top-level scalars matter to where a value ends; the bytes are not
// otherwise checked. Byte by byte it follows about 550 MB/s on one core
// (BenchmarkRead), far more than any watch sends.
func (t *tracker) scanJSON(p []byte) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if t.inString {
			switch {
			case t.escaped:
				t.escaped = false
			case c == '\\':
				t.escaped = true
			case c == '"':
				t.inString = false
			}
			continue
		}
		switch c {
		case '"':
			t.inString = true
			t.inScalar = false
		case '{', '[':
			t.depth++
			t.inScalar = false
		case '}', ']':
			if t.depth == 0 {
				t.broken = true // closes what was never opened
			} else {
				t.depth--
			}
			t.inScalar = false
		case ' ', '\t', '\n', '\r':
			if t.depth == 0 {
				t.inScalar = false
			}
		default:
			// A number, true, false or null: at the top level it ends
			// only at what follows it, so it is never a boundary itself.
			if t.depth == 0 {
				t.inScalar = true
			}
		}
	}
}

// scanLengthPrefixed follows frames of a hdrSize-byte header whose bytes
// from lenAt on are the payload's length, big-endian, then the payload.
func (t *tracker) scanLengthPrefixed(p []byte, hdrSize, lenAt uint8) {
	for len(p) > 0 {
		if t.hdr == 0 && t.left > 0 {
			k := min(uint64(len(p)), t.left)
			p = p[k:]
			t.left -= k
			continue
		}
		if t.hdr >= lenAt {
			t.left = t.left<<8 | uint64(p[0])
		}
		p = p[1:]
		t.hdr++
		if t.hdr == hdrSize {
			t.hdr = 0
		}
	}
}

// scanWebSocket follows RFC 6455 frames (section 5.2): a first byte of
// FIN, RSV1-3 and opcode; a second of MASK and a 7-bit length, 126 for a
// 16-bit length after it, 127 for a 64-bit one; a 4-byte masking key if
// MASK is set (a server's frames are normally unmasked); the payload.
func (t *tracker) scanWebSocket(p []byte) {
	for len(p) > 0 {
		if t.hdr == 0 && t.left > 0 {
			k := min(uint64(len(p)), t.left)
			p = p[k:]
			t.left -= k
			if t.left == 0 {
				t.endFrame()
			}
			continue
		}
		c := p[0]
		p = p[1:]
		switch {
		case t.hdr == 0:
			t.first = c
		case t.hdr == 1:
			t.lenEnd = 2
			switch n := c & 0x7f; n {
			case 126:
				t.lenEnd += 2
			case 127:
				t.lenEnd += 8
			default:
				t.left = uint64(n)
			}
			t.hdrLen = t.lenEnd
			if c&0x80 != 0 {
				t.hdrLen += 4 // the masking key, after the length
			}
		case t.hdr < t.lenEnd:
			t.left = t.left<<8 | uint64(c)
		}
		t.hdr++
		if t.hdr >= 2 && t.hdr == t.hdrLen {
			t.hdr = 0
			t.startFrame()
			if t.left == 0 {
				t.endFrame()
			}
		}
	}
}

// startFrame checks a frame's header once it is complete.
func (t *tracker) startFrame() {
	opcode := t.first & 0x0f
	fin := t.first&0x80 != 0
	if t.left>>63 != 0 {
		t.broken = true // a 64-bit length's most significant bit must be 0
	}
	switch opcode {
	case 0x0: // continuation
		if !t.fragmented {
			t.broken = true
		}
	case 0x1, 0x2: // text, binary: a new message may not start inside another
		if t.fragmented {
			t.broken = true
		}
	case 0x8, 0x9, 0xa: // close, ping, pong: may sit between fragments
		if !fin || t.left > 125 {
			t.broken = true
		}
	default: // reserved
		t.broken = true
	}
}

// endFrame records the end of a frame's payload.
func (t *tracker) endFrame() {
	switch opcode := t.first & 0x0f; opcode {
	case 0x0, 0x1, 0x2:
		t.fragmented = t.first&0x80 == 0
	case 0x8:
		t.closed = true
	}
}

// finalMessage is what follows the bytes passed so far to tell the client
// why the stream ends, or nil: not at a message boundary, or a protocol
// with no place for it.
func (t *tracker) finalMessage(e Ending) []byte {
	if !t.atBoundary() {
		return nil
	}
	switch t.framing {
	case framingJSON:
		// A watch event of type ERROR holding a Status: client-go's watch
		// returns it as a watch.Error event, and kubectl prints its
		// message.
		b := append([]byte(`{"type":"ERROR","object":`), e.statusJSON()...)
		return append(b, "}\n"...)
	case framingProtobuf:
		return e.protobufWatchEvent()
	case framingText:
		// The message on a line of its own, after the log's last line
		// even if that line was cut short.
		var b []byte
		if t.passed && !t.lastNL {
			b = append(b, '\n')
		}
		b = append(b, e.Message...)
		return append(b, '\n')
	case framingWebSocket:
		return t.webSocketMessage(e)
	case framingSPDY:
		// No message. In SPDY/3.1 the reason could go only on the exec's
		// error stream, whose id is in a SYN_STREAM the client sent the
		// other way, in a header block compressed with zlib state shared
		// by the whole connection (SPDY/3.1 draft, section 2.6.10.1): reading
		// it would mean inflating every stream's headers, with a 32 KiB
		// window per connection. The client sees the connection end at a
		// frame boundary.
		return nil
	}
	return nil
}

// errorChannel is the remote command protocols' error stream (stdin 0,
// stdout 1, stderr 2, error 3, resize 4).
const errorChannel = 3

// WebSocket close codes (RFC 6455, section 7.4.1).
const (
	closeNormal          = 1000
	closePolicyViolation = 1008
)

// webSocketMessage is the reason on the error channel, where the
// subprotocol has one, then a close frame.
//
// After the error channel the close code is 1000, normal closure: the
// reason is already on its way, and client-go's WebSocket executor
// (tools/remotecommand/websocket.go, readDemuxLoop) ends its stream readers
// with io.EOF on 1000 alone. The error stream's reader then returns the
// Status and StreamWithContext returns its message as the error. On any
// other code every reader fails with the close error, the error stream's
// read included, and the executor reports "error reading from error
// stream: next reader: websocket: close 1008 …" in place of the Status.
//
// With no error channel the close frame is the only place for the reason,
// and its code is 1008, policy violation, "a generic status code ... when
// there is no other more suitable status code": a client reports it as an
// error with the reason, where 1000 would read as the other end finishing
// normally (client-go's port-forward tunnel takes 1000 for io.EOF).
func (t *tracker) webSocketMessage(e Ending) []byte {
	var b []byte
	code := closeNormal
	switch t.channels {
	case channelsStatus:
		b = appendWebSocketFrame(b, opBinary, []byte{errorChannel}, e.statusJSON())
	case channelsStatusBase64:
		b = appendWebSocketFrame(b, opText, []byte{'0' + errorChannel}, base64Of(e.statusJSON()))
	case channelsText:
		b = appendWebSocketFrame(b, opBinary, []byte{errorChannel}, []byte(e.Message))
	case channelsTextBase64:
		b = appendWebSocketFrame(b, opText, []byte{'0' + errorChannel}, base64Of([]byte(e.Message)))
	default:
		code = closePolicyViolation
	}
	reason := closeReason(e.Message)
	payload := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(payload, uint16(code))
	return appendWebSocketFrame(b, opClose, payload, []byte(reason))
}

// WebSocket opcodes (RFC 6455, section 5.2).
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
)

// appendWebSocketFrame appends one final, unmasked frame (a server's
// frames are not masked, RFC 6455 section 5.1) whose payload is head then
// body.
func appendWebSocketFrame(b []byte, opcode byte, head, body []byte) []byte {
	b = append(b, 0x80|opcode)
	switch n := len(head) + len(body); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, head...)
	return append(b, body...)
}

func base64Of(p []byte) []byte {
	return base64.StdEncoding.AppendEncode(nil, p)
}

// maxCloseReason is the longest reason a close frame can carry: a control
// frame's payload is at most 125 bytes, 2 of them the code (RFC 6455,
// sections 5.5 and 5.5.1).
const maxCloseReason = 123

// closeReason is msg as a close frame's reason: valid UTF-8, as the RFC
// requires (a client fails the connection otherwise), cut on a rune
// boundary to fit.
func closeReason(msg string) string {
	s := strings.ToValidUTF8(msg, "\uFFFD")
	if len(s) <= maxCloseReason {
		return s
	}
	i := maxCloseReason
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// statusJSON is the Status telling the person why the stream ends, as an
// error response would carry it.
func (e Ending) statusJSON() []byte { return respond.Status(e.Code, e.Message) }

// protobufWatchEvent is one frame of a protobuf watch (a 4-byte big-endian
// length, then a metav1.WatchEvent) of type ERROR holding the Status, as
// kube-apiserver writes one: the event itself in plain protobuf, its
// object in the Kubernetes envelope, "k8s\x00" then a runtime.Unknown.
// Fields as in k8s.io/apimachinery's pkg/apis/meta/v1/generated.proto and
// pkg/runtime/generated.proto; every field is written as gogo-protobuf
// writes it, empty strings included, so the bytes are those the real
// serializer gives.
func (e Ending) protobufWatchEvent() []byte {
	// metav1.ListMeta{}: selfLink 1, resourceVersion 2, continue 3.
	var listMeta []byte
	listMeta = appendProtoBytes(listMeta, 1, nil)
	listMeta = appendProtoBytes(listMeta, 2, nil)
	listMeta = appendProtoBytes(listMeta, 3, nil)

	// metav1.Status: metadata 1, status 2, message 3, reason 4, code 6.
	var st []byte
	st = appendProtoBytes(st, 1, listMeta)
	st = appendProtoBytes(st, 2, []byte("Failure"))
	st = appendProtoBytes(st, 3, []byte(e.Message))
	st = appendProtoBytes(st, 4, []byte(respond.StatusReason(e.Code)))
	st = appendProtoVarint(st, 6, uint64(int64(int32(e.Code)))) // int32: negative values sign-extend

	// runtime.TypeMeta: apiVersion 1, kind 2.
	var typeMeta []byte
	typeMeta = appendProtoBytes(typeMeta, 1, []byte("v1"))
	typeMeta = appendProtoBytes(typeMeta, 2, []byte("Status"))

	// runtime.Unknown: typeMeta 1, raw 2, contentEncoding 3, contentType 4.
	unknown := []byte("k8s\x00")
	unknown = appendProtoBytes(unknown, 1, typeMeta)
	unknown = appendProtoBytes(unknown, 2, st)
	unknown = appendProtoBytes(unknown, 3, nil)
	unknown = appendProtoBytes(unknown, 4, nil)

	// runtime.RawExtension: raw 1.
	raw := appendProtoBytes(nil, 1, unknown)

	// metav1.WatchEvent: type 1, object 2.
	var event []byte
	event = appendProtoBytes(event, 1, []byte("ERROR"))
	event = appendProtoBytes(event, 2, raw)

	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(event)), uint32(len(event)))
	return append(frame, event...)
}

// appendProtoBytes appends a length-delimited field (wire type 2).
func appendProtoBytes(b []byte, field int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendProtoVarint appends a varint field (wire type 0).
func appendProtoVarint(b []byte, field int, v uint64) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3)
	return binary.AppendUvarint(b, v)
}
