package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/config"
	"github.com/portcullis-proxy/portcullis/internal/identity"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

const benchFrom = "https://k8s.example.com"

// benchToken mints the Portcullis token kubectl would send for route, the
// way the sign-in service does (see the session package's doc).
func benchToken(tb testing.TB, opts *config.Options, route *config.Route) string {
	tb.Helper()
	keys, err := session.NewKeys(nil, opts.SharedSecret, tokenIssuer(opts))
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := keys.Issue(session.Claims{
		Subject:  "alice-id",
		Email:    "alice@example.com",
		Groups:   []string{"sre", "dev", "k8s-admins"},
		Audience: route.From.Host,
		Expiry:   time.Now().Add(time.Hour),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// kubectlRequest is kubectl get pod web-0 -o json, with its token.
func kubectlRequest(token string) *http.Request {
	r := httptest.NewRequest("GET", benchFrom+"/api/v1/namespaces/default/pods/web-0", nil)
	r.Header = http.Header{
		"Accept":          {"application/json"},
		"Accept-Encoding": {"gzip"},
		"Authorization":   {"Bearer Pomerium-" + token},
		"Kubectl-Command": {"kubectl get"},
		"Kubectl-Session": {"5a1c7c55-0b5f-4b5a-9d36-8b6cbe5a0e0c"},
		"User-Agent":      {"kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef0"},
	}
	r.RemoteAddr = "10.1.2.3:54321"
	return r
}

// discardWriter is a ResponseWriter that keeps nothing, reused across
// iterations so the benchmark measures the server, not a recorder.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}
func (w *discardWriter) Flush() {}
func (w *discardWriter) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

// BenchmarkAuthenticate is authentication's share of every request: find
// the token in the headers, verify it (a P-256 signature, or a hit of the
// server's verified-token cache), and put the Identity in the context.
func BenchmarkAuthenticate(b *testing.B) {
	opts := insecureOptions(b, benchFrom)
	s, err := newServer(opts, nil, infallible(namedRoute))
	if err != nil {
		b.Fatal(err)
	}
	route := &opts.Routes[0]
	req := kubectlRequest(benchToken(b, opts, route))
	var got *identity.Identity
	next := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = identity.FromContext(r.Context()) })

	for _, bb := range []struct {
		name  string
		cache *session.VerifyCache
	}{
		{"uncached", nil},
		{"cached", session.NewVerifyCache(s.keys, 0)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			s.tokens = bb.cache
			h := s.authenticate(route, next)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				got = nil
				h.ServeHTTP(w, req)
				if got == nil || got.Email != "alice@example.com" {
					b.Fatalf("no identity: status %d", w.code)
				}
			}
		})
	}
}

// benchPod is the body of the upstream's answer: a Pod as kube-apiserver
// returns it, about 1.3 KB.
var benchPod = []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-0","namespace":"default",` +
	`"uid":"5a1c7c55-0b5f-4b5a-9d36-8b6cbe5a0e0c","resourceVersion":"12345","creationTimestamp":"2026-05-01T12:00:00Z",` +
	`"labels":{"app":"web","pod-template-hash":"7c5ddbdf54"}},"spec":{"containers":[{"name":"web","image":"nginx:1.27",` +
	`"ports":[{"containerPort":80,"protocol":"TCP"}],"resources":{"limits":{"cpu":"500m","memory":"128Mi"}},` +
	`"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],` +
	`"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"default",` +
	`"nodeName":"kwok-node-0","schedulerName":"default-scheduler"},"status":{"phase":"Running","podIP":"10.244.0.12",` +
	`"startTime":"2026-05-01T12:00:01Z","containerStatuses":[{"name":"web","ready":true,"restartCount":0,` +
	`"image":"nginx:1.27","imageID":"docker.io/library/nginx@sha256:0000","containerID":"containerd://0000","started":true}]}}` + "\n")

// benchAPIServer is a loopback HTTP/2 TLS upstream answering benchPod.
func benchAPIServer(b *testing.B) (*httptest.Server, []byte) {
	b.Helper()
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(benchPod))}
		w.Write(benchPod)
	}))
	up.EnableHTTP2 = true
	up.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	up.StartTLS()
	b.Cleanup(up.Close)
	return up, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})
}

// BenchmarkPipelineKubernetesGET is a whole kubectl GET through the
// server's handler (panic recovery, request id, a JSON access log line,
// metrics, routing, authentication, authorization, the proxy) to a
// loopback HTTP/2 TLS upstream. BenchmarkPipelineDirectGET is its
// baseline: the same request from a client straight to the same upstream.
func BenchmarkPipelineKubernetesGET(b *testing.B) {
	s, token, _ := auditBenchServer(b, false)
	req := kubectlRequest(token)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		serveBench(b, s, w, req)
	}
}

func BenchmarkPipelineDirectGET(b *testing.B) {
	up, caPEM := benchAPIServer(b)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: pool}}
	b.Cleanup(tr.CloseIdleConnections)
	req := kubectlRequest("")
	req.URL = mustURL(b, up.URL+"/api/v1/namespaces/default/pods/web-0")
	req.Host, req.RequestURI = "", ""
	b.ReportAllocs()
	for b.Loop() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || n != int64(len(benchPod)) {
			b.Fatalf("got %s %d with %d bytes, want HTTP/2.0 200 with %d", resp.Proto, resp.StatusCode, n, len(benchPod))
		}
	}
}
