package respond

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// statusCases are answers to a program, with golden files in testdata:
// one of each kind Portcullis gives.
var statusCases = []struct {
	name    string
	problem Problem
}{
	{"401-unauthenticated", Unauthenticated("no bearer token or session cookie")},
	{"401-session-expired", SessionExpired()},
	{"403-forbidden", Problem{Code: http.StatusForbidden, Message: "portcullis: denied by policy rule policy[0].allow.or (groups-unauthorized)",
		Title: "Access denied", Text: "Portcullis denied by policy rule policy[0].allow.or (groups-unauthorized)."}},
	{"405-sign-out-with-post", Problem{Code: http.StatusMethodNotAllowed, Message: "portcullis: sign out with POST /.pomerium/sign_out"}},
	{"502-connection-refused", Problem{Code: http.StatusBadGateway, Message: "portcullis: upstream https://kubernetes.default.svc: connection refused"}},
	{"503-no-service-account-token", Problem{Code: http.StatusServiceUnavailable,
		Message: "portcullis: the proxy has no service-account token for this cluster; an administrator must check kubernetes_service_account_token"}},
	{"504-timeout", Problem{Code: http.StatusGatewayTimeout, Message: "portcullis: upstream https://kubernetes.default.svc: timed out: the API server did not answer in time"}},
	{"501-title-and-text-only", Problem{Code: http.StatusNotImplemented, Title: "Sign-in is not configured",
		Text: "This Portcullis has no identity provider: an administrator must set IDP_PROVIDER."}},
}

// kubectlRequest is a request as kubectl sends it.
func kubectlRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://k8s.example.com/api/v1/namespaces/default/pods", nil)
	r.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
	r.Header.Set("Authorization", "Bearer Pomerium-x.y.z")
	return r
}

func TestStatusGolden(t *testing.T) {
	for _, tt := range statusCases {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Error(rec, kubectlRequest(), tt.problem)
			if rec.Code != tt.problem.Code {
				t.Errorf("got status %d, want %d", rec.Code, tt.problem.Code)
			}
			wantHeader := http.Header{
				"Content-Type":           {"application/json"},
				"Content-Length":         {fmt.Sprint(rec.Body.Len())},
				"Cache-Control":          {"no-store"},
				"X-Content-Type-Options": {"nosniff"},
			}
			if diff := cmp.Diff(wantHeader, rec.Header()); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			golden(t, filepath.Join("testdata", "status-"+tt.name+".json"), rec.Body.Bytes())

			// The body is a metav1.Status with the same code.
			var st metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
				t.Fatalf("decoding the body as a metav1.Status: %v", err)
			}
			if st.Code != int32(tt.problem.Code) || st.Status != metav1.StatusFailure || st.Kind != "Status" {
				t.Errorf("got Status{Kind: %q, Status: %q, Code: %d}, want {Status, Failure, %d}", st.Kind, st.Status, st.Code, tt.problem.Code)
			}
		})
	}
}

// TestStatusSeenByClientGo sends each answer through client-go, as kubectl
// receives it, and checks that client-go reads it as a Status error with
// our reason and message rather than a generic one.
func TestStatusSeenByClientGo(t *testing.T) {
	for _, tt := range statusCases {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { Error(w, r, tt.problem) }))
			defer srv.Close()
			rec := httptest.NewRecorder()
			Error(rec, kubectlRequest(), tt.problem)
			var want metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &want); err != nil {
				t.Fatal(err)
			}

			err := newRESTClient(t, srv.URL).Get().Resource("pods").Do(t.Context()).Error()
			var statusErr apierrors.APIStatus
			if !errors.As(err, &statusErr) {
				t.Fatalf("client-go returned %T %v, want an APIStatus", err, err)
			}
			got := statusErr.Status()
			if got.Reason != want.Reason || got.Message != want.Message || got.Code != want.Code {
				t.Errorf("client-go saw reason %q, message %q, code %d; want %q, %q, %d",
					got.Reason, got.Message, got.Code, want.Reason, want.Message, want.Code)
			}
		})
	}
}

func newRESTClient(t *testing.T, host string) *rest.RESTClient {
	t.Helper()
	scheme := runtime.NewScheme()
	gv := schema.GroupVersion{Version: "v1"}
	metav1.AddToGroupVersion(scheme, gv)
	c, err := rest.RESTClientFor(&rest.Config{
		Host:    host,
		APIPath: "/api",
		ContentConfig: rest.ContentConfig{
			GroupVersion:         &gv,
			NegotiatedSerializer: serializer.NewCodecFactory(scheme).WithoutConversion(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStatusMessages(t *testing.T) {
	tests := []struct {
		name    string
		problem Problem
		want    string
	}{
		{
			name:    "unauthenticated",
			problem: Unauthenticated("token signature is invalid"),
			want:    "portcullis: no valid credentials: token signature is invalid: run any kubectl command to sign in again",
		},
		{
			name:    "unauthenticated without detail",
			problem: Unauthenticated(""),
			want:    "portcullis: no valid credentials: run any kubectl command to sign in again",
		},
		{
			name:    "session expired",
			problem: SessionExpired(),
			want:    "portcullis: your session expired: run any kubectl command to sign in again",
		},
		{
			name:    "message wins over title and text",
			problem: Problem{Code: 403, Message: "portcullis: cross-origin request refused", Title: "Request refused", Text: "Another site asked."},
			want:    "portcullis: cross-origin request refused",
		},
		{
			name:    "made from title and text",
			problem: Problem{Code: 400, Title: "Sign-in link expired", Text: "This sign-in link is invalid or has expired. Run the command again."},
			want:    "portcullis: sign-in link expired: This sign-in link is invalid or has expired. Run the command again",
		},
		{
			name:    "made from title alone",
			problem: Problem{Code: 404, Title: "Not found"},
			want:    "portcullis: not found",
		},
		{
			name:    "made from the code alone",
			problem: Problem{Code: 502},
			want:    "portcullis: bad gateway",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Error(rec, kubectlRequest(), tt.problem)
			if got := decodeStatus(t, rec).Message; got != tt.want {
				t.Errorf("got message %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStatusReason(t *testing.T) {
	tests := []struct {
		code int
		want metav1.StatusReason
	}{
		{400, metav1.StatusReasonBadRequest},
		{401, metav1.StatusReasonUnauthorized},
		{403, metav1.StatusReasonForbidden},
		{404, metav1.StatusReasonNotFound},
		{405, metav1.StatusReasonMethodNotAllowed},
		{406, metav1.StatusReasonNotAcceptable},
		{409, metav1.StatusReasonConflict},
		{410, metav1.StatusReasonGone},
		{413, metav1.StatusReasonRequestEntityTooLarge},
		{415, metav1.StatusReasonUnsupportedMediaType},
		{422, metav1.StatusReasonInvalid},
		{429, metav1.StatusReasonTooManyRequests},
		{500, metav1.StatusReasonInternalError},
		{501, metav1.StatusReasonInternalError},
		{502, metav1.StatusReasonServiceUnavailable},
		{503, metav1.StatusReasonServiceUnavailable},
		{504, metav1.StatusReasonTimeout},
		{418, metav1.StatusReasonUnknown},
	}
	for _, tt := range tests {
		if got := StatusReason(tt.code); got != string(tt.want) {
			t.Errorf("StatusReason(%d) = %q, want %q", tt.code, got, tt.want)
		}
	}
}

func decodeStatus(t *testing.T, rec *httptest.ResponseRecorder) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("decoding %q: %v", rec.Body.String(), err)
	}
	return st
}

// golden compares got with the golden file at path, or rewrites the file
// under -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
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
