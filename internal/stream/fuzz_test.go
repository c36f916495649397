package stream

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
)

// The fuzz targets feed each tracker arbitrary bytes, in arbitrary reads
// (splits gives the sizes, 1 to 256), and end the stream after endAt of
// them (at the end of the read that reaches it). Each checks that the
// output is exactly the bytes passed, then either nothing or the protocol's
// whole final message, the message exactly when the tracker is at a
// boundary (SPDY has none to add); that the tracker is at a boundary
// exactly where a reference parser, reading the passed bytes whole rather
// than read by read, finds one; and that the same bytes read in one piece
// end the same way.

// boundary is what a reference parser says of the bytes passed.
type boundary int

const (
	notBoundary boundary = iota // mid-message, or after bytes that break the protocol
	isBoundary
	eitherWay // not the protocol at all: only the other checks apply
)

func fuzzEnding(f *testing.F, resp func() *http.Response, seeds []string, ref func([]byte) boundary) {
	for _, s := range seeds {
		f.Add([]byte(s), []byte{0}, uint16(len(s)))
		f.Add([]byte(s), []byte{2, 0, 9, 130}, uint16(len(s)/2))
		f.Add([]byte(s), []byte{255}, uint16(len(s)/3))
	}
	final := finalMessageOf(resp)
	f.Fuzz(func(t *testing.T, data, splits []byte, endAt uint16) {
		passed, atBoundary, tail := fuzzEnd(t, resp(), data, splits, int(endAt))
		if len(tail) != 0 && !bytes.Equal(tail, final) {
			t.Fatalf("after %d bytes: got %q, want nothing or the final message %q", passed, tail, final)
		}
		if (len(tail) != 0) != (atBoundary && len(final) != 0) {
			t.Fatalf("End after %q: got %q, at a boundary %t", data[:passed], tail, atBoundary)
		}
		if want := ref(data[:passed]); want != eitherWay && atBoundary != (want == isBoundary) {
			t.Fatalf("after %q: got at a boundary %t, want %t", data[:passed], atBoundary, want == isBoundary)
		}
		if _, _, whole := fuzzEnd(t, resp(), data[:passed], nil, passed); !bytes.Equal(whole, tail) {
			t.Fatalf("End after %q: got %q when read in pieces, %q when read whole", data[:passed], tail, whole)
		}
	})
}

// finalMessageOf is the final message of resp's protocol at a boundary.
func finalMessageOf(resp func() *http.Response) []byte {
	b := newBodyOver(resp(), http.NoBody)
	b.End(testEnding)
	out, err := io.ReadAll(b)
	if err != nil {
		panic(err)
	}
	return out
}

// fuzzEnd passes data in reads of the sizes splits gives, cycling (one
// read if there are none), ends the stream once at least endAt bytes
// (modulo len(data)+1) have passed, and reads it to its end. It returns
// how many bytes passed before End, whether the tracker had them end at a
// boundary, and what came after them.
func fuzzEnd(t *testing.T, resp *http.Response, data, splits []byte, endAt int) (int, bool, []byte) {
	t.Helper()
	var chunks [][]byte
	for i, rest := 0, data; len(rest) > 0; i++ {
		n := len(rest)
		if len(splits) > 0 {
			n = min(n, int(splits[i%len(splits)])+1)
		}
		chunks = append(chunks, rest[:n])
		rest = rest[n:]
	}
	endAt %= len(data) + 1
	up := &chunkBody{chunks: chunks}
	b := newBodyOver(resp, up)
	var out []byte
	buf := make([]byte, 512)
	for len(out) < endAt {
		n, err := b.Read(buf)
		if err != nil {
			t.Fatalf("Read before End: %v", err)
		}
		out = append(out, buf[:n]...)
	}
	passed := len(out)
	if !bytes.Equal(out, data[:passed]) {
		t.Fatalf("got %q, want the upstream's bytes %q", out, data[:passed])
	}
	atBoundary := b.track.atBoundary()
	b.End(testEnding)
	rest, err := readSmall(b)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Done():
	default:
		t.Fatal("Done not closed after io.EOF")
	}
	return passed, atBoundary, rest
}

func seedsOf(f framing) []string {
	var seeds []string
	for _, tc := range endCases() {
		if newBodyOver(tc.resp(), http.NoBody).track.framing == f {
			seeds = append(seeds, tc.stream())
		}
	}
	return seeds
}

