package audit

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"
)

// typicalEvent is the ResponseComplete event of kubectl get pod web-0, as
// the server writes it with the default policy.
func typicalEvent() *Event {
	received := time.Date(2026, 3, 14, 9, 26, 53, 589793123, time.UTC)
	ev := NewEvent(LevelMetadata, "5f0c3a2e-8a51-4d0e-9b8e-2f1d6c7a9b10", received)
	ev.Stage, ev.StageTimestamp = StageResponseComplete, received.Add(1234567*time.Nanosecond)
	ev.RequestURI = "/api/v1/namespaces/default/pods/web-0"
	ev.Verb = "get"
	ev.User = UserInfo{Username: "alice@example.com", UID: "alice-id", Groups: []string{"sre", "dev", "k8s-admins"},
		Extra: map[string][]string{ExtraSessionID: {SessionHash("s")}}}
	ev.SourceIPs = []string{"10.1.2.3"}
	ev.UserAgent = "kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef0"
	ev.ObjectRef = &ObjectReference{Resource: "pods", Namespace: "default", Name: "web-0", APIVersion: "v1"}
	ev.ResponseStatus = &ResponseStatus{Code: 200}
	ev.Annotations = MakeAnnotations(map[string]string{
		"portcullis.io/route":           "https://k8s.example.com",
		"authorization.k8s.io/decision": "allow",
		"authorization.k8s.io/reason":   `allowed by rule "routes[0].policy": user alice@example.com is allowed`,
		"portcullis.io/rule":            "routes[0].policy",
		"portcullis.io/latency":         "1.234567ms",
		"portcullis.io/response-bytes":  "1290",
	})
	return ev
}

// BenchmarkEventMarshal is json.Marshal of one typical event.
func BenchmarkEventMarshal(b *testing.B) {
	ev := typicalEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendEvent is appendEvent of one typical event into a buffer
// that is reused, as the file sink encodes.
func BenchmarkAppendEvent(b *testing.B) {
	ev := typicalEvent()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEvent(buf[:0], ev)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkFileSinkWrite is the writer's work per batch: encoding and
// writing a batch of 1 event (a quiet server, where every event is written
// as it comes) and of 100 (a busy one) to a file.
func BenchmarkFileSinkWrite(b *testing.B) {
	for _, bb := range []struct {
		name string
		n    int
	}{{"1", 1}, {"100", 100}} {
		b.Run(bb.name, func(b *testing.B) {
			s, err := NewFileSink(filepath.Join(b.TempDir(), "audit.log"), 0, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := make([]*Event, bb.n)
			for i := range batch {
				batch[i] = typicalEvent()
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Write(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bb.n), "ns/event")
		})
	}
}
