package contender

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"time"
)

// DirectContender is no proxy at all: the client talks to the upstream
// itself and sends what a proxy would have sent (the service-account
// token and the Impersonate-* headers), so the upstream does the same work
// for every contender. It is the limit every proxy is measured against.
type DirectContender struct{}

func (DirectContender) Name() string { return Direct }

func (DirectContender) Prepare(context.Context, io.Writer) error { return nil }

func (DirectContender) Start(ctx context.Context, env Env) (*Instance, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(env.Upstream.CAPEM) {
		return nil, errors.New("starting direct: no certificate in the upstream's CA PEM")
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+env.Upstream.Token)
	h.Set("Impersonate-User", env.User)
	for _, g := range env.Groups {
		h.Add("Impersonate-Group", g)
	}
	inst := &Instance{
		Name:   Direct,
		URL:    env.Upstream.URL,
		TLS:    &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}},
		Header: h,
	}
	return inst, WaitServed(ctx, inst, 30*time.Second)
}
