package kube

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRequestedImpersonation(t *testing.T) {
	tests := []struct {
		name    string
		header  http.Header
		want    Requested
		wantOK  bool
		wantErr string
	}{
		{name: "none", header: http.Header{"Authorization": {"Bearer x"}, "X-Impersonate-User": {"bob"}}},
		{name: "a user", header: http.Header{"Impersonate-User": {"bob"}}, want: Requested{User: "bob"}, wantOK: true},
		{name: "groups, sorted and once each, in any letter case",
			header: http.Header{"impersonate-user": {"bob"}, "IMPERSONATE-GROUP": {"b", "a"}, "Impersonate-Group": {"a"}},
			want:   Requested{User: "bob", Groups: []string{"a", "b"}}, wantOK: true},
		{name: "groups without a user", header: http.Header{"Impersonate-Group": {"a"}}, wantOK: true, wantErr: "needs a user"},
		{name: "two users", header: http.Header{"Impersonate-User": {"bob"}, "impersonate-user": {"carol"}}, wantOK: true, wantErr: "more than one"},
		{name: "an empty group", header: http.Header{"Impersonate-User": {"bob"}, "Impersonate-Group": {""}}, wantOK: true, wantErr: "empty Impersonate-Group"},
		{name: "an empty user", header: http.Header{"Impersonate-User": {""}}, wantOK: true, wantErr: "empty"},
		{name: "a newline", header: http.Header{"Impersonate-User": {"bob\r\nImpersonate-Group: system:masters"}}, wantOK: true, wantErr: "Impersonate-User"},
		{name: "a group with a space around", header: http.Header{"Impersonate-User": {"bob"}, "Impersonate-Group": {" a"}}, wantOK: true, wantErr: "Impersonate-Group"},
		{name: "a uid", header: http.Header{"Impersonate-User": {"bob"}, "Impersonate-Uid": {"1"}}, wantOK: true, wantErr: "--as-uid"},
		{name: "an extra field", header: http.Header{"Impersonate-User": {"bob"}, "Impersonate-Extra-Scopes": {"x"}}, wantOK: true, wantErr: "Impersonate-Extra-"},
		{name: "an unknown Impersonate- header", header: http.Header{"Impersonate-Tomorrow": {"x"}}, wantOK: true, wantErr: "Impersonate-Extra-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := RequestedImpersonation(tt.header)
			if ok != tt.wantOK {
				t.Errorf("ok: got %v, want %v", ok, tt.wantOK)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error: got %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestReviews: the questions are kube-apiserver's own, a service account's
// user name asked about as the service account.
func TestReviews(t *testing.T) {
	got := Requested{User: "system:serviceaccount:ns:robot", Groups: []string{"g"}}.Reviews()
	want := []ReviewAttributes{
		{Verb: "impersonate", Resource: "serviceaccounts", Namespace: "ns", Name: "robot"},
		{Verb: "impersonate", Resource: "groups", Name: "g"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Not a service account's name: a user's, whatever it looks like.
	for _, u := range []string{"system:serviceaccount:ns", "system:serviceaccount::x", "system:serviceaccount:ns:a:b"} {
		if got := (Requested{User: u}).Reviews(); got[0].Resource != "users" || got[0].Name != u {
			t.Errorf("%q: got %+v, want a review of the user", u, got[0])
		}
	}
}

func TestSetAs(t *testing.T) {
	h := http.Header{"Impersonate-User": {"chosen"}, "impersonate-extra-portcullis.io%2fimpersonator": {"forged"}}
	if err := (Impersonator{}).SetAs(h, "sa", Requested{User: "bob", Groups: []string{"readers"}}, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Authorization": {"Bearer sa"}, "Impersonate-User": {"bob"}, "Impersonate-Group": {"readers"},
		HeaderExtraImpersonator: {"alice@example.com"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, person := range []string{"", "alice\n"} {
		h := http.Header{}
		if err := (Impersonator{}).SetAs(h, "sa", Requested{User: "bob"}, person); err == nil || len(h) != 0 {
			t.Errorf("impersonator %q: got %v and %v, want an error and no header", person, err, h)
		}
	}
}

func FuzzRequestedImpersonation(f *testing.F) {
	f.Add("bob", "a", "")
	f.Add("", "system:masters", "Impersonate-Uid")
	f.Fuzz(func(t *testing.T, user, group, other string) {
		h := http.Header{"Impersonate-User": {user}, "Impersonate-Group": {group}}
		if other != "" {
			h[other] = []string{"x"}
		}
		req, ok, err := RequestedImpersonation(h)
		if !ok {
			t.Fatal("impersonation headers not seen")
		}
		if err != nil {
			return
		}
		// What is accepted can be sent as it is.
		if checkHeaderValue(req.User) != nil || req.User == "" {
			t.Fatalf("accepted user %q", req.User)
		}
		for _, g := range req.Groups {
			if checkHeaderValue(g) != nil || g == "" {
				t.Fatalf("accepted group %q", g)
			}
		}
	})
}
