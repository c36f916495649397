package credential

import (
	"strings"
	"testing"
)

func TestParseExecInfo(t *testing.T) {
	tests := []struct {
		name        string
		raw         string
		want        ExecInfo
		wantErrText string // a substring of the error; "" for no error
	}{
		{
			name: "v1 from kubectl 1.37, interactive",
			raw:  `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":true}}`,
			want: ExecInfo{APIVersion: APIVersionV1, Interactive: true},
		},
		{
			name: "v1 without a terminal",
			raw:  `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}`,
			want: ExecInfo{APIVersion: APIVersionV1},
		},
		{
			name: "v1beta1",
			raw:  `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":true}}`,
			want: ExecInfo{APIVersion: APIVersionV1beta1, Interactive: true},
		},
		{
			name: "v1 with cluster info (provideClusterInfo: true)",
			raw: `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"cluster":{"server":"https://k8s.example.com",` +
				`"certificate-authority-data":"LS0t","config":null},"interactive":false}}`,
			want: ExecInfo{APIVersion: APIVersionV1},
		},
		{
			name: "unset: run by hand, answer in v1",
			raw:  "",
			want: ExecInfo{APIVersion: APIVersionV1},
		},
		{
			name: "blank",
			raw:  "  \n",
			want: ExecInfo{APIVersion: APIVersionV1},
		},
		{
			name:        "v1alpha1 (removed from kubectl in 1.24)",
			raw:         `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1","spec":{}}`,
			wantErrText: `kubectl asks for ExecCredential "client.authentication.k8s.io/v1alpha1", but portcullis-cli speaks only client.authentication.k8s.io/v1 and client.authentication.k8s.io/v1beta1; set apiVersion: client.authentication.k8s.io/v1`,
		},
		{
			name:        "a future version",
			raw:         `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v2","spec":{}}`,
			wantErrText: `"client.authentication.k8s.io/v2"`,
		},
		{
			name:        "another group",
			raw:         `{"kind":"ExecCredential","apiVersion":"v1","spec":{}}`,
			wantErrText: `asks for ExecCredential "v1"`,
		},
		{
			name:        "no apiVersion",
			raw:         `{"kind":"ExecCredential","spec":{}}`,
			wantErrText: "no apiVersion; set apiVersion: client.authentication.k8s.io/v1",
		},
		{
			name:        "wrong kind",
			raw:         `{"kind":"Pod","apiVersion":"client.authentication.k8s.io/v1"}`,
			wantErrText: `kind is "Pod", want "ExecCredential"`,
		},
		{
			name:        "not JSON",
			raw:         `kind: ExecCredential`,
			wantErrText: "not an ExecCredential in JSON",
		},
		{
			name:        "JSON but not an object",
			raw:         `["client.authentication.k8s.io/v1"]`,
			wantErrText: "not an ExecCredential in JSON",
		},
		{
			name:        "apiVersion of the wrong type",
			raw:         `{"kind":"ExecCredential","apiVersion":1}`,
			wantErrText: "not an ExecCredential in JSON",
		},
		{
			name:        "huge",
			raw:         `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","x":"` + strings.Repeat("a", maxExecInfo) + `"}`,
			wantErrText: "more than the 1048576 accepted",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseExecInfo(tt.raw)
			if tt.wantErrText != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrText) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErrText)
				}
				if !strings.HasPrefix(err.Error(), "reading KUBERNETES_EXEC_INFO: ") {
					t.Errorf("error %q does not say what was being read", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %+v", err, tt.want)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
