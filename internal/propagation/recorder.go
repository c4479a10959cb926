// Package propagation records which key versions the verifiers' JWKS
// fetches were served (Keyd-Client, Keyd-Instance) in memory, on the JWKS
// request path, and writes them in batches to the store every replica
// shares, only as often as the contract allows.
package propagation

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openedx-keyd/keyd/internal/clock"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// MaxInstances bounds the (client, instance) pairs held in memory, so forged
// headers cannot grow it without limit; pairs beyond it are not recorded
// until silent ones are forgotten.
const MaxInstances = 10000

// MaxOtherClients bounds the names of clients that are not stored (not
// expected) kept to be logged once: anyone can send a Keyd-Client name.
const MaxOtherClients = 100

// Saver is the shared store the recorder writes to (the data dir, or Vault
// KV): it merges obs into what it holds and forgets instances that last
// fetched before forgetBefore.
type Saver interface {
	SaveObservations(ctx context.Context, obs []signer.Observation, forgetBefore time.Time) error
}

type id struct{ client, instance string }

type entry struct {
	lastFetch  atomic.Int64 // Unix nanoseconds
	maxVersion atomic.Int64
	// What the store holds from this process (the batcher's alone).
	savedFetch, savedVersion int64
}

// Recorder holds the observations of this process. Fetched is cheap and
// safe for concurrent use; Flush and Run write the store.
type Recorder struct {
	clock clock.Clock
	// Stored, when set, says which clients' observations go to the store
	// (the expected clients: no other is ever read); the others are only
	// logged once, so that an operator sees who fetches. Nil: all.
	Stored func(client string) bool

	mu sync.RWMutex
	m  map[id]*entry

	full        atomic.Bool
	seenClients map[string]bool // clients logged once (Flush only)
	// others are clients that are not stored, seen since the last Flush
	// (by name, with one instance), to be logged once; never in m.
	othersMu sync.Mutex
	others   map[string]string
}

// NewRecorder returns an empty Recorder (nil clk: the real clock).
func NewRecorder(clk clock.Clock) *Recorder {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Recorder{clock: clk, m: map[id]*entry{}, seenClients: map[string]bool{}, others: map[string]string{}}
}

// Fetched is the jwks.Handler hook: a JWKS answered to r whose document
// holds versions up to maxVersion (0: none counted, for a HEAD or a 304 to
// If-None-Match: *). A request without one valid Keyd-Instance and one
// valid Keyd-Client ([A-Za-z0-9._:-]{1,64}) is not recorded, nor is one
// that received no key set (see Record); one with a valid Keyd-Client alone
// (a one-off process) is only logged, once per name.
func (r *Recorder) Fetched(req *http.Request, maxVersion int) {
	cl := req.Header["Keyd-Client"]
	if len(cl) != 1 || !signer.ValidName(cl[0]) {
		return
	}
	inst := req.Header["Keyd-Instance"]
	if len(inst) != 1 || !signer.ValidName(inst[0]) {
		r.other(cl[0], "")
		return
	}
	r.Record(cl[0], inst[0], maxVersion, r.clock.Now())
}

// Record notes a fetch by (client, instance) at t served versions up to
// maxVersion. A fetch that received no key set (maxVersion 0: a HEAD, a 304
// to If-None-Match: *) is not recorded: JWKS requests are unauthenticated,
// and an instance made live by such a request would hold a gated key back
// (live, holding no version) until the max wait, one request per instance
// window. Only a fetch that received a key set (a 200 GET, or a 304 for
// the ETag of a document) makes an instance live; it holds that document.
func (r *Recorder) Record(client, instance string, maxVersion int, t time.Time) {
	if r.Stored != nil && !r.Stored(client) {
		r.other(client, instance) // only logged: it must not use up MaxInstances
		return
	}
	if maxVersion <= 0 {
		return
	}
	k := id{client, instance}
	r.mu.RLock()
	e := r.m[k]
	r.mu.RUnlock()
	if e == nil {
		if e = r.add(k); e == nil {
			return
		}
	}
	raise(&e.lastFetch, t.UnixNano())
	raise(&e.maxVersion, int64(maxVersion))
}

