package policy

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/policy/numbers"
	"github.com/stirgate/stirgate/policy/store"
)

// Engine is one compiled policy generation: lists loaded, rules resolved.
// It is immutable and safe for concurrent use.
type Engine struct {
	store     store.Store // counters, flags, complaints; nil: stateful rules never fire
	emergency map[string]bool
	classes   map[string]map[string]bool // class -> customer set
	rules     []rule
	allowers  []int   // indexes of enforce-mode allow rules: evaluated first
	phases    [2]bool // which phases have rules
	learners  bool    // some rule learns from how calls ended (one_ring)
}

// HasRules reports whether any rule runs in phase: the pipeline leaves a
// stage without rules out of the chain.
func (e *Engine) HasRules(phase Phase) bool { return e.phases[phase] }

type rule struct {
	RuleConfig
	typ      *ruleType
	lists    []*numbers.List
	consent  []*numbers.List
	sources  []netip.Prefix
	compiled any // what typ.compile prepared (a window rule's hours)
	phase    Phase
	allower  bool // an enforce-mode allow list rule: evaluated first, in both phases
	// closed is the rejection when the store fails (on_store_error:
	// closed): the rule's own, or 503 for a tag rule. nil: fail open.
	closed *ActionConfig
}

// Phase says which of the two policy stages a rule runs in.
type Phase int

const (
	// PhaseEarly runs before verification (and on the inside before
	// signing): cheap rules that reject the most, so a flood cannot force
	// signature checks.
	PhaseEarly Phase = iota
	// PhaseVerified runs on inbound calls after verification: rules that
	// need its result (attestation, protect, reputation).
	PhaseVerified
)

// Input is what the engine knows about a call.
type Input struct {
	Phase    Phase
	Source   netip.Addr // source address
	Realm    string
	Customer string
	Caller   string // canonical numbers, "" when none
	Callee   string
	CallID   string // names the call's concurrent-call slots
	// Verification result (PhaseVerified): whether the identity was
	// verified, and its attestation A, B or C.
	Verified bool
	Attest   string
}

// Hit is one rule that matched a call, or whose store failed.
type Hit struct {
	Rule   string
	Mode   string // enforce | report
	Action string // allow | reject | tag | store_error (ActionStoreError)
	// Matched is what the call matched: the list (list, dnc), the hygiene
	// check, the key counted (a rate or concurrent rule's key,
	// caller>callee), or the rule's test (window, protect, one_ring,
	// attestation, complaints).
	Matched string
	// Entry is the evidence: the list entry that matched (a number, or a
	// prefix with *), or the numbers with counts, limit and window.
	Entry string
	typ   *ruleType // nil: the emergency hit
}

// ActionStoreError is the action of a hit that records a store failure:
// the rule could not decide, and its on_store_error let the call through
// (open) or rejected it (closed).
const ActionStoreError = "store_error"

// Decision is the engine's answer for one call.
type Decision struct {
	// Reject is set when an enforce-mode rule rejects the call.
	Reject *ActionConfig
	// Tags are headers to add for the PBX (tag rules).
	Tags map[string]string
	// Hits are every rule that matched, in evaluation order, report-mode
	// ones included: the call record's inputs.
	Hits []Hit
	// Held are the concurrent-call slots the call now holds: give them
	// back with Release when the call ends (rejected or not).
	Held []Slot
}

// Slot is one concurrent-call slot held by a call.
type Slot struct{ Key, Member string }

// Loader loads a file list; Compile resolves list paths through it.
type Loader func(l ListConfig) (*numbers.List, error)

// FileLoader loads list files relative to dir-resolving function resolve.
func FileLoader(resolve func(string) string, now time.Time) Loader {
	return func(l ListConfig) (*numbers.List, error) {
		return numbers.LoadFile(l.Name, resolve(l.File), numbers.LoadOptions{Format: l.Format, CountryCode: l.CountryCode, Now: now})
	}
}

