package vault

import (
	"context"
	"fmt"
	"time"
)

// StartRenewal keeps keyd's own token alive: it renews it (renew-self) at
// half its TTL until ctx ends, retrying sooner after a failure. It does
// nothing for a token that never expires (root) or cannot be renewed. Only
// the initial lookup can fail.
func (b *Backend) StartRenewal(ctx context.Context) error {
	self, err := b.client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return wrap("look up keyd's own token", err)
	}
	if self == nil {
		return fmt.Errorf("vault: look up keyd's own token: empty answer")
	}
	ttl, _ := self.TokenTTL()
	renewable, _ := self.TokenIsRenewable()
	if ttl <= 0 || !renewable {
		b.log.Info("vault token renewal not needed", "ttl", ttl, "renewable", renewable)
		return nil
	}
	go b.renewLoop(ctx, ttl)
	return nil
}

func (b *Backend) renewLoop(ctx context.Context, ttl time.Duration) {
	expires := time.Now().Add(ttl)
	wait := ttl / 2
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		sec, err := b.client.Auth().Token().RenewSelfWithContext(ctx, 0)
		if err != nil || sec == nil || sec.Auth == nil {
			left := time.Until(expires)
			b.log.Error("vault token renewal failed", "err", Explain(err), "expires_in", left.Round(time.Second))
			wait = max(left/3, time.Second)
			continue
		}
		ttl = time.Duration(sec.Auth.LeaseDuration) * time.Second
		if ttl <= 0 || !sec.Auth.Renewable {
			b.log.Warn("vault token can no longer be renewed", "ttl", ttl)
			return
		}
		expires = time.Now().Add(ttl)
		wait = ttl / 2
		b.log.Debug("vault token renewed", "ttl", ttl)
	}
}
