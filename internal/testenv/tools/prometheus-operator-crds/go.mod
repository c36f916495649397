// The Prometheus Operator's CustomResourceDefinitions, as data: the chart
// tests in deploy/helm install them so that the kube-apiserver checks a
// rendered ServiceMonitor against its real schema. Nothing here is built or
// imported, so `go mod tidy` would drop the requirement: do not run it
// here. Newer CRDs are a newer pin:
//
//	go mod edit -require=github.com/prometheus-operator/prometheus-operator@VERSION && go mod download github.com/prometheus-operator/prometheus-operator
module github.com/portcullis-proxy/portcullis/internal/testenv/tools/prometheus-operator-crds

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
