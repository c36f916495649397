package authenticate

import (
	"context"
	"errors"

	"github.com/portcullis-proxy/portcullis/internal/session"
)

// purposeReviewedSession seals a session's id into the kubernetes_session
// claim of its tokens (tokenClaims). In direct mode kube-apiserver copies
// the claim into the user's extra and sends it back in every
// SubjectAccessReview it asks Portcullis for; sealed, the id is of no use
// to whoever reads the cluster's audit log, where extras are recorded.
const purposeReviewedSession = "portcullis reviewed session"

// ErrBadSessionReference is the refusal of a review whose session
// reference was not sealed by this Portcullis, or is past the session's
// expiry.
var ErrBadSessionReference = errors.New("the Portcullis session reference is not valid: sign in again")

// ReviewedSession returns the live session a kubernetes_session claim
// names, renewed with the provider if it is due, as a request with the
// token would find it (Identify): ErrBadSessionReference for a reference
// that does not open, ErrSessionEnded for a session that ended (signed
// out, expired, revoked), ErrStoreUnavailable if the store cannot say.
func (a *Authenticator) ReviewedSession(ctx context.Context, ref string) (*session.Session, error) {
	sid, err := a.opts.Sealer.Open(purposeReviewedSession, ref, a.now())
	if err != nil {
		if errors.Is(err, session.ErrSealedExpired) {
			return nil, ErrSessionEnded
		}
		return nil, ErrBadSessionReference
	}
	return a.liveSession(ctx, string(sid))
}
