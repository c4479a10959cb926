package vault

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// keyd's KV v2 entries, under <kv>/data/: records/<version> (lifecycle
// records, created once), locks/rotate-<version> (rotation claims) and
// intent/emergency.
const intentPath = "intent/emergency"

// SaveIntent records an emergency in <kv>/data/intent/emergency.
func (b *Backend) SaveIntent(ctx context.Context, in signer.Intent) error {
	data, err := encode(in)
	if err != nil {
		return fmt.Errorf("vault: encode intent: %w", err)
	}
	_, err = b.client.Logical().WriteWithContext(ctx, b.kvPath(intentPath), map[string]any{"data": data})
	return wrap("save intent", err)
}

// LoadIntent returns the recorded emergency, or nil when there is none.
func (b *Backend) LoadIntent(ctx context.Context) (*signer.Intent, error) {
	data, _, err := b.kvRead(ctx, intentPath)
	if err != nil || data == nil {
		return nil, err
	}
	var in signer.Intent
	if err := decode(data, &in); err != nil {
		return nil, fmt.Errorf("vault: decode intent: %w", err)
	}
	return &in, nil
}

// ClearIntent deletes the intent (a KV v2 soft delete of its latest version).
func (b *Backend) ClearIntent(ctx context.Context) error {
	_, err := b.client.Logical().DeleteWithContext(ctx, b.kvPath(intentPath))
	return wrap("clear intent", err)
}

// kvRead reads a KV v2 entry: its data (nil when absent or deleted) and its
// version.
func (b *Backend) kvRead(ctx context.Context, p string) (map[string]any, int, error) {
	sec, err := b.client.Logical().ReadWithContext(ctx, b.kvPath(p))
	if err != nil {
		return nil, 0, wrap("read "+b.kvPath(p), err)
	}
	if sec == nil || sec.Data == nil {
		return nil, 0, nil
	}
	data, _ := sec.Data["data"].(map[string]any)
	var meta struct {
		Version int `json:"version"`
	}
	if err := decode(sec.Data["metadata"], &meta); err != nil {
		return nil, 0, fmt.Errorf("vault: decode metadata of %s: %w", b.kvPath(p), err)
	}
	return data, meta.Version, nil
}

// kvCreate writes a KV v2 entry only if it does not exist (check-and-set 0).
// It reports false when the entry already exists. (Vault answers 400 for a
// failed check-and-set, or 403 when the token may create but not update:
// either way a read settles whether the entry is there.)
func (b *Backend) kvCreate(ctx context.Context, p string, data map[string]any) (bool, error) {
	_, err := b.client.Logical().WriteWithContext(ctx, b.kvPath(p), map[string]any{
		"data":    data,
		"options": map[string]any{"cas": 0},
	})
	if err == nil {
		return true, nil
	}
	if isUnavailable(err) {
		return false, wrap("create "+b.kvPath(p), err)
	}
	existing, _, rerr := b.kvRead(ctx, p)
	if rerr != nil || existing == nil {
		return false, wrap("create "+b.kvPath(p), err)
	}
	return false, nil
}

// encode turns v into the map Vault's API takes, through its JSON form.
func encode(v any) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	err = json.Unmarshal(raw, &m)
	return m, err
}

// decode fills v from data as Vault's API returned it, through its JSON form.
func decode(data, v any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
