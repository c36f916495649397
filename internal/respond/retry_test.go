package respond

import (
	"net/http"
	"testing"
	"time"
)

func TestInWords(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{d: time.Millisecond, want: "1 second"},
		{d: time.Second, want: "1 second"},
		{d: 1500 * time.Millisecond, want: "2 seconds"},
		{d: 59 * time.Second, want: "59 seconds"},
		{d: time.Minute, want: "1 minute"},
		{d: 61 * time.Second, want: "2 minutes"},
		{d: 15 * time.Minute, want: "15 minutes"},
	}
	for _, tt := range tests {
		if got := InWords(tt.d); got != tt.want {
			t.Errorf("InWords(%v): got %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{d: 0, want: "1"},
		{d: time.Millisecond, want: "1"},
		{d: 2 * time.Second, want: "2"},
		{d: 2*time.Second + time.Nanosecond, want: "3"},
		{d: 15 * time.Minute, want: "900"},
	}
	for _, tt := range tests {
		h := http.Header{}
		RetryAfter(h, tt.d)
		if got := h.Get("Retry-After"); got != tt.want {
			t.Errorf("RetryAfter(%v): got %q, want %q", tt.d, got, tt.want)
		}
	}
}
