package api

import (
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/rotation"
)

// The HTTP contract's own types: what the routes answer, as clients read
// it (docs/openapi.yaml). The handlers map the lifecycle's types to them,
// so a change inside internal/rotation cannot change the wire; the CLI
// decodes them. The member order of each is the order on the wire.

// SignResponse is the answer of POST /v1/sign.
type SignResponse struct {
	Token     string `json:"token"`
	KID       string `json:"kid"`
	Alg       string `json:"alg"`
	ExpiresAt string `json:"expires_at"`
}

// Key is one entry of GET /v1/keys.
type Key struct {
	KID         string  `json:"kid"`
	Version     int     `json:"version"`
	Alg         string  `json:"alg"`
	State       string  `json:"state"`
	CreatedAt   string  `json:"created_at"`
	ActivatesAt string  `json:"activates_at"`
	RetiresAt   *string `json:"retires_at"`
	Emergency   bool    `json:"emergency,omitempty"`
	// WaitingFor (an extension): the expected clients a pending gated key
	// still waits for.
	WaitingFor []WaitInfo `json:"waiting_for,omitempty"`
}

// KeyList is the answer of GET /v1/keys.
type KeyList struct {
	Keys []Key `json:"keys"`
}

// Find returns the entry of version v, or nil.
func (l KeyList) Find(v int) *Key {
	for i := range l.Keys {
		if l.Keys[i].Version == v {
			return &l.Keys[i]
		}
	}
	return nil
}

// RotateResponse is the answer of POST /v1/rotate: the new key, or the one
// already pending.
type RotateResponse struct {
	KID     string `json:"kid"`
	State   string `json:"state"`
	Version int    `json:"version"`
}

// AuditPage is the answer of GET /v1/audit.
type AuditPage struct {
	ChainValid bool          `json:"chain_valid"`
	Events     []audit.Event `json:"events"`
}

// Readiness is the answer of GET /readyz (200 when Ready, else 503).
type Readiness struct {
	Ready     bool            `json:"ready"`
	Backend   string          `json:"backend"`
	JWKSKeys  int             `json:"jwks_keys"`
	Lifecycle LifecycleHealth `json:"lifecycle"`
	// Storage lists problems with the files keyd keeps; they do not make
	// keyd unready (it serves what is sound) but need an operator.
	Storage []string `json:"storage_problems,omitempty"`
	// Login is why keyd's own Vault login fails, while it does.
	Login string `json:"backend_login_problem,omitempty"`
	// PID is the answering keyd's process ID (an extension).
	PID int `json:"pid,omitempty"`
}

// LifecycleHealth is the lifecycle member of /readyz: backend, rotation
// and configuration health.
type LifecycleHealth struct {
	BackendUp      bool   `json:"backend_up"`
	LastError      string `json:"last_error,omitempty"`
	ConfigMismatch string `json:"config_mismatch,omitempty"`
	// RotationOverdue: the scheduled rotation is past due and not done
	// (not "due now", which is the lifecycle plan's RotationDue).
	RotationOverdue bool   `json:"rotation_overdue"`
	NextTransition  string `json:"next_transition,omitempty"`
	ActiveVersion   int    `json:"active_version,omitempty"`
	// Failing is the step the loop is backing off from (absent when healthy).
	Failing *Failure `json:"failing,omitempty"`
	// EmergencyPending is an emergency rotation not yet complete: the keys
	// up to its version do not sign meanwhile.
	EmergencyPending *Emergency `json:"emergency_pending,omitempty"`
	// LastRefresh is when the keys of the JWKS served were last read;
	// Stale says it is too long ago (/readyz answers 503).
	LastRefresh string `json:"last_refresh,omitempty"`
	Stale       bool   `json:"stale"`
}

// Failure is a lifecycle step that keeps failing.
type Failure struct {
	Op       string    `json:"op"`
	Error    string    `json:"error"`
	Since    time.Time `json:"since"`
	Failures int       `json:"consecutive_failures"`
	RetryAt  time.Time `json:"retry_at"`
}

// Emergency is an emergency rotation that has not completed.
type Emergency struct {
	After  int       `json:"compromised_up_to_version"`
	Reason string    `json:"reason"`
	Actor  string    `json:"actor"`
	Since  time.Time `json:"since"`
	// Stored is false while the intent is held only in this process's
	// memory: other replicas do not know of it and a restart forgets it.
	Stored    bool   `json:"intent_stored"`
	LastError string `json:"last_error,omitempty"`
}

// lifecycleOf maps the manager's health to the contract's.
func lifecycleOf(h rotation.Health) LifecycleHealth {
	l := LifecycleHealth{
		BackendUp: h.BackendUp, LastError: h.LastError, ConfigMismatch: h.ConfigMismatch,
		RotationOverdue: h.RotationDue, NextTransition: h.NextTransition, ActiveVersion: h.ActiveVersion,
		LastRefresh: h.LastRefresh, Stale: h.Stale,
	}
	if f := h.Failing; f != nil {
		l.Failing = &Failure{Op: f.Op, Error: f.Error, Since: f.Since, Failures: f.Failures, RetryAt: f.RetryAt}
	}
	if e := h.EmergencyPending; e != nil {
		l.EmergencyPending = &Emergency{After: e.After, Reason: e.Reason, Actor: e.Actor, Since: e.Since, Stored: e.Stored, LastError: e.LastError}
	}
	return l
}
