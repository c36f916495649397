package session

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

// BenchmarkVerify is the per-request cost of a bearer token: every kubectl
// call carries one.
func BenchmarkVerify(b *testing.B) {
	for _, bb := range []struct {
		name string
		keys *Keys
	}{
		{"ES256", derivedKeys(b)},
		{"RS256", rsaKeys(b)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			tok := issue(b, bb.keys, validClaims())
			now := testNow.Add(time.Second)
			b.ReportAllocs()
			b.SetBytes(int64(len(tok)))
			for b.Loop() {
				if _, err := bb.keys.Verify(tok, testAudience, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// Garbage must be cheap: refused before any signature check.
	b.Run("refused-unknown-kid", func(b *testing.B) {
		k := derivedKeys(b)
		other := newTestKeys(b, sec1PEM(b, fixtures().otherEC), nil)
		tok := issue(b, other, validClaims())
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Verify(tok, testAudience, testNow); !errors.Is(err, ErrUnknownKey) {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkTokenFromRequest(b *testing.B) {
	tok := issue(b, derivedKeys(b), validClaims())
	h := http.Header{
		"Authorization":   {"Bearer Pomerium-" + tok},
		"Accept":          {"application/json"},
		"User-Agent":      {"kubectl/v1.37.2 (linux/amd64) kubernetes/0000000"},
		"Accept-Encoding": {"gzip"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := TokenFromRequest(h); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	k := derivedKeys(b)
	c := validClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Issue(c); err != nil {
			b.Fatal(err)
		}
	}
}
