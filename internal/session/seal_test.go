package session

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSealer(t *testing.T) {
	s, err := NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	sealed := s.Seal("_pomerium", []byte("session-123"), now.Add(time.Hour))
	got, err := s.Open("_pomerium", sealed, now)
	if err != nil || string(got) != "session-123" {
		t.Fatalf("Open: got %q, %v; want session-123", got, err)
	}
	other, _ := NewSealer(bytes.Repeat([]byte{8}, 32))
	flipped := []byte(sealed)
	flipped[len(flipped)/2] ^= 1
	for _, tc := range []struct {
		name    string
		open    func() ([]byte, error)
		wantErr error
	}{
		{"expired", func() ([]byte, error) { return s.Open("_pomerium", sealed, now.Add(2*time.Hour)) }, ErrSealedExpired},
		{"other purpose", func() ([]byte, error) { return s.Open("_csrf", sealed, now) }, ErrSealedInvalid},
		{"other key (rotated secret)", func() ([]byte, error) { return other.Open("_pomerium", sealed, now) }, ErrSealedInvalid},
		{"tampered", func() ([]byte, error) { return s.Open("_pomerium", string(flipped), now) }, ErrSealedInvalid},
		{"truncated", func() ([]byte, error) { return s.Open("_pomerium", sealed[:10], now) }, ErrSealedInvalid},
		{"not base64", func() ([]byte, error) { return s.Open("_pomerium", "%%%", now) }, ErrSealedInvalid},
		{"huge", func() ([]byte, error) { return s.Open("_pomerium", strings.Repeat("A", 5000), now) }, ErrSealedInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.open(); !errors.Is(err, tc.wantErr) {
				t.Errorf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
	if _, err := NewSealer(make([]byte, 16)); err == nil {
		t.Error("NewSealer with a 16-byte key: got no error")
	}
}

func FuzzOpen(f *testing.F) {
	s, _ := NewSealer(bytes.Repeat([]byte{7}, 32))
	f.Add(s.Seal("p", []byte("v"), time.Now().Add(time.Hour)))
	f.Add("")
	f.Fuzz(func(t *testing.T, sealed string) {
		if v, err := s.Open("p", sealed, time.Now()); err == nil && string(v) != "v" {
			t.Fatalf("opened a forged value %q", v)
		}
	})
}

func TestMemoryStore(t *testing.T) {
	m := NewMemoryStore()
	now := time.Unix(1_800_000_000, 0)
	m.Now = func() time.Time { return now }
	ctx := t.Context()
	sess := &Session{ID: NewSessionID(), Email: "a@example.com", Groups: []string{"dev"}, ExpiresAt: now.Add(time.Hour)}
	if err := m.Put(ctx, sess); err != nil {
		t.Fatal(err)
	}
	sess.Groups[0] = "changed after Put"
	got, err := m.Get(ctx, sess.ID)
	if err != nil || got.Email != "a@example.com" || got.Groups[0] != "dev" {
		t.Fatalf("Get: got %+v, %v", got, err)
	}
	now = now.Add(2 * time.Hour)
	if _, err := m.Get(ctx, sess.ID); !errors.Is(err, ErrNoSession) {
		t.Errorf("Get after expiry: got %v, want ErrNoSession", err)
	}
	now = now.Add(-2 * time.Hour)
	m.Delete(ctx, sess.ID)
	if _, err := m.Get(ctx, sess.ID); !errors.Is(err, ErrNoSession) {
		t.Errorf("Get after Delete: got %v, want ErrNoSession", err)
	}
}
