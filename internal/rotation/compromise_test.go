package rotation

import (
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// TestCompromiseAlone: the sign path's view of pending emergencies,
// without a manager. Versions up to a marked intent never sign again (the
// mark only grows); while an emergency is held here, so does every key
// created before it was asked for, whatever its version; one created in
// the same second counts as made for it.
func TestCompromiseAlone(t *testing.T) {
	asked := time.Date(2030, 1, 1, 12, 0, 0, 500_000_000, time.UTC)
	at := func(v int, created time.Time) Published {
		return Published{KeyState: KeyState{Key: signer.Key{Record: signer.Record{Version: v, CreatedAt: created}}}}
	}
	s := &Snapshot{Keys: []Published{at(1, asked.Add(-time.Hour)), at(2, asked.Add(-time.Second)), at(3, asked.Truncate(time.Second))}}
	var c compromise
	for v := 1; v <= 3; v++ {
		if c.refuses(s, v) {
			t.Fatalf("version %d refused with no emergency", v)
		}
	}
	c.mark(1)
	c.mark(0) // never lowers
	if !c.refuses(s, 1) || c.refuses(s, 2) {
		t.Fatalf("after marking 1: refuses 1 %v, 2 %v", c.refuses(s, 1), c.refuses(s, 2))
	}
	c.held.Store(&EmergencyStatus{After: 1, Since: asked})
	if !c.refuses(s, 2) || c.refuses(s, 3) || c.refuses(s, 4) {
		t.Errorf("held since %s: refuses 2 %v, 3 %v, 4 %v", asked, c.refuses(s, 2), c.refuses(s, 3), c.refuses(s, 4))
	}
}
