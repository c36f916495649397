package kube

import (
	"net/http"
	"path/filepath"
	"testing"
)

// kubectlHeader is what kubectl get pods sends through portcullis-cli's
// exec credential, as the proxy's outgoing request holds it after
// httputil.ReverseProxy has added X-Forwarded-*.
func kubectlHeader() http.Header {
	return http.Header{
		"Accept":            {"application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"},
		"Accept-Encoding":   {"gzip"},
		"Authorization":     {"Bearer Pomerium-eyJhbGciOiJFUzI1NiIsImtpZCI6IjEyMyJ9.eyJpc3MiOiJodHRwczovL2F1dGhlbnRpY2F0ZS5leGFtcGxlLmNvbSIsInN1YiI6ImFsaWNlIiwiZXhwIjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJl"},
		"Kubectl-Command":   {"kubectl get"},
		"Kubectl-Session":   {"5a1c7c55-0b5f-4b5a-9d36-8b6cbe5a0e0c"},
		"User-Agent":        {"kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef0"},
		"X-Forwarded-For":   {"10.1.2.3"},
		"X-Forwarded-Host":  {"k8s.example.com"},
		"X-Forwarded-Proto": {"https"},
	}
}

func BenchmarkRewriteHeaders(b *testing.B) {
	const tok = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9.eyJhdWQiOlsiaHR0cHM6Ly9rdWJlcm5ldGVzLmRlZmF1bHQuc3ZjIl0sInN1YiI6InN5c3RlbTpzZXJ2aWNlYWNjb3VudDpwb21lcml1bTpwb21lcml1bSJ9.c2lnbmF0dXJl"
	groups := []string{"engineering", "sre", "k8s-admins", "oncall", "engineering"}
	tmpl := kubectlHeader()
	b.ReportAllocs()
	for b.Loop() {
		// The proxy works on its own copy of the header, as ReverseProxy
		// does: the clone is part of the cost.
		h := tmpl.Clone()
		StripCredentials(h, "_pomerium")
		if err := (Impersonator{}).Set(h, tok, "alice@example.com", groups); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFileToken(b *testing.B) {
	p := filepath.Join(b.TempDir(), "token")
	writeFile(b, p, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzYSJ9.c2ln")
	ft, err := NewFileToken(p, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ft.Token(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
