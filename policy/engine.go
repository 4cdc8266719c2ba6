package policy

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/policy/numbers"
	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/sip/media"
)

// Engine is one compiled policy generation: lists loaded, rules resolved.
// It is immutable and safe for concurrent use.
type Engine struct {
	store     store.Store // counters, flags, complaints; nil: stateful rules never fire
	emergency map[string]bool
	classes   map[string]map[string]bool // class -> customer set
	rules     []rule
	allowers  []int    // indexes of enforce-mode allow rules: evaluated first
	phases    [2]bool  // which phases have rules
	learners  bool     // some rule learns from how calls ended (one_ring)
	managed   []string // the managed lists declared
	// announce is each realm's announcement for rejections whose rule
	// names none.
	announce map[string]*media.Announcement
}

// Announcement is what a caller rejected with action in realm hears first:
// the rule's own announcement, else the realm's; nil for none (the plain
// reject).
func (e *Engine) Announcement(realm string, action *ActionConfig) *media.Announcement {
	if action == nil {
		return nil
	}
	if action.Announce != nil {
		return action.Announce.Audio()
	}
	return e.announce[realm]
}

// HasRules reports whether any rule runs in phase: the pipeline leaves a
// stage without rules out of the chain.
func (e *Engine) HasRules(phase Phase) bool { return e.phases[phase] }

