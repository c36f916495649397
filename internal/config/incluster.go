package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// InClusterDir is where Kubernetes mounts a pod's service account: its
// token (projected, rotated by the kubelet), the cluster's CA and the
// namespace. client-go's in-cluster configuration reads the same files.
// A variable only so that tests can mount one elsewhere.
var InClusterDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// inClusterKeys are the route keys kubernetes_in_cluster sets itself.
var inClusterKeys = []string{"to", "tls_custom_ca", "kubernetes_service_account_token", "kubernetes_service_account_token_file"}

// resolveInCluster fills in a kubernetes_in_cluster route from the pod
// Portcullis runs in, exactly where client-go's rest.InClusterConfig looks:
// the API server at https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
// verified with InClusterDir/ca.crt, called with InClusterDir/token (a
// file, so that the rotated token is read again). Whatever is missing is
// reported on the key with what to do about it.
func (l *loader) resolveInCluster(r *Route, loc *routeLoc) {
	if !r.KubernetesInCluster {
		return
	}
	at := loc.keys["kubernetes_in_cluster"]
	ok := true
	for _, k := range inClusterKeys {
		if kat, set := loc.keys[k]; set {
			l.problem(kat, fmt.Sprintf("set together with kubernetes_in_cluster, which finds the cluster's address, CA and token itself: remove %s", k))
			ok = false
		}
	}
	host, _ := l.getenv("KUBERNETES_SERVICE_HOST")
	port, _ := l.getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		loc.failed["kubernetes_in_cluster"] = true
		l.problem(at, "Portcullis is not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set. "+
			"Outside a cluster, set to, tls_custom_ca_file and kubernetes_service_account_token_file instead")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strings.ContainsAny(host, "/@?#[] ") {
		loc.failed["kubernetes_in_cluster"] = true
		l.problem(at, fmt.Sprintf("KUBERNETES_SERVICE_HOST %q and KUBERNETES_SERVICE_PORT %q do not make an address: the pod's environment is not the one Kubernetes sets", host, port))
		return
	}
	token := filepath.Join(InClusterDir, "token")
	if msg := checkInClusterFile(token, "token"); msg != "" {
		l.problem(at, msg)
		ok = false
	}
	caFile := filepath.Join(InClusterDir, "ca.crt")
	ca, err := os.ReadFile(caFile)
	// The cluster's CA can rotate (kube-root-ca.crt): watch it as well.
	l.files = append(l.files, caFile)
	switch {
	case err != nil:
		l.problem(at, checkInClusterFile(caFile, "CA certificate"))
		ok = false
	case firstPEM(ca, func(t string) bool { return t == "CERTIFICATE" }) == nil:
		l.problem(at, fmt.Sprintf("%s holds no PEM certificate: the pod's service-account mount is not the one Kubernetes makes", caFile))
		ok = false
	}
	if !ok {
		loc.failed["kubernetes_in_cluster"] = true
		return
	}
	r.To = []*url.URL{{Scheme: "https", Host: net.JoinHostPort(host, port)}}
	r.TLSCustomCA, r.TLSCustomCAFile = ca, caFile
	r.KubernetesServiceAccountTokenFile = token
}

// checkInClusterFile says what is wrong with one of the pod's
// service-account files, and what to do; "" if it can be read and is not
// empty.
func checkInClusterFile(path, what string) string {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("the pod has no service-account %s at %s: its pod or service account sets automountServiceAccountToken: false. "+
			"Set it to true, or mount a projected token and the cluster's CA and set to, tls_custom_ca_file and kubernetes_service_account_token_file", what, path)
	case err != nil:
		return fmt.Sprintf("reading the pod's service-account %s: %v: Portcullis's user must be able to read it (the pod's fsGroup or runAsUser)", what, err)
	case len(strings.TrimSpace(string(data))) == 0:
		return fmt.Sprintf("the pod's service-account %s at %s is empty", what, path)
	}
	return ""
}
