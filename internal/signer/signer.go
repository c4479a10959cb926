// Package signer defines the key backend that keyd drives (local files or
// Vault transit) and assembles JWS tokens through it without ever touching
// private key material.
package signer

import (
	"context"
	"crypto"
	"errors"
	"time"
)

// Algorithm is a JWS algorithm keyd can sign with.
type Algorithm string

// The algorithms keyd supports. RSA keys are always 2048-bit.
const (
	RS512 Algorithm = "RS512"
	RS256 Algorithm = "RS256"
	ES256 Algorithm = "ES256"
	EdDSA Algorithm = "EdDSA"
)

// Algorithms lists the supported algorithms, default first.
var Algorithms = []Algorithm{RS512, RS256, ES256, EdDSA}

// ParseAlgorithm returns the Algorithm named s, or an error naming the valid ones.
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms {
		if string(a) == s {
			return a, nil
		}
	}
	return "", errors.New("algorithm must be one of RS512, RS256, ES256, EdDSA")
}

// Record is the lifecycle record of one key version (docs/design.md "Key lifecycle", rule 0). It is
// written once, when the version is created, and never rewritten.
type Record struct {
	Version     int       `json:"version"`
	Algorithm   Algorithm `json:"algorithm"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatesAt time.Time `json:"activates_at"`
	// The settings in force when the version was created. Replicas compare
	// their own configuration with the newest record's and refuse to create
	// or destroy keys while they disagree.
	Schedule         string        `json:"schedule"`
	PropagationDelay time.Duration `json:"propagation_delay"`
	// RetireAfter is max-token-lifetime + 2*clock-skew: how long the key
	// stays published after it stops signing.
	RetireAfter time.Duration `json:"retire_after"`
	Emergency   bool          `json:"emergency,omitempty"`
	// Observed propagation, fixed at creation: when ExpectedClients is set
	// the key activates at the later of ActivatesAt and the moment every
	// client is confirmed, and at ActivatesAt + ActivationMaxWait at the
	// latest; InstanceWindow is how recent a fetch keeps an instance live.
	ExpectedClients   []string      `json:"expected_clients,omitempty"`
	InstanceWindow    time.Duration `json:"instance_window,omitempty"`
	ActivationMaxWait time.Duration `json:"activation_max_wait,omitempty"`
	Reason            string        `json:"reason,omitempty"`
	Actor             string        `json:"actor,omitempty"`
}

// Key is one version the backend still holds: its record and public key.
type Key struct {
	Record
	Public crypto.PublicKey
	// HasRecord is false when the backend holds the key but its lifecycle
	// record is missing (a crash between creating the key and writing the
	// record); Record is then derived from the backend's own data.
	HasRecord bool
}

// Credential is whatever a caller presented, passed through to the backend
// for the sign call. In Vault mode it is the caller's Vault token, used for
// that one request only. In local mode it is ignored by the backend (the API
// has already checked the role).
type Credential struct {
	Token string
}

// Errors callers branch on.
var (
	// ErrUnavailable means the backend could not be reached; the API answers 503.
	ErrUnavailable = errors.New("signer: backend unavailable")
	// ErrPermissionDenied means the backend refused the caller's credential.
	ErrPermissionDenied = errors.New("signer: permission denied")
	// ErrUnauthenticated means the backend does not know the caller's credential.
	ErrUnauthenticated = errors.New("signer: unknown or expired credential")
	// ErrAlreadyRotated means another writer created the version first.
	ErrAlreadyRotated = errors.New("signer: version already created")
	// ErrNoKey means the version does not exist (or no longer exists).
	ErrNoKey = errors.New("signer: no such key version")
)

// Backend holds the key versions. Implementations: local (files in the data
// dir) and vault (transit + KV v2). Every method is safe for concurrent use.
type Backend interface {
	// Keys lists every version whose key material still exists, oldest first.
	Keys(ctx context.Context) ([]Key, error)
	// Create makes version rec.Version, which must be exactly one more than
	// the newest version (0 when there is none). It returns ErrAlreadyRotated
	// when another writer got there first.
	Create(ctx context.Context, rec Record) (Key, error)
	// PinSigning makes the backend itself refuse signatures with any version
	// below v (Vault: min_encryption_version).
	PinSigning(ctx context.Context, v int) error
	// DestroyBelow destroys the private material of every version below v.
	DestroyBelow(ctx context.Context, v int) error
	// Sign signs input (the JWS signing input) with version v, using cred.
	// The result is the raw JWS signature (R||S for ECDSA).
	Sign(ctx context.Context, cred Credential, v int, alg Algorithm, input []byte) ([]byte, error)
	// SaveIntent durably records an emergency before its key is created, so
	// a crash half-way completes as an emergency on the next tick.
	SaveIntent(ctx context.Context, in Intent) error
	// LoadIntent returns the pending emergency intent, or nil when there is none.
	LoadIntent(ctx context.Context) (*Intent, error)
	// ClearIntent removes the intent once the emergency is complete.
	ClearIntent(ctx context.Context) error
	// Name is "local" or "vault".
	Name() string
}

// Intent is a recorded emergency rotation that has not completed yet.
type Intent struct {
	// After is the newest version when the emergency was requested: the
	// emergency key is the first version above it.
	After  int       `json:"after"`
	Reason string    `json:"reason"`
	Actor  string    `json:"actor"`
	At     time.Time `json:"at"`
}
