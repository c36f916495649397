package server

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-proxy/portcullis/internal/audit"
)

// TestSessionExtras: a session's events name it by its hash, never its
// id, through one map that all of them share; the maps kept stay bounded.
func TestSessionExtras(t *testing.T) {
	var c sessionExtras
	a, b := c.get("session-a"), c.get("session-b")
	if diff := cmp.Diff(map[string][]string{audit.ExtraSessionID: {audit.SessionHash("session-a")}}, a); diff != "" {
		t.Errorf("session-a's Extra (-want +got):\n%s", diff)
	}
	if got := b[audit.ExtraSessionID]; len(got) != 1 || got[0] == a[audit.ExtraSessionID][0] {
		t.Errorf("session-b's hash %q, session-a's %q: want one each, different", got, a[audit.ExtraSessionID])
	}
	if again := c.get("session-a"); reflect.ValueOf(again).Pointer() != reflect.ValueOf(a).Pointer() {
		t.Error("session-a's second event got a map of its own, want the first's")
	}
	for i := range 3 * maxSessionExtras {
		c.get(fmt.Sprint("session-", i))
	}
	kept := 0
	c.m.Range(func(any, any) bool { kept++; return true })
	if kept > maxSessionExtras {
		t.Errorf("%d sessions kept, want at most %d", kept, maxSessionExtras)
	}
	if got := c.get("session-a"); !reflect.DeepEqual(got, a) {
		t.Errorf("session-a after the reset: %v, want %v", got, a)
	}
}
