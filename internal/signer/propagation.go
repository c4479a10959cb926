package signer

import (
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Observed propagation (docs/design.md "Observed propagation"): what keyd learns
// from the JWKS fetches of the verifiers, shared by every replica through
// the backend's store (the data dir, or Vault KV).

// Observation is one verifier instance as the JWKS fetches showed it.
type Observation struct {
	Client    string    `json:"client"`
	Instance  string    `json:"instance"`
	LastFetch time.Time `json:"last_fetch"`
	// MaxVersion is the highest key version in a document served to it (0:
	// none yet, e.g. only HEAD requests).
	MaxVersion int `json:"max_version"`
}

// Who confirmed a client for a version.
const (
	ByFetch = "fetch" // every live instance of the client was served the key
	ByAdmin = "admin" // an admin confirmed it (a service reading a static setting)
)

// Confirmation says that a client holds a key version. It is created once
// and never rewritten: once confirmed for a version, a client stays so.
type Confirmation struct {
	Client  string    `json:"client"`
	Version int       `json:"version"`
	By      string    `json:"by"` // ByFetch or ByAdmin
	At      time.Time `json:"at"`
	Actor   string    `json:"actor,omitempty"`
}

// Activation is the actual activation time of a gated key, written once
// (create-only) so that every replica agrees on it.
type Activation struct {
	Version int       `json:"version"`
	At      time.Time `json:"at"`
	// Unconfirmed names the expected clients not confirmed when the key
	// activated at its max wait (empty when every client was confirmed).
	Unconfirmed []string `json:"unconfirmed,omitempty"`
}

// ErrMalformed marks a stored propagation entry that cannot be read as what
// its path says it is (not JSON, another version's or client's, a missing
// time): the stores never follow it (an activation without a time must
// never mean "active since activates_at").
var ErrMalformed = errors.New("malformed")

// Check reports whether a is a readable activation of version v.
func (a Activation) Check(v int) error {
	switch {
	case a.Version != v:
		return fmt.Errorf("%w: an activation of version %d stored as version %d's", ErrMalformed, a.Version, v)
	case a.At.IsZero():
		return fmt.Errorf("%w: an activation without a time", ErrMalformed)
	}
	return nil
}

// Check reports whether c is a readable confirmation of client for version v.
func (c Confirmation) Check(v int, client string) error {
	switch {
	case c.Version != v || c.Client != client:
		return fmt.Errorf("%w: a confirmation of %q for version %d stored as %q's for version %d", ErrMalformed, c.Client, c.Version, client, v)
	case c.By != ByFetch && c.By != ByAdmin:
		return fmt.Errorf("%w: a confirmation by %q (neither %s nor %s)", ErrMalformed, c.By, ByFetch, ByAdmin)
	case c.At.IsZero():
		return fmt.Errorf("%w: a confirmation without a time", ErrMalformed)
	}
	return nil
}

// Observed is the observed propagation as the store holds it: the fetches,
// confirmations and actual activations every replica shares.
type Observed struct {
	Observations  []Observation
	Confirmations []Confirmation
	Activations   map[int]Activation // by version
}

// Gated reports whether the key waits for its expected clients before it
// activates (fixed in its record at creation; emergency keys never wait).
func (r Record) Gated() bool { return len(r.ExpectedClients) > 0 && !r.Emergency }

// Expects reports whether client is one the key waits for.
func (r Record) Expects(client string) bool { return slices.Contains(r.ExpectedClients, client) }

// ValidName reports whether s is a valid Keyd-Client or Keyd-Instance value:
// [A-Za-z0-9._:-]{1,64}.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

var plainName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)

// PathName is a client name as a storage path segment: as it is when it is
// plain, else "~" and its base64url form (so "..", or a name with a colon,
// never becomes a path of its own).
func PathName(name string) string {
	if plainName.MatchString(name) {
		return name
	}
	return "~" + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// MergeObservations merges add into cur: per (client, instance) the later
// fetch and the higher version; those fetched last before forgetBefore go.
func MergeObservations(cur, add []Observation, forgetBefore time.Time) []Observation {
	type id struct{ c, i string }
	at := map[id]int{}
	out := make([]Observation, 0, len(cur)+len(add))
	for _, o := range append(append([]Observation(nil), cur...), add...) {
		k := id{o.Client, o.Instance}
		j, ok := at[k]
		if !ok {
			at[k] = len(out)
			out = append(out, o)
			continue
		}
		if o.LastFetch.After(out[j].LastFetch) {
			out[j].LastFetch = o.LastFetch
		}
		out[j].MaxVersion = max(out[j].MaxVersion, o.MaxVersion)
	}
	return slices.DeleteFunc(out, func(o Observation) bool { return o.LastFetch.Before(forgetBefore) })
}

// ReadDecisions fills out with, for each version, its activation and the
// confirmations of clients, read with activation and confirmation (each
// reports false when the entry does not exist): the part of a store's
// Observed shared by the backends.
func ReadDecisions(out *Observed, versions []int, clients []string,
	activation func(v int) (Activation, bool, error), confirmation func(v int, client string) (Confirmation, bool, error)) error {
	for _, v := range versions {
		a, ok, err := activation(v)
		if err != nil {
			return err
		}
		if ok {
			if out.Activations == nil {
				out.Activations = map[int]Activation{}
			}
			out.Activations[v] = a
		}
		for _, c := range clients {
			conf, ok, err := confirmation(v, c)
			if err != nil {
				return err
			}
			if ok {
				out.Confirmations = append(out.Confirmations, conf)
			}
		}
	}
	return nil
}