type rule struct {
	RuleConfig
	typ      *ruleType
	lists    []lookupList
	consent  []lookupList
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
	// failClosed: a store_error hit whose on_store_error: closed rejected
	// the call (else the call went on).
	failClosed bool
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
	// Held are the concurrent-call slots the call now holds (every slot a
	// concurrent rule took, whether it or another rule rejected the call):
	// give them back with Release when the call ends (rejected or not).
	Held []Slot
	// RoundTrips are the store round trips the evaluation waited for: 1
	// for the stage's batch (0 on Memory, or when the client-side cache
	// answered every read), one more when a protect rule turns protect
	// mode on or a Redis node had forgotten the scripts.
	RoundTrips int
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
//
// managed holds the contents of the managed lists (nil: they are empty).
func Compile(files []File, load Loader, st store.Store, managed *ManagedLists) (*Engine, error) {
	e := &Engine{store: st, emergency: map[string]bool{}, classes: map[string]map[string]bool{}, announce: map[string]*media.Announcement{}}
	lists := map[string]lookupList{}
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
			if l.Managed {
				lists[l.Name] = managedList{name: l.Name, from: managed}
				e.managed = append(e.managed, l.Name)
				continue
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
		for realm, a := range f.Announce {
			if _, dup := e.announce[realm]; dup {
				return nil, fmt.Errorf("policy: the announcement of realm %s is set in two files", realm)
			}
			e.announce[realm] = a.Audio()
		}
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
	return &ActionConfig{Type: "reject", Code: 503, Reason: "Service Unavailable", RetryAfter: cmp.Or(a.RetryAfter, storeErrorRetryAfter),
		Announce: &AnnounceConfig{SIT: string(media.SITNone)}} // a retry, not a block: no announcement
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
//
// The store operations of every stateful rule that looks at the call run
// in one batch (one round trip to Redis) before any of them decides. So a
// stateful rule counts the call even when an earlier rule of the stage
// rejects it; rules after the first stateless rule that ends the
// evaluation (an enforce-mode reject or allow that fired) are not run at
// all, as before. Every concurrent-call slot taken is in Decision.Held.
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
	// First pass, in file order: stateless rules decide at once (as long
	// as no stateful rule came before them), stateful ones add their store
	// operations to the batch. The batch comes from a pool, only for a
	// call that meets a stateful rule: the rule types' functions see it,
	// so it would escape from the stack anyway.
	var b *batch
	for i := range e.rules {
		r := &e.rules[i]
		if r.phase != in.Phase || r.allower || !e.matches(r, in) {
			continue
		}
		if r.typ.plan != nil {
			if e.store == nil {
				continue
			}
			if b == nil {
				b = batches.Get().(*batch)
			}
			from := len(b.ops)
			if b.ops = r.typ.plan(r, in, b.ops); len(b.ops) > from {
				b.steps = append(b.steps, step{rule: i, from: from, to: len(b.ops), fired: -1})
			}
			continue
		}
		v := r.typ.eval(e, ctx, r, in, now)
		if !v.ok {
			continue
		}
		if b == nil {
			if d.apply(r, v) {
				return d
			}
			continue
		}
		b.steps = append(b.steps, step{rule: i, fired: len(b.fired)})
		b.fired = append(b.fired, v)
		if r.Mode == "enforce" && (r.Action.Type == "reject" || r.Action.Type == "allow") {
			break // nothing after it runs
		}
	}
	if b == nil {
		return d
	}
	defer b.put()
	var res []store.Result
	if len(b.ops) > 0 {
		ops := b.ops
		if cap(b.res) < len(ops) {
			b.res = make([]store.Result, len(ops))
		}
		res = b.res[:len(ops)]
		d.RoundTrips = store.Run(ctx, e.store, ops, now, res)
		for j := range ops {
			if ops[j].Kind == store.OpConcurrencyAcquire && res[j].Err == nil {
				d.Held = append(d.Held, Slot{Key: ops[j].Key, Member: ops[j].Member})
			}
		}
	}
	// Second pass: in file order, as if each rule had run alone.
	for _, s := range b.steps {
		r := &e.rules[s.rule]
		var v verdict
		if s.fired >= 0 {
			v = b.fired[s.fired]
		} else {
			v = r.typ.decide(e, ctx, r, in, now, res[s.from:s.to])
			d.RoundTrips += v.trips
		}
		if v.ok && d.apply(r, v) {
			return d
		}
	}
	return d
}

// apply records what a rule that fired (v.ok) makes of the call and
// reports whether that ends the evaluation: an enforce-mode reject (or a
// store failure with on_store_error: closed) or allow.
func (d *Decision) apply(r *rule, v verdict) (done bool) {
	h := v.hit
	if r.Mode == "report" {
		d.Hits = append(d.Hits, h)
		return false
	}
	if h.Action == ActionStoreError {
		if r.closed == nil {
			d.Hits = append(d.Hits, h)
			return false
		}
		h.failClosed = true
		d.Hits = append(d.Hits, h)
		d.Reject = r.closed
		return true
	}
	d.Hits = append(d.Hits, h)
	switch r.Action.Type {
	case "reject":
		d.Reject = &r.Action
		return true
	case "tag":
		if d.Tags == nil {
			d.Tags = map[string]string{}
		}
		d.Tags[r.Action.Header] = r.Action.Value
	case "allow":
		return true
	}
	return false
}

// step is one rule of the first pass that the second pass decides: a
// stateful one with its operations ops[from:to], or a stateless one that
// fired (fired >= 0: its verdict).
type step struct {
	rule, from, to, fired int
}

// batch holds the store operations of one call's stage and their results.
type batch struct {
	ops   []store.Op
	res   []store.Result
	steps []step
	fired []verdict
}

var batches = sync.Pool{New: func() any {
	return &batch{ops: make([]store.Op, 0, 16), res: make([]store.Result, 16), steps: make([]step, 0, 16), fired: make([]verdict, 0, 4)}
}}

// put pools the batch. The operations' keys stay until the next call
// overwrites them (a few strings per pooled batch); results are
// overwritten by every run.
func (b *batch) put() {
	clear(b.fired)
	b.ops, b.steps, b.fired = b.ops[:0], b.steps[:0], b.fired[:0]
	batches.Put(b)
}

// ranOp is one store operation run on its own, and its round trips.
type ranOp struct {
	store.Result
	trips int
}

// run runs one store operation (after the stage's batch).
func (e *Engine) run(ctx context.Context, op store.Op, now time.Time) ranOp {
	ops := [1]store.Op{op}
	var res [1]store.Result
	n := store.Run(ctx, e.store, ops[:], now, res[:])
	return ranOp{res[0], n}
}
