package respond

import (
	"fmt"
	"net/http"
	"time"
)

// RetryAfter tells the client, by a Retry-After header, to wait d before
// trying again: whole seconds, rounded up, at least one (RFC 9110 section
// 10.2.3). kubectl and client-go honour it on 429 and 503.
func RetryAfter(h http.Header, d time.Duration) {
	h.Set("Retry-After", fmt.Sprint(max(int64((d+time.Second-1)/time.Second), 1)))
}

// InWords says d for a person, rounded up to a whole second: "1 second",
// "40 seconds", "2 minutes".
func InWords(d time.Duration) string {
	switch s := int64((d + time.Second - 1) / time.Second); {
	case s <= 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	case s <= 60:
		return "1 minute"
	default:
		return fmt.Sprintf("%d minutes", (s+59)/60)
	}
}
