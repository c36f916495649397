package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestInCluster loads kubernetes_in_cluster routes in a made-up pod: the
// route gets the address, CA and token file client-go's in-cluster
// configuration would use, and each thing a pod can lack is reported on the
// key with what to do.
func TestInCluster(t *testing.T) {
	caPEM := readTestdata(t, "guide-cert.pem")
	const route = "routes:\n  - from: https://k8s.example.com\n    kubernetes_in_cluster: true\n    allow_any_authenticated_user: true\n"
	inPod := env{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	tests := []struct {
		name  string
		file  string
		env   env
		mount map[string]string // files in the service-account directory; nil: no directory
		want  []string          // problems; none: the route resolves
	}{
		{name: "in a pod", file: route, env: inPod, mount: map[string]string{"token": "eyJ.token", "ca.crt": caPEM}},
		{name: "IPv6 service address", file: route, env: env{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"},
			mount: map[string]string{"token": "eyJ.token", "ca.crt": caPEM}},
		{name: "not in a pod", file: route, env: env{}, mount: map[string]string{"token": "eyJ.token", "ca.crt": caPEM},
			want: []string{"config.yaml:3: routes[0].kubernetes_in_cluster: Portcullis is not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set. Outside a cluster, set to, tls_custom_ca_file and kubernetes_service_account_token_file instead"}},
		{name: "token not mounted", file: route, env: inPod,
			want: []string{
				"config.yaml:3: routes[0].kubernetes_in_cluster: the pod has no service-account token at DIR/token: its pod or service account sets automountServiceAccountToken: false. Set it to true, or mount a projected token and the cluster's CA and set to, tls_custom_ca_file and kubernetes_service_account_token_file",
				"config.yaml:3: routes[0].kubernetes_in_cluster: the pod has no service-account CA certificate at DIR/ca.crt: its pod or service account sets automountServiceAccountToken: false. Set it to true, or mount a projected token and the cluster's CA and set to, tls_custom_ca_file and kubernetes_service_account_token_file",
			}},
		{name: "empty token and a CA that is not PEM", file: route, env: inPod, mount: map[string]string{"token": "\n", "ca.crt": "nope"},
			want: []string{
				"config.yaml:3: routes[0].kubernetes_in_cluster: the pod's service-account token at DIR/token is empty",
				"config.yaml:3: routes[0].kubernetes_in_cluster: DIR/ca.crt holds no PEM certificate: the pod's service-account mount is not the one Kubernetes makes",
			}},
		{name: "a bad service address", file: route, env: env{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "https"},
			mount: map[string]string{"token": "eyJ.token", "ca.crt": caPEM},
			want:  []string{`config.yaml:3: routes[0].kubernetes_in_cluster: KUBERNETES_SERVICE_HOST "10.96.0.1" and KUBERNETES_SERVICE_PORT "https" do not make an address: the pod's environment is not the one Kubernetes sets`}},
		{name: "with its own address and token",
			file: "routes:\n  - from: https://k8s.example.com\n    to: https://kubernetes.default.svc\n    kubernetes_in_cluster: true\n    kubernetes_service_account_token_file: /token\n",
			env:  inPod, mount: map[string]string{"token": "eyJ.token", "ca.crt": caPEM},
			want: []string{
				"config.yaml:3: routes[0].to: set together with kubernetes_in_cluster, which finds the cluster's address, CA and token itself: remove to",
				"config.yaml:5: routes[0].kubernetes_service_account_token_file: set together with kubernetes_in_cluster, which finds the cluster's address, CA and token itself: remove kubernetes_service_account_token_file",
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "serviceaccount")
			if tc.mount != nil {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				for name, content := range tc.mount {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			old := InClusterDir
			InClusterDir = dir
			t.Cleanup(func() { InClusterDir = old })

			o, err := load("config.yaml", tc.env.lookup, configFile("config.yaml", tc.file))
			var got []string
			for _, p := range Problems(err) {
				got = append(got, strings.ReplaceAll(p.Error(), dir, "DIR"))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("problems (-want +got):\n%s", diff)
			}
			if len(tc.want) != 0 {
				return
			}
			r := o.Routes[0]
			wantTo := "https://" + map[string]string{"10.96.0.1": "10.96.0.1:443", "fd00::1": "[fd00::1]:443"}[tc.env["KUBERNETES_SERVICE_HOST"]]
			if len(r.To) != 1 || r.To[0].String() != wantTo || r.TLSCustomCAFile != filepath.Join(dir, "ca.crt") ||
				string(r.TLSCustomCA) != caPEM || r.KubernetesServiceAccountTokenFile != filepath.Join(dir, "token") {
				t.Errorf("route: to %v, CA file %q, token file %q; want %s and the mounted CA and token", r.To, r.TLSCustomCAFile, r.KubernetesServiceAccountTokenFile, wantTo)
			}
			// A Kubernetes route, with a Kubernetes route's defaults.
			if !r.IsKubernetes() || !r.AllowSPDY || !r.AllowWebsockets || r.Timeout != 0 {
				t.Errorf("route is not a Kubernetes route with its defaults: %+v", r)
			}
			if s := o.Summary(); !strings.Contains(s, "in-cluster") {
				t.Errorf("summary does not say the route is in-cluster:\n%s", s)
			}
		})
	}
}
