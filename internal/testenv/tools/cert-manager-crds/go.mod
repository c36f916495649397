// cert-manager's CustomResourceDefinitions, as data: the chart tests in
// deploy/helm install them so that the kube-apiserver checks a rendered
// Certificate against its real schema. Nothing here is built or imported,
// so `go mod tidy` would drop the requirement: do not run it here. Newer
// CRDs are a newer pin:
//
//	go mod edit -require=github.com/cert-manager/cert-manager@VERSION && go mod download github.com/cert-manager/cert-manager
module github.com/portcullis-proxy/portcullis/internal/testenv/tools/cert-manager-crds

go 1.26.0

require github.com/cert-manager/cert-manager v1.21.2
