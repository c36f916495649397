package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/kube"
)

// impersonationReviews decides kubectl --as for a Kubernetes route: may the
// person act as the user and groups they asked for? It asks kube-apiserver
// the questions its own impersonation filter would ask (kube.Requested's
// Reviews), as the person: a SelfSubjectAccessReview sent with the service
// account's token and the person's Impersonate-* headers. RBAC answers for
// the person, and the service account needs no right beyond the
// impersonation it has; everyone may create a SelfSubjectAccessReview
// (system:basic-user).
//
// Answers are kept for reviewTTL, so that the requests of one kubectl
// command ask once; a binding removed in the cluster takes effect within
// that time, as RBAC's own caches take a moment too.
type impersonationReviews struct {
	rt     http.RoundTripper
	target func() *url.URL
	imp    kube.Impersonator

	mu    sync.Mutex
	cache map[reviewKey]reviewAnswer
}

const (
	reviewTTL = 10 * time.Second
	// reviewCacheMax bounds the answers kept; past it the cache starts
	// again empty. Each key is a person and a name they asked for, both
	// bounded in size by the header limits.
	reviewCacheMax = 4096
	// reviewTimeout bounds one question to kube-apiserver.
	reviewTimeout = 10 * time.Second
	// reviewMaxBody bounds the answer read: a review's status is small.
	reviewMaxBody = 1 << 20
)

type reviewKey struct {
	person string // email and groups, as impersonated for the review
	attrs  kube.ReviewAttributes
}

type reviewAnswer struct {
	allowed bool
	reason  string
	until   time.Time
}

// impersonationDenied is RBAC's refusal of one of the person's requested
// impersonations.
type impersonationDenied struct {
	person string
	attrs  kube.ReviewAttributes
	reason string
}

func (e *impersonationDenied) Error() string {
	what := strings.TrimSuffix(e.attrs.Resource, "s") // users → user, groups → group
	name := e.attrs.Name
	if e.attrs.Resource == "serviceaccounts" {
		what, name = "service account", e.attrs.Namespace+"/"+e.attrs.Name
	}
	msg := fmt.Sprintf("%s may not impersonate %s %q: the cluster's RBAC does not allow it", e.person, what, name)
	if e.reason != "" {
		msg += " (" + e.reason + ")"
	}
	return msg
}

// allow returns nil when RBAC lets the person id impersonate everything
// req asks for, an *impersonationDenied when it does not, and another
// error when the cluster could not be asked (the request is then refused:
// no answer is not a yes).
func (v *impersonationReviews) allow(ctx context.Context, id *identity.Identity, saToken string, req kube.Requested) error {
	user, groups := id.Kubernetes() // the person as the cluster's RBAC knows them
	person := user + "\x00" + strings.Join(groups, "\x00")
	now := time.Now()
	for _, attrs := range req.Reviews() {
		key := reviewKey{person: person, attrs: attrs}
		v.mu.Lock()
		ans, ok := v.cache[key]
		v.mu.Unlock()
		if !ok || now.After(ans.until) {
			var err error
			if ans, err = v.ask(ctx, id, saToken, attrs); err != nil {
				return err
			}
			ans.until = now.Add(reviewTTL)
			v.mu.Lock()
			if v.cache == nil || len(v.cache) >= reviewCacheMax {
				v.cache = make(map[reviewKey]reviewAnswer)
			}
			v.cache[key] = ans
			v.mu.Unlock()
		}
		if !ans.allowed {
			return &impersonationDenied{person: id.Email, attrs: attrs, reason: ans.reason}
		}
	}
	return nil
}

// ask sends one SelfSubjectAccessReview as the person.
func (v *impersonationReviews) ask(ctx context.Context, id *identity.Identity, saToken string, attrs kube.ReviewAttributes) (reviewAnswer, error) {
	body, err := json.Marshal(map[string]any{
		"apiVersion": "authorization.k8s.io/v1",
		"kind":       "SelfSubjectAccessReview",
		"spec":       map[string]any{"resourceAttributes": attrs},
	})
	if err != nil {
		return reviewAnswer{}, err
	}
	u := *v.target()
	u.Path = strings.TrimSuffix(u.Path, "/") + "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
	u.RawPath = ""
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return reviewAnswer{}, err
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	// As the person: the question is what *they* may do.
	user, groups := id.Kubernetes()
	if err := v.imp.Set(r.Header, saToken, user, groups); err != nil {
		return reviewAnswer{}, err
	}
	resp, err := v.rt.RoundTrip(r)
	if err != nil {
		return reviewAnswer{}, fmt.Errorf("asking the cluster whether you may impersonate: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, reviewMaxBody))
	if err != nil {
		return reviewAnswer{}, fmt.Errorf("asking the cluster whether you may impersonate: reading its answer: %w", err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return reviewAnswer{}, fmt.Errorf("asking the cluster whether you may impersonate: it answered %s", resp.Status)
	}
	var review struct {
		Status struct {
			Allowed bool   `json:"allowed"`
			Denied  bool   `json:"denied"`
			Reason  string `json:"reason"`
		} `json:"status"`
	}
	if err := json.Unmarshal(b, &review); err != nil {
		return reviewAnswer{}, fmt.Errorf("asking the cluster whether you may impersonate: its answer is not a SelfSubjectAccessReview: %w", err)
	}
	return reviewAnswer{allowed: review.Status.Allowed && !review.Status.Denied, reason: review.Status.Reason}, nil
}

// errorIsDenial tells a refusal by RBAC from a failure to ask.
func errorIsDenial(err error) bool {
	var d *impersonationDenied
	return errors.As(err, &d)
}