func FuzzEndJSON(f *testing.F) {
	seeds := append(seedsOf(framingJSON), `{"a":1}}`, `1 2 "x" true{}`, `[{"a":"\\"}]`, `{"a":"\u00`, "  \n", `{]`)
	fuzzEnding(f, jsonWatch, seeds, refJSON)
}

// refJSON reads a sequence of JSON values with encoding/json. A sequence
// cut inside a value is not at a boundary; a whole one is, unless it ends
// in a top-level number or literal with nothing after it, which may yet go
// on. Bytes that are not JSON are not judged.
func refJSON(data []byte) boundary {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		switch {
		case err == io.EOF:
			if len(data) == 0 || bytes.IndexByte([]byte("}]\" \t\r\n"), data[len(data)-1]) >= 0 {
				return isBoundary
			}
			return notBoundary
		case errors.Is(err, io.ErrUnexpectedEOF):
			return notBoundary
		case err != nil:
			return eitherWay
		}
	}
}

func FuzzEndProtobuf(f *testing.F) {
	seeds := append(seedsOf(framingProtobuf), "\x00\x00\x00", "\xff\xff\xff\xff\x00", wantProtobufEvent(testEnding))
	fuzzEnding(f, protobufWatch, seeds, func(data []byte) boundary { return refLengthPrefixed(data, 4, 0) })
}

func FuzzEndSPDY(f *testing.F) {
	seeds := append(seedsOf(framingSPDY), "\x80\x03\x00\x07\x00\x00\x00", "\x00\x00\x00\x01\x00\xff\xff\xff")
	fuzzEnding(f, spdy, seeds, func(data []byte) boundary { return refLengthPrefixed(data, 8, 5) })
}

// refLengthPrefixed walks whole frames of a hdrSize-byte header whose
// bytes from lenAt on are the payload's length.
func refLengthPrefixed(data []byte, hdrSize, lenAt int) boundary {
	for len(data) > 0 {
		if len(data) < hdrSize {
			return notBoundary
		}
		var n uint64
		for _, c := range data[lenAt:hdrSize] {
			n = n<<8 | uint64(c)
		}
		data = data[hdrSize:]
		if uint64(len(data)) < n {
			return notBoundary
		}
		data = data[n:]
	}
	return isBoundary
}

func FuzzEndWebSocket(f *testing.F) {
	seeds := append(seedsOf(framingWebSocket),
		wsFrame(true, 0x0, nil, "x"),
		wsFrame(false, 0x9, nil, "x"),
		wsFrame(true, 0x2, nil, "x")+wsFrame(true, 0x8, nil, "\x03\xe8bye"),
		"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00",
		"\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x01x",
		"\x82\xfe\x00\x01\x01\x02\x03\x04x")
	fuzzEnding(f, func() *http.Response { return webSocket("v5.channel.k8s.io") }, seeds, refWebSocket)
}

// refWebSocket walks whole RFC 6455 frames.
func refWebSocket(data []byte) boundary {
	fragmented := false
	for len(data) > 0 {
		if len(data) < 2 {
			return notBoundary
		}
		first, second := data[0], data[1]
		h, n := 2, uint64(second&0x7f)
		switch n {
		case 126:
			h = 4
		case 127:
			h = 10
		}
		if second&0x80 != 0 {
			h += 4
		}
		if len(data) < h {
			return notBoundary
		}
		switch second & 0x7f {
		case 126:
			n = uint64(binary.BigEndian.Uint16(data[2:]))
		case 127:
			n = binary.BigEndian.Uint64(data[2:])
		}
		if n>>63 != 0 {
			return notBoundary // broken: never a boundary again
		}
		data = data[h:]
		if uint64(len(data)) < n {
			return notBoundary
		}
		data = data[n:]
		fin := first&0x80 != 0
		switch first & 0x0f {
		case 0x0:
			if !fragmented {
				return notBoundary
			}
			fragmented = !fin
		case 0x1, 0x2:
			if fragmented {
				return notBoundary
			}
			fragmented = !fin
		case 0x8:
			return notBoundary // nothing may follow a close frame
		case 0x9, 0xa:
			if !fin || n > 125 {
				return notBoundary
			}
		default:
			return notBoundary
		}
	}
	if fragmented {
		return notBoundary
	}
	return isBoundary
}
