package rotation

import (
	"context"
	"testing"

	"github.com/openedx-keyd/keyd/internal/audit"
)

// TestOutboxQueuesWhatTheTrailRefuses: the outbox, alone. It sends each
// event once per key (audit.KeyOf), queues what the trail refuses and
// delivers it at the next flush; two distinct failures of one version are
// two events (the trail keeps both), not one.
func TestOutboxQueuesWhatTheTrailRefuses(t *testing.T) {
	ctx := context.Background()
	tr := &recorder{}
	o := newOutbox(tr, quiet)
	created := Event{Type: audit.Created, Version: 2, Actor: "scheduler"}
	o.send(ctx, created)
	o.send(ctx, created)
	if n := tr.count(audit.Created); n != 1 || !o.recorded(created) {
		t.Fatalf("created sent %d times (recorded %v), want once", n, o.recorded(created))
	}

	tr.setFail(true)
	destroyed := Event{Type: audit.Destroyed, Version: 1}
	o.send(ctx, destroyed)
	fail1 := Event{Type: audit.RotationFailed, Version: 3, Reason: "rotate: disk full"}
	fail2 := Event{Type: audit.RotationFailed, Version: 3, Reason: "rotate: permission denied"}
	if o.sendOnce(ctx, fail1) || o.sendOnce(ctx, fail2) {
		t.Fatal("a failure reported recorded while the trail refuses it")
	}
	if o.recorded(destroyed) || len(o.unsent) != 3 {
		t.Fatalf("queued %d events, want 3 (destroyed and both failures)", len(o.unsent))
	}

	tr.setFail(false)
	o.flush(ctx)
	if len(o.unsent) != 0 || !o.recorded(destroyed) {
		t.Fatalf("after the flush %d events still queued", len(o.unsent))
	}
	if n := tr.count(audit.RotationFailed); n != 2 {
		t.Errorf("rotation_failed events: %d, want 2", n)
	}
	o.flush(ctx)
	if n := tr.count(audit.Destroyed); n != 1 {
		t.Errorf("destroyed sent %d times, want once", n)
	}
}
