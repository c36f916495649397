package audit

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAnnotations(t *testing.T) {
	var a Annotations
	a.Set("portcullis.io/route", "https://k8s.example.com")
	a.Set("authorization.k8s.io/reason", "allowed")
	a.Set("portcullis.io/latency", "1ms")
	a.Set("authorization.k8s.io/decision", "forbid")
	a.Set("authorization.k8s.io/decision", "allow") // replaces
	want := Annotations{
		{"authorization.k8s.io/decision", "allow"},
		{"authorization.k8s.io/reason", "allowed"},
		{"portcullis.io/latency", "1ms"},
		{"portcullis.io/route", "https://k8s.example.com"},
	}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("Set (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		key, want string
		ok        bool
	}{
		{"authorization.k8s.io/decision", "allow", true},
		{"portcullis.io/route", "https://k8s.example.com", true},
		{"portcullis.io/rule", "", false},
		{"", "", false},
		{"zzz", "", false},
	} {
		if got, ok := a.Lookup(tt.key); got != tt.want || ok != tt.ok {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
		}
		if got := a.Get(tt.key); got != tt.want {
			t.Errorf("Get(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	if diff := cmp.Diff(want, MakeAnnotations(a.Map())); diff != "" {
		t.Errorf("MakeAnnotations(Map()) (-want +got):\n%s", diff)
	}
}

// TestAnnotationsJSON: annotations are written as encoding/json writes the
// map they stand for, however they were built, and read back sorted.
func TestAnnotationsJSON(t *testing.T) {
	for _, tt := range []struct {
		name string
		a    Annotations
		want map[string]string
	}{
		{"sorted", Annotations{{"a", "1"}, {"b", "2"}}, map[string]string{"a": "1", "b": "2"}},
		{"unsorted", Annotations{{"b", "2"}, {"a", "1"}, {"c", "<&>"}}, map[string]string{"a": "1", "b": "2", "c": "<&>"}},
		// Of a key given twice, one value: JSON with a key twice is
		// read differently by different readers.
		{"twice", Annotations{{"a", "1"}, {"a", "2"}}, map[string]string{"a": "2"}},
		{"empty", Annotations{}, map[string]string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.a)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("got %s, want %s", got, want)
			}
			var back Annotations
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(MakeAnnotations(tt.want), back); diff != "" {
				t.Errorf("read back (-want +got):\n%s", diff)
			}
		})
	}
}
