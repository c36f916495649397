package credential

import (
	"encoding/json"
	"fmt"
	"time"
)

// TokenPrefix is put before the JWT in the bearer token kubectl sends, so
// that the request reads `Authorization: Bearer Pomerium-<jwt>`: the form
// Pomerium's guide uses and Portcullis accepts.
const TokenPrefix = "Pomerium-"

// ExecCredential is the object an exec plugin prints for kubectl. Its
// shape is the same in v1 and v1beta1 for the fields used here (see
// k8s.io/client-go/pkg/apis/clientauthentication/v1); this package keeps
// its own copy so that the CLI does not link Kubernetes' API machinery.
type ExecCredential struct {
	Kind       string               `json:"kind"`
	APIVersion string               `json:"apiVersion"`
	Spec       struct{}             `json:"spec"`
	Status     ExecCredentialStatus `json:"status"`
}

// ExecCredentialStatus carries the credential.
type ExecCredentialStatus struct {
	// ExpirationTimestamp is RFC 3339 in UTC to the second, as
	// metav1.Time writes it. kubectl runs the plugin again after it.
	ExpirationTimestamp string `json:"expirationTimestamp"`
	Token               string `json:"token"`
}

// Marshal returns the ExecCredential JSON for apiVersion (one of the two
// ParseExecInfo returns) with the bearer token "Pomerium-<jwt>" that
// expires at expiry. It ends in a newline.
func Marshal(apiVersion, jwt string, expiry time.Time) ([]byte, error) {
	return marshal(apiVersion, TokenPrefix, jwt, expiry)
}

// MarshalDirect is Marshal for direct mode: the bearer token is the bare
// JWT, as kube-apiserver's JWT authenticator takes it.
func MarshalDirect(apiVersion, jwt string, expiry time.Time) ([]byte, error) {
	return marshal(apiVersion, "", jwt, expiry)
}

func marshal(apiVersion, prefix, jwt string, expiry time.Time) ([]byte, error) {
	if apiVersion != APIVersionV1 && apiVersion != APIVersionV1beta1 {
		return nil, fmt.Errorf("writing ExecCredential: unsupported apiVersion %q", apiVersion)
	}
	if jwt == "" {
		return nil, fmt.Errorf("writing ExecCredential: empty token")
	}
	if expiry.IsZero() {
		// kubectl would cache a credential without an expiry for the
		// life of the process; Portcullis tokens always carry exp.
		return nil, fmt.Errorf("writing ExecCredential: the token has no expiry")
	}
	b, err := json.MarshalIndent(ExecCredential{
		Kind:       "ExecCredential",
		APIVersion: apiVersion,
		Status: ExecCredentialStatus{
			ExpirationTimestamp: expiry.UTC().Truncate(time.Second).Format(time.RFC3339),
			Token:               prefix + jwt,
		},
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("writing ExecCredential: %w", err)
	}
	return append(b, '\n'), nil
}
