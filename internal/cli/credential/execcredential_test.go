package credential

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	clientauthv1beta1 "k8s.io/client-go/pkg/apis/clientauthentication/v1beta1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// A token of the shape Portcullis issues (the signature is not checked
// client-side, so it is a placeholder).
const goldenJWT = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0." +
	"eyJhdWQiOiIxMjcuMC4wLjE6ODQ0MyIsImVtYWlsIjoic29tZXVzZXJAZXhhbXBsZS5jb20iLCJleHAiOjE3OTU4Mzg0MDAsImlhdCI6MTc5NTc5NTIwMCwiaXNzIjoiaHR0cHM6Ly9sb2NhbGhvc3Q6ODQ0MyIsInNpZCI6InNlc3Npb24taWQiLCJzdWIiOiJ1c2VyLTEifQ." +
	"c2lnbmF0dXJl"

func TestMarshalGolden(t *testing.T) {
	tok, err := ParseToken(goldenJWT)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, apiVersion string
		decode           func([]byte) (token string, expiry time.Time, err error)
	}{
		{"v1", APIVersionV1, func(b []byte) (string, time.Time, error) {
			var ec clientauthv1.ExecCredential
			err := strictDecode(b, &ec)
			if err != nil || ec.Status == nil || ec.Status.ExpirationTimestamp == nil {
				return "", time.Time{}, err
			}
			return ec.Status.Token, ec.Status.ExpirationTimestamp.Time, nil
		}},
		{"v1beta1", APIVersionV1beta1, func(b []byte) (string, time.Time, error) {
			var ec clientauthv1beta1.ExecCredential
			err := strictDecode(b, &ec)
			if err != nil || ec.Status == nil || ec.Status.ExpirationTimestamp == nil {
				return "", time.Time{}, err
			}
			return ec.Status.Token, ec.Status.ExpirationTimestamp.Time, nil
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.apiVersion, tok.Raw, tok.Expiry)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "execcredential-"+tt.name+".golden.json"), got)

			// Read back with client-go's own types, as kubectl does.
			var meta struct{ Kind, APIVersion string }
			json.Unmarshal(got, &meta)
			if meta.Kind != "ExecCredential" || meta.APIVersion != tt.apiVersion {
				t.Errorf("kind %q apiVersion %q, want ExecCredential %s", meta.Kind, meta.APIVersion, tt.apiVersion)
			}
			token, expiry, err := tt.decode(got)
			if err != nil {
				t.Fatalf("client-go types reject the output: %v", err)
			}
			if token != "Pomerium-"+goldenJWT {
				t.Errorf("token: got %q, want Pomerium-<jwt>", token)
			}
			if want := time.Unix(1795838400, 0); !expiry.Equal(want) {
				t.Errorf("expirationTimestamp: got %v, want the token's exp %v", expiry, want)
			}
		})
	}
}

func TestMarshalRefuses(t *testing.T) {
	exp := time.Unix(1795838400, 0)
	for _, tt := range []struct {
		name, apiVersion, jwt string
		expiry                time.Time
	}{
		{"v1alpha1", "client.authentication.k8s.io/v1alpha1", goldenJWT, exp},
		{"no token", APIVersionV1, "", exp},
		{"no expiry", APIVersionV1, goldenJWT, time.Time{}},
	} {
		if b, err := Marshal(tt.apiVersion, tt.jwt, tt.expiry); err == nil {
			t.Errorf("%s: got %s, want an error", tt.name, b)
		}
	}
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// golden compares got with the file at path, or rewrites it under -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}
