package local

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Another keyd process on the same data dir pins signing to a newer
// version: this process refuses the older one at once, although it has not
// re-read the keys (its lifecycle loop is stalled). Issue 12 item 1.
func TestSignFollowsAPinRaisedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	stalled, other := newBackend(t, dir), newBackend(t, dir)
	mustCreate(t, other, 1, signer.ES256)
	mustCreate(t, other, 2, signer.ES256)
	if _, err := stalled.Sign(ctx, signer.Credential{}, 1, signer.ES256, []byte("x")); err != nil {
		t.Fatalf("version 1 before the pin: %v", err)
	}
	if err := other.PinSigning(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := stalled.Sign(ctx, signer.Credential{}, 1, signer.ES256, []byte("x")); !errors.Is(err, signer.ErrNoKey) {
		t.Fatalf("version 1 after another process pinned 2: err = %v, want ErrNoKey", err)
	}
	if _, err := stalled.Sign(ctx, signer.Credential{}, 2, signer.ES256, []byte("x")); err != nil {
		t.Fatalf("version 2: %v", err)
	}
}

func BenchmarkSignES256(b *testing.B) {
	ctx := context.Background()
	lb, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := lb.Create(ctx, signer.Record{Version: 1, Algorithm: signer.ES256, CreatedAt: now, ActivatesAt: now}); err != nil {
		b.Fatal(err)
	}
	if err := lb.PinSigning(ctx, 1); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := lb.Sign(ctx, signer.Credential{}, 1, signer.ES256, []byte("header.payload")); err != nil {
			b.Fatal(err)
		}
	}
}
