package vault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Observed propagation in KV v2, under <kv>/data/propagation/:
// observations/<client> (one entry per client holding its instances, merged
// with check-and-set), confirmations/<version>/<client> and
// activations/<version> (each created once, never rewritten).
const propagationDir = "propagation/"

func observationsPath(client string) string {
	return propagationDir + "observations/" + signer.PathName(client)
}

func confirmationPath(v int, client string) string {
	return propagationDir + "confirmations/" + strconv.Itoa(v) + "/" + signer.PathName(client)
}

func activationPath(v int) string { return propagationDir + "activations/" + strconv.Itoa(v) }

type instancesDoc struct {
	Instances []signer.Observation `json:"instances"`
}

// casAttempts bounds the read-merge-write rounds of one client's entry
// when other replicas write it at the same time (each lost round means
// another writer made progress; a short random pause spreads the next).
const casAttempts = 20

// SaveObservations merges obs into each client's entry (per instance, the
// later fetch and the higher version win; instances fetched last before
// forgetBefore go), with check-and-set so that replicas never lose each
// other's writes.
func (b *Backend) SaveObservations(ctx context.Context, obs []signer.Observation, forgetBefore time.Time) error {
	byClient := map[string][]signer.Observation{}
	for _, o := range obs {
		byClient[o.Client] = append(byClient[o.Client], o)
	}
	var errs []error
	for client, add := range byClient {
		if err := b.mergeClient(ctx, client, add, forgetBefore); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *Backend) mergeClient(ctx context.Context, client string, add []signer.Observation, forgetBefore time.Time) error {
	p := observationsPath(client)
	var err error
	for range casAttempts {
		var cur instancesDoc
		var ver int
		if cur, ver, err = b.readInstances(ctx, p); err != nil {
			return err
		}
		data, eerr := encode(instancesDoc{Instances: signer.MergeObservations(cur.Instances, add, forgetBefore)})
		if eerr != nil {
			return eerr
		}
		if err = b.kvMount().write(ctx, p, data, ver); err == nil || errors.Is(err, signer.ErrUnavailable) {
			return err
		}
		// Another replica wrote it since the read: merge again.
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(rand.Int64N(int64(20 * time.Millisecond)))):
		}
	}
	return err
}

func (b *Backend) readInstances(ctx context.Context, p string) (instancesDoc, int, error) {
	var doc instancesDoc
	data, ver, err := b.kvRead(ctx, p)
	if err != nil || data == nil {
		return doc, ver, err
	}
	if err := decode(data, &doc); err != nil {
		return doc, ver, fmt.Errorf("vault: decode %s: %w", b.kvPath(p), err)
	}
	return doc, ver, nil
}

// Observed returns the observations of clients, and the confirmations and
// activations of versions (rotation.PropagationStore).
func (b *Backend) Observed(ctx context.Context, versions []int, clients []string) (signer.Observed, error) {
	var out signer.Observed
	for _, c := range clients {
		doc, _, err := b.readInstances(ctx, observationsPath(c))
		if err != nil {
			return out, err
		}
		for _, o := range doc.Instances {
			if o.Client == c {
				out.Observations = append(out.Observations, o)
			}
		}
	}
	err := signer.ReadDecisions(&out, versions, clients,
		func(v int) (a signer.Activation, ok bool, err error) {
			ok, err = b.readEntry(ctx, activationPath(v), &a)
			return a, ok, err
		},
		func(v int, client string) (c signer.Confirmation, ok bool, err error) {
			ok, err = b.readEntry(ctx, confirmationPath(v, client), &c)
			return c, ok, err
		})
	return out, err
}

// Confirm stores c unless its client is confirmed for its version already,
// and returns the stored confirmation.
func (b *Backend) Confirm(ctx context.Context, c signer.Confirmation) (signer.Confirmation, error) {
	var stored signer.Confirmation
	err := b.createOnce(ctx, confirmationPath(c.Version, c.Client), c, &stored)
	return stored, err
}

// Activate stores a unless the version's activation exists (check-and-set
// 0), and returns the stored one: every replica follows the first.
func (b *Backend) Activate(ctx context.Context, a signer.Activation) (signer.Activation, error) {
	var stored signer.Activation
	err := b.createOnce(ctx, activationPath(a.Version), a, &stored)
	return stored, err
}

// createOnce creates entry p with v unless it exists, and fills stored with
// the entry: v when this call created it, else the one read back.
func (b *Backend) createOnce(ctx context.Context, p string, v, stored any) error {
	data, err := encode(v)
	if err != nil {
		return err
	}
	created, err := b.kvCreate(ctx, p, data)
	if err != nil {
		return err
	}
	if created {
		return decode(data, stored)
	}
	ok, err := b.readEntry(ctx, p, stored)
	if err == nil && !ok {
		err = fmt.Errorf("vault: %s vanished after its creation", b.kvPath(p))
	}
	return err
}

// readEntry reads entry p into v; false when it does not exist.
func (b *Backend) readEntry(ctx context.Context, p string, v any) (bool, error) {
	data, _, err := b.kvRead(ctx, p)
	if err != nil || data == nil {
		return false, err
	}
	if err := decode(data, v); err != nil {
		return false, fmt.Errorf("vault: decode %s: %w", b.kvPath(p), err)
	}
	return true, nil
}
