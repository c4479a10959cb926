package issue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/claims"
	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
)

var now = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// lifecycle hands out keys[0] until Refresh, keys[1] after.
type lifecycle struct {
	keys      []signer.SigningKey
	err       error
	refreshed int
	signed    []int
}

func (l *lifecycle) SigningKey(time.Time) (*rotation.Snapshot, signer.SigningKey, error) {
	return &rotation.Snapshot{At: now}, l.keys[min(l.refreshed, len(l.keys)-1)], l.err
}

func (l *lifecycle) Refresh(context.Context, time.Time) error { l.refreshed++; return nil }
func (l *lifecycle) Signed(v int, _ time.Time)                { l.signed = append(l.signed, v) }

// backend refuses versions below min.
type backend struct{ min int }

func (b backend) Sign(_ context.Context, _ signer.Credential, v int, _ signer.Algorithm, _ []byte) ([]byte, error) {
	if v < b.min {
		return nil, fmt.Errorf("version %d: %w", v, signer.ErrNoKey)
	}
	return []byte("sig"), nil
}

func TestSign(t *testing.T) {
	v1 := signer.NewSigningKey(1, signer.ES256, "k1")
	v2 := signer.NewSigningKey(2, signer.ES256, "k2")
	good := `{"claims":{"iss":"i","aud":"a","sub":"s","grant_type":"password"}}`
	for _, tt := range []struct {
		name      string
		body      string
		keys      []signer.SigningKey
		keyErr    error
		min       int
		wantKID   string
		wantErr   error
		refreshed int
		signed    []int
	}{
		{name: "signs", body: good, keys: []signer.SigningKey{v1}, min: 1, wantKID: "k1", signed: []int{1}},
		{name: "policy refuses", body: `{"claims":{}}`, keys: []signer.SigningKey{v1}, wantErr: &claims.Error{}},
		{name: "no key yet", body: good, keys: []signer.SigningKey{{}}, keyErr: rotation.ErrNoKey, wantErr: rotation.ErrNoKey},
		{name: "emergency pending", body: good, keys: []signer.SigningKey{v1}, keyErr: rotation.ErrEmergencyPending, wantErr: rotation.ErrEmergencyPending},
		{name: "refused version: refresh and sign with the new key", body: good, keys: []signer.SigningKey{v1, v2}, min: 2, wantKID: "k2", refreshed: 1, signed: []int{2}},
		{name: "refused and no newer key", body: good, keys: []signer.SigningKey{v1}, min: 2, wantErr: rotation.ErrNoKey, refreshed: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lc := &lifecycle{keys: tt.keys, err: tt.keyErr}
			s := New(Config{Backend: backend{tt.min}, Lifecycle: lc, Clock: clock.NewFake(now),
				Policy: claims.Policy{Issuers: []string{"i"}, MaxLifetime: time.Hour, ClockSkew: time.Minute},
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			got, err := s.Issue(context.Background(), signer.Credential{}, "test", []byte(tt.body))
			var ce *claims.Error
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Sign: %v", err)
			case errors.As(tt.wantErr, &ce):
				if !errors.As(err, &ce) {
					t.Fatalf("Sign error = %v, want a *claims.Error", err)
				}
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Sign error = %v, want %v", err, tt.wantErr)
			}
			if got.KID != tt.wantKID || (tt.wantKID != "" && !strings.HasSuffix(got.JWT, ".c2ln")) {
				t.Errorf("token kid %q jwt %q, want kid %q", got.KID, got.JWT, tt.wantKID)
			}
			if lc.refreshed != tt.refreshed || fmt.Sprint(lc.signed) != fmt.Sprint(tt.signed) {
				t.Errorf("refreshed %d signed %v, want %d %v", lc.refreshed, lc.signed, tt.refreshed, tt.signed)
			}
		})
	}
}
