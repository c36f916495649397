package authenticate

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRecord: a sign-in, a replayed callback and a sign-out each reach the
// audit trail (Options.Record), naming the person and the session.
func TestRecord(t *testing.T) {
	f := newFixture(t)
	st := f.browserSignIn(t)
	if res := f.callback(t, st); res.code != http.StatusFound {
		t.Fatalf("callback: got %d %q", res.code, res.body)
	}
	f.callback(t, st) // replayed
	s := f.signIn(t)
	if res := f.do(t, "POST", routeURL+"/.pomerium/sign_out", req{header: []string{"Authorization", "Bearer Pomerium-" + s.token}}); res.code >= 400 {
		t.Fatalf("sign-out: got %d %q", res.code, res.body)
	}
	f.mu.Lock()
	got := f.records
	f.mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("got %d records, want 4: %+v", len(got), got)
	}
	for i := range got {
		got[i].SessionID = map[bool]string{true: "set", false: ""}[got[i].SessionID != ""]
	}
	email, sub := "someuser@example.com", "user-1"
	want := []Activity{
		{Action: ActivitySignIn, Email: email, Subject: sub, SessionID: "set"},
		{Action: ActivitySignInRefused, Reason: "the sign-in's answer was used already (a replay)"},
		{Action: ActivitySignIn, Email: email, Subject: sub, SessionID: "set"},
		{Action: ActivitySignOut, Email: email, Subject: sub, SessionID: "set"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}