// Compile builds an Engine from validated files (merged in order: lists and
// classes by name, rules appended). st keeps the stateful rules' counts,
// flags and complaints; it outlives the generation (state survives reloads).
func Compile(files []File, load Loader, st store.Store) (*Engine, error) {
	e := &Engine{store: st, emergency: map[string]bool{}, classes: map[string]map[string]bool{}}
	lists := map[string]*numbers.List{}
	var rules []RuleConfig
	for _, f := range files {
		for _, n := range f.Emergency {
			e.emergency[n] = true
		}
		for class, customers := range f.Classes {
			set := e.classes[class]
			if set == nil {
				set = map[string]bool{}
				e.classes[class] = set
			}
			for _, c := range customers {
				set[c] = true
			}
		}
		for _, l := range f.Lists {
			if _, dup := lists[l.Name]; dup {
				return nil, fmt.Errorf("policy: list %q is defined in two files", l.Name)
			}
			var nl *numbers.List
			var err error
			if l.File != "" {
				nl, err = load(l)
			} else {
				nl, err = inlineList(l)
			}
			if err != nil {
				return nil, fmt.Errorf("policy: list %s: %w", l.Name, err)
			}
			lists[l.Name] = nl
		}
		rules = append(rules, f.Rules...)
	}
	seen := map[string]bool{}
	for _, rc := range rules {
		if seen[rc.Name] {
			return nil, fmt.Errorf("policy: rule %q is defined twice", rc.Name)
		}
		seen[rc.Name] = true
		t := ruleTypes[rc.Type]
		if t == nil {
			return nil, fmt.Errorf("policy: rule %s: no rule type %q", rc.Name, rc.Type)
		}
		r := rule{RuleConfig: rc, typ: t, phase: t.phase}
		for _, src := range rc.Match.Sources {
			p, err := parseSource(src)
			if err != nil {
				return nil, fmt.Errorf("policy: rule %s: %w", rc.Name, err)
			}
			r.sources = append(r.sources, p)
		}
		for _, n := range rc.Lists {
			l, ok := lists[n]
			if !ok {
				return nil, fmt.Errorf("policy: rule %s: no list %q", rc.Name, n)
			}
			r.lists = append(r.lists, l)
		}
		for _, n := range rc.Consent {
			l, ok := lists[n]
			if !ok {
				return nil, fmt.Errorf("policy: rule %s: no list %q", rc.Name, n)
			}
			r.consent = append(r.consent, l)
		}
		if rc.OnStoreError == "closed" {
			r.closed = closedAction(rc.Action)
		}
		if t.compile != nil {
			if err := t.compile(&r); err != nil {
				return nil, fmt.Errorf("policy: rule %s: %w", rc.Name, err)
			}
		}
		if t.allows && rc.Action.Type == "allow" && rc.Mode == "enforce" {
			r.allower = true
			e.allowers = append(e.allowers, len(e.rules))
		}
		e.phases[r.phase] = true
		e.learners = e.learners || t.learn != nil
		e.rules = append(e.rules, r)
	}
	return e, nil
}

// closedAction is how a rule with on_store_error: closed rejects a call
// when the store fails: with the rule's rejection, or (a tag rule, which
// has none) 503 Service Unavailable asking the caller to retry.
func closedAction(a ActionConfig) *ActionConfig {
	if a.Type == "reject" {
		return &a
	}
	return &ActionConfig{Type: "reject", Code: 503, Reason: "Service Unavailable", RetryAfter: cmp.Or(a.RetryAfter, storeErrorRetryAfter)}
}

func inlineList(l ListConfig) (*numbers.List, error) {
	b := numbers.NewBuilder(l.Name)
	for _, n := range l.Numbers {
		var err error
		if len(n) > 1 && n[len(n)-1] == '*' {
			p, ok := passport.Canonical(n[:len(n)-1])
			if !ok {
				return nil, fmt.Errorf("%q is not a number prefix", n)
			}
			err = b.AddPrefix(p, time.Time{})
		} else {
			c, ok := passport.Canonical(n)
			if !ok {
				return nil, fmt.Errorf("%q is not a number", n)
			}
			err = b.AddNumber(c, time.Time{})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Build(), nil
}

// matches reports whether the rule looks at this call.
func (e *Engine) matches(r *rule, in Input) bool {
	if r.Match.Realm != "" && r.Match.Realm != in.Realm {
		return false
	}
	if r.Match.Class != "" && !e.classes[r.Match.Class][in.Customer] {
		return false
	}
	if len(r.sources) > 0 && !containsAddr(r.sources, in.Source) {
		return false
	}
	if len(r.Match.Customers) > 0 {
		for _, c := range r.Match.Customers {
			if c == in.Customer {
				return true
			}
		}
		return false
	}
	return true
}

func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Evaluate decides for one call in one phase (in.Phase): it runs the rules
// of that phase. Precedence: an emergency callee is never blocked; an
// enforce-mode allow hit beats every block, wherever its rule stands and in
// either phase; otherwise rules run in file order, the first enforce-mode
// reject ends the evaluation, tags accumulate, report-mode hits are only
// recorded. Within a list the longest matching prefix (or the exact number)
// is the entry that matched.
func (e *Engine) Evaluate(ctx context.Context, in Input, now time.Time) Decision {
	var d Decision
	if e.emergency[in.Callee] {
		d.Hits = append(d.Hits, Hit{Rule: "emergency", Mode: "enforce", Action: "allow", Entry: in.Callee})
		return d
	}
	for _, i := range e.allowers {
		r := &e.rules[i]
		if !e.matches(r, in) {
			continue
		}
		if v := r.typ.eval(e, ctx, r, in, now); v.ok {
			d.Hits = append(d.Hits, v.hit)
			return d
		}
	}
	for i := range e.rules {
		r := &e.rules[i]
		if r.phase != in.Phase || r.allower || !e.matches(r, in) {
			continue
		}
		v := r.typ.eval(e, ctx, r, in, now)
		if v.held.Key != "" {
			d.Held = append(d.Held, v.held)
		}
		if v.also != nil {
			d.Hits = append(d.Hits, *v.also)
		}
		if !v.ok {
			continue
		}
		h := v.hit
		d.Hits = append(d.Hits, h)
		if r.Mode == "report" {
			continue
		}
		if h.Action == ActionStoreError {
			if r.closed != nil {
				d.Reject = r.closed
				return d
			}
			continue
		}
		switch r.Action.Type {
		case "reject":
			d.Reject = &r.Action
			return d
		case "tag":
			if d.Tags == nil {
				d.Tags = map[string]string{}
			}
			d.Tags[r.Action.Header] = r.Action.Value
		case "allow":
			return d
		}
	}
	return d
}