func (r *Recorder) add(k id) *entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.m[k]; e != nil {
		return e
	}
	if len(r.m) >= MaxInstances {
		r.full.Store(true)
		return nil
	}
	e := &entry{}
	r.m[id{strings.Clone(k.client), strings.Clone(k.instance)}] = e
	return e
}

// other notes a fetch by a client that is not stored, to be logged once.
func (r *Recorder) other(client, instance string) {
	r.othersMu.Lock()
	defer r.othersMu.Unlock()
	if _, ok := r.others[client]; !ok && len(r.others) < MaxOtherClients {
		r.others[strings.Clone(client)] = strings.Clone(instance)
	}
}

// logClient logs a client's first fetch, for at most 2 × MaxOtherClients
// names (under mu).
func (r *Recorder) logClient(client, instance string, log *slog.Logger) {
	if r.seenClients[client] || len(r.seenClients) >= 2*MaxOtherClients {
		return
	}
	r.seenClients[client] = true
	if instance == "" { // a fetch without Keyd-Instance
		log.Info("jwks fetched by a client", "client", client)
		return
	}
	log.Info("jwks fetched by a client", "client", client, "instance", instance)
}

func raise(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// Flush writes what the contract allows to s: each instance whose highest
// version grew since this process last wrote it, or whose last fetch in the
// store is older than maxAge (and that fetched since). Instances silent for
// longer than forget are dropped from memory and from the store. It reports
// how many it wrote and whether a version grew.
func (r *Recorder) Flush(ctx context.Context, s Saver, maxAge, forget time.Duration, log *slog.Logger) (int, bool, error) {
	now := r.clock.Now()
	type dirty struct {
		e           *entry
		fetch, vers int64
	}
	var obs []signer.Observation
	var todo []dirty
	grew := false
	r.othersMu.Lock()
	others := r.others
	r.others = map[string]string{}
	r.othersMu.Unlock()
	r.mu.Lock()
	for c, inst := range others {
		r.logClient(c, inst, log)
	}
	for k, e := range r.m {
		f, v := e.lastFetch.Load(), e.maxVersion.Load()
		if now.Sub(time.Unix(0, f)) > forget {
			delete(r.m, k)
			continue
		}
		r.logClient(k.client, k.instance, log)
		if v <= e.savedVersion && (f <= e.savedFetch || now.Sub(time.Unix(0, e.savedFetch)) < maxAge) {
			continue
		}
		grew = grew || v > e.savedVersion
		todo = append(todo, dirty{e, f, v})
		obs = append(obs, signer.Observation{Client: k.client, Instance: k.instance, LastFetch: time.Unix(0, f).UTC(), MaxVersion: int(v)})
	}
	r.mu.Unlock()
	if r.full.Swap(false) {
		log.Warn("too many JWKS client instances to record; new ones are ignored until silent ones are forgotten", "limit", MaxInstances)
	}
	if len(obs) == 0 {
		return 0, false, nil
	}
	if err := s.SaveObservations(ctx, obs, now.Add(-forget)); err != nil {
		return 0, false, err
	}
	r.mu.Lock()
	for _, d := range todo {
		d.e.savedFetch, d.e.savedVersion = max(d.e.savedFetch, d.fetch), max(d.e.savedVersion, d.vers)
	}
	r.mu.Unlock()
	return len(obs), grew, nil
}

// Run flushes every interval until ctx ends, then once more. grew is
// called after a write in which an instance's version grew (the lifecycle
// loop then looks at the gate at once); it may be nil.
func (r *Recorder) Run(ctx context.Context, s Saver, every, maxAge, forget time.Duration, log *slog.Logger, grew func()) {
	failing := ""
	flush := func(ctx context.Context) {
		_, g, err := r.Flush(ctx, s, maxAge, forget, log)
		switch {
		case err != nil && err.Error() != failing:
			failing = err.Error()
			log.Warn("cannot store JWKS fetch observations; retrying", "err", err)
		case err == nil && failing != "":
			failing = ""
			log.Info("JWKS fetch observations stored again")
		}
		if g && grew != nil {
			grew()
		}
	}
	clock.Every(ctx, r.clock, every, func() { flush(ctx) })
	final, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	flush(final)
}
