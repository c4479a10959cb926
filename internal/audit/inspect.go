package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Verification is what one check of the chain found. It is the one source
// of `keyd audit verify`, of GET /v1/audit's chain_valid and of the audit
// report, so that they never disagree: Err is the verdict all three give.
type Verification struct {
	Summary
	// Events are the readable events in stored order, those of a broken
	// chain too (the report shows them, marked); Trusted of them, from the
	// first, precede the first bad record and can be trusted.
	Events  []Event
	Trusted int
	// Chain is nil or the *ChainError naming the first bad record.
	Chain error
	// HeadChecked: the chain was compared with the head the key store
	// recorded; Head is what that found (nil: it matches).
	HeadChecked bool
	Head        error
	// Reconciled: the chain was compared with the key versions the backend
	// holds (Versions); Reconcile is nil or what that found (a
	// *ReconcileError, or a kid mismatch).
	Reconciled bool
	Versions   []KeyVersion
	Reconcile  error
	// DecisionsChecked: the chain was compared with the propagation
	// decisions the store holds; Decisions is nil or the *DecisionError
	// listing those without their event.
	DecisionsChecked bool
	Decisions        error
	// Problems are what the store reports wrong beyond the events (lines
	// that are not events, a log that disagrees with its head): each makes
	// the chain invalid.
	Problems []string
	// NotChecked says what this verification could not check, and why.
	NotChecked []string
	// Incomplete, when not "", is why the chain could not be reconciled
	// with what must back it (a data dir's keys and head): the links may
	// hold, but `keyd audit verify` does not call such a chain intact.
	Incomplete string
}

// ErrStoreProblems means the store reported problems with the stored chain
// (Verification.Problems) that its events alone do not show.
var ErrStoreProblems = errors.New("audit: the store reports problems with the stored chain")

// Err is the verdict: the first of the chain's first bad record, a head
// mismatch, a failed reconciliation and the store's problems; nil when
// everything that was checked holds.
func (v Verification) Err() error {
	switch {
	case v.Chain != nil:
		return v.Chain
	case v.Head != nil:
		return v.Head
	case v.Reconcile != nil:
		return v.Reconcile
	case v.Decisions != nil:
		return v.Decisions
	case len(v.Problems) > 0:
		return fmt.Errorf("%w: %s", ErrStoreProblems, v.Problems[0])
	}
	return nil
}

// InspectFile checks the local audit log at path offline as CheckFile does
// (every line, the chain, the head when not nil, the reconciliation with
// versions when not nil) and returns everything it found. It takes no lock
// and writes nothing. The error is for a file that cannot be read.
func InspectFile(path string, versions []KeyVersion, head *Head) (Verification, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Verification{}, fmt.Errorf("audit: %w", err)
	}
	entries := parseLines(data)
	v := Verification{Summary: Summary{Records: len(entries)}}
	var lines []int
	for _, e := range entries {
		if e.fatal == "" {
			v.Events = append(v.Events, e.ev)
			lines = append(lines, e.line)
		}
	}
	if n := len(v.Events); n > 0 {
		v.HeadSeq, v.HeadHash = v.Events[n-1].Seq, v.Events[n-1].Hash
	}
	v.Chain = verifyEntries(entries)
	v.Trusted = trustedBefore(v.Chain, lines)
	if head != nil {
		v.checkHead(*head)
	}
	v.reconcile(versions)
	return v, nil
}

// InspectEvents checks events read from a store as VerifyStore does, with
// the store's own problems (nil for a store that reports none), and returns
// everything it found. versions nil: not reconciled.
func InspectEvents(events []Event, versions []KeyVersion, problems []string) Verification {
	v := Verification{Summary: Summary{Records: len(events)}, Events: events, Problems: problems}
	if n := len(events); n > 0 {
		v.HeadSeq, v.HeadHash = events[n-1].Seq, events[n-1].Hash
	}
	v.Chain = Verify(events)
	lines := make([]int, len(events))
	for i := range lines {
		lines[i] = i + 1
	}
	v.Trusted = trustedBefore(v.Chain, lines)
	if len(problems) > 0 && v.Chain == nil {
		// The store saw what the events do not show (a line it skipped,
		// a log replaced under its head): none of it can be vouched for.
		v.Trusted = 0
	}
	v.reconcile(versions)
	return v
}

// InspectStore reads the whole chain from s and inspects it as
// InspectEvents does.
func InspectStore(ctx context.Context, s Store, versions []KeyVersion) (Verification, error) {
	events, err := s.Read(ctx, 0)
	if err != nil {
		return Verification{}, fmt.Errorf("audit: read chain: %w", err)
	}
	var problems []string
	if p, ok := s.(interface{ Problems() []string }); ok {
		problems = p.Problems()
	}
	return InspectEvents(events, versions, problems), nil
}

// trustedBefore is how many of the events (at lines, 1-based) come before
// the first bad record of chainErr: all of them when the chain is intact.
func trustedBefore(chainErr error, lines []int) int {
	var ce *ChainError
	if !errors.As(chainErr, &ce) {
		return len(lines)
	}
	n := 0
	for n < len(lines) && lines[n] < ce.Line {
		n++
	}
	return n
}

// checkHead compares the chain with the head the key store recorded. A log
// that holds the head's seq with another hash was rewritten: nothing in it
// can be trusted. One that ends before it lost its tail: what it holds is
// still trusted, but incomplete.
func (v *Verification) checkHead(h Head) {
	v.HeadChecked = true
	v.Head = CheckHead(v.Events, h)
	if v.Head == nil {
		return
	}
	for _, ev := range v.Events {
		if ev.Seq == h.Seq {
			v.Trusted = 0
			return
		}
	}
	if len(v.Events) == 0 || v.Events[len(v.Events)-1].Seq > h.Seq {
		v.Trusted = 0 // replaced by a chain that skips the head's seq
	}
}

// CheckDecisions compares the chain with the propagation decisions the
// store holds (read before the events): each must have its event.
func (v *Verification) CheckDecisions(decisions []Decision) {
	v.DecisionsChecked = true
	v.Decisions = ReconcileDecisions(v.Events, decisions)
}

// reconcile compares the chain with the key versions the backend holds
// (versions nil: not available).
func (v *Verification) reconcile(versions []KeyVersion) {
	if versions == nil {
		return
	}
	v.Reconciled, v.Versions = true, versions
	v.Reconcile = Reconcile(v.Events, versions)
}
