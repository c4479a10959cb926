package vault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

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

// readInstances reads a client's observations and the entry's version. A
// malformed entry counts as none (reported by Problems): the next merge
// replaces it (check-and-set on its version), and the fetches are recorded
// again.
func (b *Backend) readInstances(ctx context.Context, p string) (instancesDoc, int, error) {
	var doc instancesDoc
	data, ver, err := b.kvMount().entry(ctx, p)
	if err != nil || data == nil {
		return doc, ver, err
	}
	if err := decode(data, &doc); err != nil {
		b.malformed(p, err, "counted as no observation; the next fetches replace it")
		return instancesDoc{}, ver, nil
	}
	return doc, ver, nil
}

// maxSlots bounds the entries a decision may take: the first, and one more
// for each malformed one before it.
const maxSlots = 4

// readDecision reads the decision at p into v: the first entry of its
// slots that check accepts. A malformed entry (not the decision its path
// names: another version's, without a time) cannot be rewritten (keyd's
// policy creates decisions, never updates them): it is reported by Problems
// and skipped, and the decision is made again in the next slot, where every
// replica finds it. free is the slot to create it in when it is absent
// ("" when every slot is taken by a malformed entry).
func readDecision[T any](ctx context.Context, b *Backend, p string, check func(T) error) (v T, ok bool, free string, err error) {
	for n := 1; n <= maxSlots; n++ {
		sp := slotPath(p, n)
		var got T
		data, ver, err := b.kvMount().entry(ctx, sp)
		if err != nil {
			return v, false, "", err
		}
		if data == nil && ver > 0 {
			// Deleted (a KV soft delete): it can be neither read nor created again.
			b.malformed(sp, errors.New("its current version is deleted"), "ignored; the decision is made again in the next entry")
			continue
		}
		if data == nil {
			return v, false, sp, nil
		}
		derr := decode(data, &got)
		if derr == nil {
			derr = check(got)
		}
		if derr == nil {
			return got, true, sp, nil
		}
		b.malformed(sp, derr, "ignored; the decision is made again in the next entry")
	}
	return v, false, "", nil
}

// malformed reports the malformed KV entry p (Problems), once per path.
func (b *Backend) malformed(p string, why error, what string) {
	msg := fmt.Sprintf("malformed Vault KV entry %s %s (%v); examine it (a bad restore, a hand edit?), see operations.md on bad files", b.kvPath(p), what, why)
	if _, seen := b.kvProblems.LoadOrStore(p, msg); !seen && b.log != nil {
		b.log.Error("malformed propagation entry in Vault KV", "path", b.kvPath(p), "err", why)
	}
}

// Problems lists the malformed KV entries of the propagation store this
// process has met (since its start): keyd keeps serving around them.
func (b *Backend) Problems() []string {
	var out []string
	b.kvProblems.Range(func(_, msg any) bool {
		out = append(out, msg.(string))
		return true
	})
	sort.Strings(out)
	return out
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
		func(v int) (signer.Activation, bool, error) {
			a, ok, _, err := readDecision(ctx, b, activationPath(v), func(a signer.Activation) error { return a.Check(v) })
			return a, ok, err
		},
		func(v int, client string) (signer.Confirmation, bool, error) {
			c, ok, _, err := readDecision(ctx, b, confirmationPath(v, client), func(c signer.Confirmation) error { return c.Check(v, client) })
			return c, ok, err
		})
	return out, err
}

// Confirm stores c unless its client is confirmed for its version already,
// and returns the stored confirmation.
func (b *Backend) Confirm(ctx context.Context, c signer.Confirmation) (signer.Confirmation, error) {
	return createOnce(ctx, b, confirmationPath(c.Version, c.Client), c, func(got signer.Confirmation) error { return got.Check(c.Version, c.Client) })
}

// Activate stores a unless the version's activation exists (check-and-set
// 0), and returns the stored one: every replica follows the first.
func (b *Backend) Activate(ctx context.Context, a signer.Activation) (signer.Activation, error) {
	return createOnce(ctx, b, activationPath(a.Version), a, func(got signer.Activation) error { return got.Check(a.Version) })
}

// createOnce creates the decision at p (in its first free slot) unless it
// exists, and returns the stored one: v when this call created it, else
// the one read back (another replica's, when it was first).
func createOnce[T any](ctx context.Context, b *Backend, p string, v T, check func(T) error) (T, error) {
	var zero T
	data, err := encode(v)
	if err != nil {
		return zero, err
	}
	for range maxSlots {
		stored, ok, free, err := readDecision(ctx, b, p, check)
		switch {
		case err != nil:
			return zero, err
		case ok:
			return stored, nil
		case free == "":
			return zero, fmt.Errorf("vault: %s and the %d entries after it are malformed: %w", b.kvPath(p), maxSlots-1, signer.ErrMalformed)
		}
		created, err := b.kvMount().create(ctx, free, data)
		if err != nil {
			return zero, err
		}
		if created {
			var out T
			return out, decode(data, &out)
		}
		// Another replica created it first: read it back (or, if that one is
		// malformed, go on to the next slot).
	}
	return zero, fmt.Errorf("vault: %s: no entry could be created or read", b.kvPath(p))
}

// Decisions returns every confirmation and activation the store holds,
// whatever its version (keyd audit verify checks each one has its event).
// It lists <kv>/metadata/propagation/: the token needs list there (the
// keyd-server and keyd-auditor policies grant it).
func (b *Backend) Decisions(ctx context.Context) (signer.Observed, error) {
	var out signer.Observed
	kv := b.kvMount()
	names, err := kv.list(ctx, activationsDir)
	if err != nil {
		return out, err
	}
	for _, v := range slotBases(names) {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || strconv.Itoa(n) != v {
			continue
		}
		a, ok, _, err := readDecision(ctx, b, activationPath(n), func(a signer.Activation) error { return a.Check(n) })
		if err != nil {
			return out, err
		}
		if ok {
			if out.Activations == nil {
				out.Activations = map[int]signer.Activation{}
			}
			out.Activations[n] = a
		}
	}
	return out, b.listConfirmations(ctx, &out)
}

func (b *Backend) listConfirmations(ctx context.Context, out *signer.Observed) error {
	kv := b.kvMount()
	dirs, err := kv.list(ctx, confirmationsDir)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		dir, _ := d.(string)
		n, err := strconv.Atoi(strings.TrimSuffix(dir, "/"))
		if !strings.HasSuffix(dir, "/") || err != nil || n <= 0 {
			continue
		}
		files, err := kv.list(ctx, versionConfirmationsDir(dir))
		if err != nil {
			return err
		}
		for _, base := range slotBases(files) {
			c, ok, _, err := readDecision(ctx, b, versionConfirmationsDir(dir)+base, func(c signer.Confirmation) error {
				if err := c.Check(n, c.Client); err != nil {
					return err
				}
				if signer.PathName(c.Client) != base {
					return fmt.Errorf("%w: a confirmation of %q stored under another name", signer.ErrMalformed, c.Client)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if ok {
				out.Confirmations = append(out.Confirmations, c)
			}
		}
	}
	return nil
}

// slotBases is the decision paths of a listing: each entry name without its
// slot suffix ("~" and digits after a first character), once, in order.
func slotBases(names []any) []string {
	var out []string
	for _, x := range names {
		s, _ := x.(string)
		if s == "" || strings.HasSuffix(s, "/") {
			continue
		}
		if i := strings.LastIndex(s, "~"); i > 0 && i+1 < len(s) && strings.Trim(s[i+1:], "0123456789") == "" {
			s = s[:i]
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
