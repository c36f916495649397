package postgres

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/session"
)

// sealPurpose is the associated data of a session row's seal, so that a
// row's data opens as nothing else, and nothing else as a row.
const sealPurpose = "portcullis session store"

// sealChunk is the most JSON sealed in one part. session.Sealer opens at
// most 4096 characters (a cookie's size), that is 3072 bytes, less its
// nonce, tag and expiry (36); a session with many claims and an identity
// provider's tokens is larger than that, so a row holds as many parts as it
// needs, joined by ".", which base64url never contains.
const sealChunk = 3000

// seal returns sess as the data of the row h: its JSON, without the ID
// (which the row holds only as its hash), sealed with the session's expiry.
// Each part's purpose names the row, the part and how many there are, so
// a part moved to another row or place, or a row cut short, does not open.
func (s *Store) seal(h string, sess *session.Session) (string, error) {
	c := *sess
	c.ID = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encoding the session: %w", err)
	}
	n := (len(b) + sealChunk - 1) / sealChunk
	parts := make([]string, 0, n)
	for i := range n {
		part := b[i*sealChunk : min((i+1)*sealChunk, len(b))]
		parts = append(parts, s.opts.Sealer.Seal(partPurpose(h, i, n), part, sess.ExpiresAt))
	}
	return strings.Join(parts, "."), nil
}

// unseal opens the data of the row h.
func (s *Store) unseal(h, data string) (*session.Session, error) {
	parts := strings.Split(data, ".")
	var b []byte
	now := time.Now()
	for i, p := range parts {
		part, err := s.opts.Sealer.Open(partPurpose(h, i, len(parts)), p, now)
		if err != nil {
			return nil, fmt.Errorf("opening the session's data: %w", err)
		}
		b = append(b, part...)
	}
	var sess session.Session
	if err := json.Unmarshal(b, &sess); err != nil {
		return nil, fmt.Errorf("decoding the session's data: %w", err)
	}
	return &sess, nil
}

func partPurpose(h string, i, n int) string {
	return fmt.Sprintf("%s %s %d/%d", sealPurpose, h, i+1, n)
}
