package credential

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// The ExecCredential API versions portcullis-cli speaks. kubectl sends the
// one the kubeconfig's exec stanza names, and expects the answer in it.
const (
	APIVersionV1      = "client.authentication.k8s.io/v1"
	APIVersionV1beta1 = "client.authentication.k8s.io/v1beta1"
)

// maxExecInfo bounds KUBERNETES_EXEC_INFO. kubectl puts the cluster's
// details in it only with provideClusterInfo (certificate authority data,
// a few kilobytes); 1 MiB is far above anything real.
const maxExecInfo = 1 << 20

// ExecInfo is what portcullis-cli needs from KUBERNETES_EXEC_INFO.
type ExecInfo struct {
	// APIVersion is the ExecCredential version to answer in.
	APIVersion string
	// Interactive reports whether kubectl gave the plugin a terminal.
	// A browser sign-in does not need one, so it is informational.
	Interactive bool
}

// execInfo is the part of the ExecCredential kubectl sends that is read.
type execInfo struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Spec       struct {
		Interactive bool `json:"interactive"`
	} `json:"spec"`
}

// ParseExecInfo reads the value of KUBERNETES_EXEC_INFO. An empty value
// means portcullis-cli was run by hand, not by kubectl: the answer is then
// in client.authentication.k8s.io/v1, the version `k8s setup` configures.
// Any version other than v1 and v1beta1 is an error that says what to put
// in the kubeconfig; kubectl would reject an answer in another version.
func ParseExecInfo(raw string) (ExecInfo, error) {
	if strings.TrimSpace(raw) == "" {
		return ExecInfo{APIVersion: APIVersionV1}, nil
	}
	if len(raw) > maxExecInfo {
		return ExecInfo{}, fmt.Errorf("reading KUBERNETES_EXEC_INFO: %d bytes, more than the %d accepted", len(raw), maxExecInfo)
	}
	var in execInfo
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		return ExecInfo{}, fmt.Errorf("reading KUBERNETES_EXEC_INFO: not an ExecCredential in JSON: %w", err)
	}
	if in.Kind != "ExecCredential" {
		return ExecInfo{}, fmt.Errorf("reading KUBERNETES_EXEC_INFO: kind is %q, want \"ExecCredential\"", in.Kind)
	}
	switch in.APIVersion {
	case APIVersionV1, APIVersionV1beta1:
		return ExecInfo{APIVersion: in.APIVersion, Interactive: in.Spec.Interactive}, nil
	case "":
		return ExecInfo{}, errors.New("reading KUBERNETES_EXEC_INFO: no apiVersion; set apiVersion: " + APIVersionV1 + " in the exec section of the kubeconfig user")
	default:
		return ExecInfo{}, fmt.Errorf("reading KUBERNETES_EXEC_INFO: kubectl asks for ExecCredential %q, but portcullis-cli speaks only %s and %s; "+
			"set apiVersion: %s in the exec section of the kubeconfig user (portcullis-cli k8s setup writes it)",
			in.APIVersion, APIVersionV1, APIVersionV1beta1, APIVersionV1)
	}
}
