package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestEventGolden reads an event line as kube-apiserver writes it, with
// every field Event has, and writes it back: the JSON must be the same
// field for field.
func TestEventGolden(t *testing.T) {
	golden, err := os.ReadFile("testdata/apiserver-event.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev Event
	if err := json.Unmarshal(golden, &ev); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	got, err := json.Marshal(ev)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var wantMap, gotMap map[string]any
	if err := json.Unmarshal(golden, &wantMap); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &gotMap); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantMap, gotMap); diff != "" {
		t.Errorf("event JSON after a round trip (-want +got):\n%s", diff)
	}

	wantReceived := time.Date(2026, 3, 14, 9, 26, 53, 589793000, time.UTC)
	if !ev.RequestReceivedTimestamp.Equal(wantReceived) {
		t.Errorf("requestReceivedTimestamp: got %v, want %v", ev.RequestReceivedTimestamp, wantReceived)
	}
	if ev.ObjectRef == nil || ev.ResponseStatus == nil || ev.ResponseStatus.Code != 403 {
		t.Errorf("objectRef, responseStatus: got %+v, %+v", ev.ObjectRef, ev.ResponseStatus)
	}
}

// TestEventMinimal checks what a fresh event looks like on the wire: the
// fields kube-apiserver always writes are present, empty or not, and the
// optional ones are absent.
func TestEventMinimal(t *testing.T) {
	received := time.Date(2026, 3, 14, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	ev := NewEvent(LevelMetadata, "id-1", received)
	ev.Stage = StageResponseComplete
	ev.StageTimestamp = received.Add(1500 * time.Nanosecond) // truncated, not rounded, to microseconds
	ev.Verb = "get"
	ev.RequestURI = "/healthz"
	ev.ResponseStatus = &ResponseStatus{Code: 200}
	got, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-1","stage":"ResponseComplete",` +
		`"requestURI":"/healthz","verb":"get","user":{},"responseStatus":{"metadata":{},"code":200},` +
		`"requestReceivedTimestamp":"2026-03-14T09:00:00.123456Z","stageTimestamp":"2026-03-14T09:00:00.123458Z"}`
	if !bytes.Equal(got, []byte(want)) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestSessionHash(t *testing.T) {
	got := SessionHash("s3cr3t-session-id")
	if len(got) != 16 || got == SessionHash("other") || got != SessionHash("s3cr3t-session-id") {
		t.Errorf("SessionHash: got %q, want 16 hex digits, stable, different per session", got)
	}
}
