package credential

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// jwtWith builds an unsigned compact JWT around payload.
func jwtWith(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(payload)) + "." + enc([]byte("sig"))
}

func TestParseToken(t *testing.T) {
	tests := []struct {
		name       string
		raw        string
		wantExpiry time.Time
		wantEmail  string
		wantErr    bool
	}{
		{name: "Portcullis token", raw: goldenJWT, wantExpiry: time.Unix(1795838400, 0), wantEmail: "someuser@example.com"},
		{name: "no email", raw: jwtWith(`{"exp":1795838400}`), wantExpiry: time.Unix(1795838400, 0)},
		{name: "fractional exp", raw: jwtWith(`{"exp":1795838400.5}`), wantExpiry: time.Unix(1795838400, 5e8)},
		{name: "exponent", raw: jwtWith(`{"exp":1.7958384e9}`), wantExpiry: time.Unix(1795838400, 0)},
		{name: "padded payload", raw: paddedJWT(`{"exp":1795838400}`), wantExpiry: time.Unix(1795838400, 0)},
		{name: "no exp", raw: jwtWith(`{"email":"a@example.com"}`), wantErr: true},
		{name: "exp null", raw: jwtWith(`{"exp":null}`), wantErr: true},
		{name: "exp as string", raw: jwtWith(`{"exp":"1795838400"}`), wantErr: true},
		{name: "exp zero", raw: jwtWith(`{"exp":0}`), wantErr: true},
		{name: "exp negative", raw: jwtWith(`{"exp":-5}`), wantErr: true},
		{name: "exp absurd", raw: jwtWith(`{"exp":1e300}`), wantErr: true},
		{name: "exp object", raw: jwtWith(`{"exp":{}}`), wantErr: true},
		{name: "payload array", raw: jwtWith(`[{"exp":1795838400}]`), wantErr: true},
		{name: "payload not JSON", raw: jwtWith(`exp=1795838400`), wantErr: true},
		{name: "payload not base64url", raw: "a.b*c.d", wantErr: true},
		{name: "standard base64 alphabet", raw: "a." + base64.StdEncoding.EncodeToString([]byte(`{"exp":1795838400,"x":"??>"}`)) + ".c", wantErr: true},
		{name: "two parts", raw: "a.b", wantErr: true},
		{name: "four parts", raw: jwtWith(`{"exp":1795838400}`) + ".d", wantErr: true},
		{name: "empty", raw: "", wantErr: true},
		{name: "huge", raw: jwtWith(`{"exp":1795838400,"x":"` + strings.Repeat("a", maxToken) + `"}`), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseToken(tt.raw)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformedToken) {
					t.Fatalf("got %+v, %v, want ErrMalformedToken", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Expiry.Equal(tt.wantExpiry) || got.Email != tt.wantEmail || got.Raw != tt.raw {
				t.Errorf("got expiry %v email %q, want %v %q", got.Expiry, got.Email, tt.wantExpiry, tt.wantEmail)
			}
		})
	}
}

func paddedJWT(payload string) string {
	enc := base64.URLEncoding.EncodeToString // with padding
	return enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(payload)) + "." + enc([]byte("sig"))
}

func TestTokenValidFor(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tok := Token{Expiry: now.Add(2 * time.Minute)}
	if !tok.ValidFor(now, time.Minute) {
		t.Errorf("2 minutes left: got not valid for 1 minute, want valid")
	}
	if tok.ValidFor(now.Add(time.Minute), time.Minute) {
		t.Errorf("exactly 1 minute left: got valid for 1 minute, want not (renew before the last minute)")
	}
	if (Token{}).ValidFor(now, 0) {
		t.Errorf("no expiry: got valid, want not")
	}
}
