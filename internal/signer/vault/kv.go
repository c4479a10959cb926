package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// kvMount is a KV v2 mount used with one client's token: keyd's own for
// lifecycle records, claims, the intent and observed propagation, keyd's or
// an auditor's for the audit chain (AuditStore). It is the one way keyd
// reaches KV. Its errors go through wrap, but for send and remove's, which
// their callers name.
type kvMount struct {
	client *api.Client
	mount  string
}

func (b *Backend) kvMount() kvMount { return kvMount{client: b.client, mount: b.kv} }

func (k kvMount) dataPath(p string) string     { return kvDataPath(k.mount, p) }
func (k kvMount) metadataPath(p string) string { return kvMetadataPath(k.mount, p) }

// noCAS is the cas of send that writes without check-and-set.
const noCAS = -1

// send writes entry p with check-and-set cas (0: only if it does not
// exist; noCAS: whatever is there) and returns Vault's error as it is.
func (k kvMount) send(ctx context.Context, p string, data map[string]any, cas int) error {
	body := map[string]any{"data": data}
	if cas != noCAS {
		body["options"] = map[string]any{"cas": cas}
	}
	_, err := k.client.Logical().WriteWithContext(ctx, k.dataPath(p), body)
	return err
}

// remove soft-deletes the latest version of entry p and returns Vault's
// error as it is.
func (k kvMount) remove(ctx context.Context, p string) error {
	_, err := k.client.Logical().DeleteWithContext(ctx, k.dataPath(p))
	return err
}

// read reads entry p as Vault answers it: nil when there is no entry; an
// entry whose current version is deleted has no "data".
func (k kvMount) read(ctx context.Context, p string) (*api.Secret, error) {
	sec, err := k.client.Logical().ReadWithContext(ctx, k.dataPath(p))
	return sec, wrap("read "+k.dataPath(p), err)
}

// write writes entry p with check-and-set cas (0: only if it does not exist).
func (k kvMount) write(ctx context.Context, p string, data map[string]any, cas int) error {
	err := k.send(ctx, p, data, cas)
	op := "write "
	if cas == 0 {
		op = "create "
	}
	return wrap(op+k.dataPath(p), err)
}

// list returns the names under p as Vault answers them (nil when none).
func (k kvMount) list(ctx context.Context, p string) ([]any, error) {
	sec, err := k.client.Logical().ListWithContext(ctx, k.metadataPath(p))
	if err != nil {
		return nil, wrap("list "+k.metadataPath(p), err)
	}
	if sec == nil || sec.Data["keys"] == nil {
		return nil, nil
	}
	keys, ok := sec.Data["keys"].([]any)
	if !ok {
		return nil, fmt.Errorf("vault: list %s: unexpected answer", k.metadataPath(p))
	}
	return keys, nil
}

// entry reads entry p: its data (nil when absent or deleted) and its
// version.
func (k kvMount) entry(ctx context.Context, p string) (map[string]any, int, error) {
	sec, err := k.read(ctx, p)
	if err != nil {
		return nil, 0, err
	}
	if sec == nil || sec.Data == nil {
		return nil, 0, nil
	}
	data, _ := sec.Data["data"].(map[string]any)
	var meta struct {
		Version int `json:"version"`
	}
	if err := decode(sec.Data["metadata"], &meta); err != nil {
		return nil, 0, fmt.Errorf("vault: decode metadata of %s: %w", k.dataPath(p), err)
	}
	return data, meta.Version, nil
}

// create writes entry p only if it does not exist (check-and-set 0). It
// reports false when the entry already exists. (Vault answers 400 for a
// failed check-and-set, or 403 when the token may create but not update:
// either way a read settles whether the entry is there.)
func (k kvMount) create(ctx context.Context, p string, data map[string]any) (bool, error) {
	err := k.write(ctx, p, data, 0)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, signer.ErrUnavailable) {
		return false, err
	}
	existing, _, rerr := k.entry(ctx, p)
	if rerr != nil || existing == nil {
		return false, err
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
