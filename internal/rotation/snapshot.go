// The read side: the immutable snapshot the sign path and the JWKS read, and
// the signing key a request uses under the rules at its own instant.

package rotation

import (
	"sync/atomic"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Published is a key in the JWKS, with its kid.
type Published struct {
	KeyState
	KID string
}

// Snapshot is the lifecycle as of one evaluation: what to publish and which
// key signs. It is immutable once made.
type Snapshot struct {
	At        time.Time
	Plan      Plan
	Keys      []Published // pending, active, retiring
	Signing   signer.SigningKey
	HasActive bool
	signers   []signer.SigningKey // one per Keys entry
}

// SigningAt is the key a signature made at now must use under the rules:
// the newest published key that is active or has reached its activates_at.
// The sign path asks this at request time, so a snapshot made before a
// pending key's activation (a lifecycle loop stalled by a slow disk or
// Vault) never lets the older key sign past it. Both backends allow it: a
// pin only ever refuses versions below the pinned one.
func (s *Snapshot) SigningAt(now time.Time) (signer.SigningKey, bool) {
	for i := len(s.Keys) - 1; i >= 0; i-- {
		k := s.Keys[i]
		if k.State != Active && (k.State != Pending || k.Waiting || k.ActivatesAt.After(now)) {
			continue // a waiting gated key signs only once its activation is written
		}
		if i < len(s.signers) {
			return s.signers[i], true
		}
		return signer.NewSigningKey(k.Version, k.Algorithm, k.KID), true
	}
	return signer.SigningKey{}, false
}

// Snapshot returns the latest snapshot, or nil before the first.
func (m *Manager) Snapshot() *Snapshot { return m.snap.Load() }

// store makes the snapshot of plan, stores it and hands it to OnChange.
func (m *Manager) store(plan Plan, now time.Time) *Snapshot {
	s := &Snapshot{At: now, Plan: plan}
	for _, ks := range plan.Published {
		p := Published{KeyState: ks, KID: m.kid(ks.Key)}
		s.Keys = append(s.Keys, p)
		s.signers = append(s.signers, signer.NewSigningKey(p.Version, p.Algorithm, p.KID))
	}
	for i, p := range s.Keys {
		if p.State == Active {
			s.Signing = s.signers[i]
			s.HasActive = true
		}
	}
	m.lastSigned.Range(func(v, _ any) bool { // forget destroyed versions
		if len(s.Keys) > 0 && v.(int) < s.Keys[0].Version {
			m.lastSigned.Delete(v)
		}
		return true
	})
	m.snap.Store(s)
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(s)
	}
	m.published.Store(now.UnixNano())
	return s
}

// SigningKey is the key a signature made at now uses (Snapshot.SigningAt),
// with the snapshot it comes from. ErrNoKey: none yet; ErrEmergencyPending:
// the key is one a pending emergency replaces, which never signs again.
func (m *Manager) SigningKey(now time.Time) (*Snapshot, signer.SigningKey, error) {
	s := m.snap.Load()
	if s == nil {
		return nil, signer.SigningKey{}, ErrNoKey
	}
	k, ok := s.SigningAt(now)
	switch {
	case !ok:
		return s, k, ErrNoKey
	case m.compromise.refuses(s, k.Version):
		return s, k, ErrEmergencyPending
	}
	return s, k, nil
}

// Signed records that version v made a signature at t (after the backend
// answered): the lifecycle never destroys it before t + retire-after.
func (m *Manager) Signed(v int, t time.Time) {
	p, ok := m.lastSigned.Load(v)
	if !ok {
		p, _ = m.lastSigned.LoadOrStore(v, new(atomic.Int64))
	}
	raise(p.(*atomic.Int64), t.UnixNano())
}

// raise sets a to v unless it already holds as much.
func raise(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// signedTimes is lastSigned as the rules take it.
func (m *Manager) signedTimes() map[int]time.Time {
	var out map[int]time.Time
	m.lastSigned.Range(func(v, p any) bool {
		if out == nil {
			out = map[int]time.Time{}
		}
		out[v.(int)] = time.Unix(0, p.(*atomic.Int64).Load()).UTC()
		return true
	})
	return out
}
