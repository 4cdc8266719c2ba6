package policy

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// What the admin API reads and changes of the policy state: complaints
// against a number, its flags (one-ring mark, victim protection), and
// complaints filed by operators.

// Flag names of the admin API.
const (
	FlagOneRing = "one_ring"
	FlagProtect = "protect"
)

// ErrNoStore: the policy keeps no state (no policy file, or a test engine).
var ErrNoStore = errors.New("policy: no state store")

// NumberState is what the policy holds about a number.
type NumberState struct {
	Complaints int                  // within ComplaintWindow
	Window     time.Duration        // the reputation rules' longest window (24h without one)
	OneRing    time.Time            // flagged as a one-ring caller until (zero: not flagged)
	Protect    map[string]time.Time // protect rule → protected as a callee until
}

// complaintWindow is the longest window of the reputation rules.
func (e *Engine) complaintWindow() time.Duration {
	w := 24 * time.Hour
	found := false
	for i := range e.rules {
		if r := &e.rules[i]; r.typ.name == "reputation" && (!found || r.Window > w) {
			w, found = r.Window, true
		}
	}
	return w
}

// Inspect reads a number's complaints and flags.
func (e *Engine) Inspect(ctx context.Context, number string, now time.Time) (NumberState, error) {
	if e.store == nil {
		return NumberState{}, ErrNoStore
	}
	st := NumberState{Window: e.complaintWindow(), Protect: map[string]time.Time{}}
	var err error
	if st.Complaints, err = e.store.Complaints().Count(ctx, number, st.Window, now); err != nil {
		return st, fmt.Errorf("policy: complaints of %s: %w", number, err)
	}
	until, on, err := e.store.Flags().Get(ctx, keyOneRing+number, now)
	if err != nil {
		return st, fmt.Errorf("policy: one-ring flag of %s: %w", number, err)
	}
	if on {
		st.OneRing = until
	}
	for _, name := range e.protectRules() {
		until, on, err := e.store.Flags().Get(ctx, protectKey(name, number), now)
		if err != nil {
			return st, fmt.Errorf("policy: protect flag of %s: %w", number, err)
		}
		if on {
			st.Protect[name] = until
		}
	}
	return st, nil
}

// ClearFlag clears a number's flag (FlagOneRing, or FlagProtect of every
// protect rule).
func (e *Engine) ClearFlag(ctx context.Context, number, flag string, now time.Time) error {
	if e.store == nil {
		return ErrNoStore
	}
	var keys []string
	switch flag {
	case FlagOneRing:
		keys = []string{keyOneRing + number}
	case FlagProtect:
		for _, name := range e.protectRules() {
			keys = append(keys, protectKey(name, number))
		}
	default:
		return fmt.Errorf("policy: no flag %q (want %s or %s)", flag, FlagOneRing, FlagProtect)
	}
	for _, k := range keys {
		if err := e.store.Flags().Set(ctx, k, 0, now); err != nil {
			return fmt.Errorf("policy: clear %s of %s: %w", flag, number, err)
		}
	}
	return nil
}

// Complain records a complaint against a calling number, counted by the
// reputation rules exactly like a 607 Unwanted from the callee for a call
// verified at A. It returns the number's complaints in the window.
func (e *Engine) Complain(ctx context.Context, number string, now time.Time) (int, error) {
	if e.store == nil {
		return 0, ErrNoStore
	}
	if err := e.store.Complaints().Add(ctx, number, now); err != nil {
		return 0, fmt.Errorf("policy: complaint against %s: %w", number, err)
	}
	n, err := e.store.Complaints().Count(ctx, number, e.complaintWindow(), now)
	if err != nil {
		return 0, fmt.Errorf("policy: complaints of %s: %w", number, err)
	}
	return n, nil
}

func (e *Engine) protectRules() []string {
	var names []string
	for i := range e.rules {
		if e.rules[i].typ.name == "protect" {
			names = append(names, e.rules[i].Name)
		}
	}
	return names
}

// protectKey is the flag of callee under protection by rule.
func protectKey(rule, callee string) string { return "protect:" + rule + ":" + callee }
