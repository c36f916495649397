package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// The per-request cost of the proxy, measured against the same work done
// without it in the same run, so that the ratio holds on a busy machine:
//
//   - stub: the upstream is an http.RoundTripper answering from memory,
//     so ProxyKubernetesGET/stub is the proxy's own work (identity check,
//     rewrite, the ReverseProxy, copying the response) and
//     DirectGET/stub is the stub alone;
//   - loopback-h2: the upstream is an httptest TLS server on 127.0.0.1
//     speaking HTTP/2, as kube-apiserver does; DirectGET/loopback-h2 is a
//     client with the proxy's own transport calling it directly.
//
// The body is a Pod as kube-apiserver returns it for kubectl get pod -o json.

var benchPodJSON = []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-0","namespace":"default",` +
	`"uid":"5a1c7c55-0b5f-4b5a-9d36-8b6cbe5a0e0c","resourceVersion":"12345","creationTimestamp":"2026-05-01T12:00:00Z",` +
	`"labels":{"app":"web","pod-template-hash":"7c5ddbdf54"}},"spec":{"containers":[{"name":"web","image":"nginx:1.27",` +
	`"ports":[{"containerPort":80,"protocol":"TCP"}],"resources":{"limits":{"cpu":"500m","memory":"128Mi"}},` +
	`"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],` +
	`"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"default",` +
	`"nodeName":"kwok-node-0","schedulerName":"default-scheduler"},"status":{"phase":"Running","podIP":"10.244.0.12",` +
	`"startTime":"2026-05-01T12:00:01Z","containerStatuses":[{"name":"web","ready":true,"restartCount":0,` +
	`"image":"nginx:1.27","imageID":"docker.io/library/nginx@sha256:0000","containerID":"containerd://0000","started":true}]}}` + "\n")

// kubectlGET is the request kubectl get pod web-0 -o json sends through
// portcullis-cli's exec credential.
func kubectlGET(target string) *http.Request {
	r := httptest.NewRequest("GET", target+"/api/v1/namespaces/default/pods/web-0", nil)
	r.Header = http.Header{
		"Accept":          {"application/json"},
		"Accept-Encoding": {"gzip"},
		"Authorization":   {"Bearer Pomerium-eyJhbGciOiJFUzI1NiIsImtpZCI6IjEyMyJ9.eyJpc3MiOiJodHRwczovL2F1dGhlbnRpY2F0ZS5leGFtcGxlLmNvbSIsInN1YiI6ImFsaWNlIiwiZXhwIjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJl"},
		"Kubectl-Command": {"kubectl get"},
		"Kubectl-Session": {"5a1c7c55-0b5f-4b5a-9d36-8b6cbe5a0e0c"},
		"User-Agent":      {"kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef0"},
	}
	r.RemoteAddr = "10.1.2.3:54321"
	return r
}

// stubUpstream answers every request with benchPodJSON, as an HTTP/2
// kube-apiserver would, without a network.
type stubUpstream struct{}

func (stubUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close() // the RoundTripper contract
	}
	return &http.Response{
		Status:     "200 OK",
		StatusCode: http.StatusOK,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header: http.Header{
			"Audit-Id":       {"2f4f2b1c-6c1d-4c0b-9f4e-3c1f1f1d2e3a"},
			"Cache-Control":  {"no-cache, private"},
			"Content-Type":   {"application/json"},
			"Content-Length": {strconv.Itoa(len(benchPodJSON))},
		},
		Body:          io.NopCloser(bytes.NewReader(benchPodJSON)),
		ContentLength: int64(len(benchPodJSON)),
		Request:       r,
	}, nil
}

// benchUpstream is a loopback HTTP/2 TLS server answering benchPodJSON;
// unlike newUpstream it records nothing, so it does not grow.
func benchUpstream(b *testing.B) *httptest.Server {
	b.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(benchPodJSON))}
		w.Write(benchPodJSON)
	}))
	s.EnableHTTP2 = true
	s.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	s.StartTLS()
	b.Cleanup(s.Close)
	return s
}

// discardWriter is a ResponseWriter that keeps nothing, reused across
// iterations so the benchmark measures the proxy, not a recorder.
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

func BenchmarkProxyKubernetesGET(b *testing.B) {
	run := func(b *testing.B, p *Proxy) {
		req := withIdentity(kubectlGET(testFrom), alice())
		w := &discardWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			w.reset()
			p.ServeHTTP(w, req)
			if w.code != http.StatusOK || w.n != len(benchPodJSON) {
				b.Fatalf("got %d with %d bytes, want 200 with %d", w.code, w.n, len(benchPodJSON))
			}
		}
	}
	b.Run("stub", func(b *testing.B) {
		p := newProxy(b, kubeRoute(b, "https://127.0.0.1:6443"))
		p.targets.rt = stubUpstream{} // keeps failover and requireImpersonation in the path
		run(b, p)
	})
	b.Run("loopback-h2", func(b *testing.B) {
		up := benchUpstream(b)
		run(b, newProxy(b, kubeRoute(b, up.URL)))
	})
}

// BenchmarkDirectGET is the baseline of BenchmarkProxyKubernetesGET: the
// same request to the same upstream, with no proxy.
func BenchmarkDirectGET(b *testing.B) {
	run := func(b *testing.B, rt http.RoundTripper, target string) {
		req := kubectlGET(target)
		req.RequestURI = "" // a client request
		b.ReportAllocs()
		for b.Loop() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || n != int64(len(benchPodJSON)) {
				b.Fatalf("got %s %d with %d bytes, want HTTP/2.0 200 with %d", resp.Proto, resp.StatusCode, n, len(benchPodJSON))
			}
		}
	}
	b.Run("stub", func(b *testing.B) {
		run(b, stubUpstream{}, "https://127.0.0.1:6443")
	})
	b.Run("loopback-h2", func(b *testing.B) {
		up := benchUpstream(b)
		tlsConfig, err := upstreamTLS(kubeRoute(b, up.URL))
		if err != nil {
			b.Fatal(err)
		}
		h2, _ := newTransports(tlsConfig) // the proxy's own transport
		b.Cleanup(h2.CloseIdleConnections)
		run(b, h2, up.URL)
	})
}
