package audit

import (
	"encoding/json"
	"slices"
	"strings"
)

// Annotations are an event's annotations: a JSON object of strings, kept
// as key–value pairs sorted by key, each key once, which is the order
// kube-apiserver writes them in (encoding/json sorts a map's keys).
//
// A sorted slice rather than Kubernetes' map[string]string because the
// server makes an event for every request: a handful of annotations set
// once each cost a map's allocation and hashing on the request's path,
// and its keys' sorting and lookups again when the event is encoded,
// which was a third of the audit trail's CPU time.
type Annotations []Annotation

// An Annotation is one key and its value.
type Annotation struct {
	Key, Value string
}

// MakeAnnotations returns the annotations of m.
func MakeAnnotations(m map[string]string) Annotations {
	if len(m) == 0 {
		return nil
	}
	a := make(Annotations, 0, len(m))
	for k, v := range m {
		a = append(a, Annotation{k, v})
	}
	slices.SortFunc(a, func(x, y Annotation) int { return strings.Compare(x.Key, y.Key) })
	return a
}

// find returns where key is, or would be inserted, and whether it is
// there.
func (a Annotations) find(key string) (int, bool) {
	// Linear: an event has fewer than a dozen, for which a binary search
	// is no faster.
	for i, an := range a {
		if an.Key >= key {
			return i, an.Key == key
		}
	}
	return len(a), false
}

// Get returns key's value, or "" if it has none.
func (a Annotations) Get(key string) string {
	v, _ := a.Lookup(key)
	return v
}

// Lookup returns key's value and whether it has one.
func (a Annotations) Lookup(key string) (string, bool) {
	if i, ok := a.find(key); ok {
		return a[i].Value, true
	}
	return "", false
}

// Set sets key's value, in its place among the keys.
func (a *Annotations) Set(key, value string) {
	i, ok := (*a).find(key)
	if ok {
		(*a)[i].Value = value
		return
	}
	*a = slices.Insert(*a, i, Annotation{key, value})
}

// Map returns the annotations as a map, nil when there are none.
func (a Annotations) Map() map[string]string {
	if len(a) == 0 {
		return nil
	}
	m := make(map[string]string, len(a))
	for _, an := range a {
		m[an.Key] = an.Value
	}
	return m
}

// MarshalJSON writes the annotations as a JSON object, as kube-apiserver
// writes an event's.
func (a Annotations) MarshalJSON() ([]byte, error) {
	return appendAnnotations(nil, a), nil
}

// UnmarshalJSON reads a JSON object of strings; of a key given twice the
// last value counts, as encoding/json decodes it into a map.
func (a *Annotations) UnmarshalJSON(data []byte) error {
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	*a = MakeAnnotations(m)
	return nil
}
