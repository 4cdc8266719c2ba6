package policy

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/nyaruka/phonenumbers"

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
	oneRing   bool    // some one_ring rule learns from outcomes
}

// HasRules reports whether any rule runs in phase: the pipeline leaves a
// stage without rules out of the chain.
func (e *Engine) HasRules(phase Phase) bool { return e.phases[phase] }

type rule struct {
	RuleConfig
	lists   []*numbers.List
	consent []*numbers.List
	sources []netip.Prefix
	window  *callingWindow // window rules
	phase   Phase
	allower bool // an enforce-mode allow list rule: evaluated first, in both phases
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
	List   string // the list that matched
	Entry  string // the entry that matched (a number, or a prefix with *)
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
		r := rule{RuleConfig: rc}
		if lateTypes[rc.Type] {
			r.phase = PhaseVerified
		}
		for _, src := range rc.Match.Sources {
			p, err := parseSource(src)
			if err != nil {
				return nil, fmt.Errorf("policy: rule %s: %w", rc.Name, err)
			}
			r.sources = append(r.sources, p)
		}
		if rc.Type == "window" {
			w, err := compileWindow(rc)
			if err != nil {
				return nil, fmt.Errorf("policy: rule %s: %w", rc.Name, err)
			}
			r.window = w
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
		if rc.Type == "list" && rc.Action.Type == "allow" && rc.Mode == "enforce" {
			r.allower = true
			e.allowers = append(e.allowers, len(e.rules))
		}
		e.phases[r.phase] = true
		e.oneRing = e.oneRing || rc.Type == "one_ring"
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
			p, ok := numbers.Canonical(n[:len(n)-1])
			if !ok {
				return nil, fmt.Errorf("%q is not a number prefix", n)
			}
			err = b.AddPrefix(p, time.Time{})
		} else {
			c, ok := numbers.Canonical(n)
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

// hit looks the rule's number up in its lists (a dnc rule: unless a consent
// list holds it) and returns the match.
func (r *rule) hit(in Input, now time.Time) (Hit, bool) {
	tn := in.Callee
	if r.Number == "caller" {
		tn = in.Caller
	}
	list, entry, ok := listed(r.lists, tn, now)
	if !ok {
		return Hit{}, false
	}
	if _, _, consented := listed(r.consent, tn, now); consented {
		return Hit{}, false
	}
	return Hit{Rule: r.Name, Mode: r.Mode, Action: r.Action.Type, List: list, Entry: entry}, true
}

// listed looks tn up in lists, in order, and returns the first list that
// holds it with the entry that matched (a prefix ends in "*"). An empty tn
// is on no list.
func listed(lists []*numbers.List, tn string, now time.Time) (list, entry string, ok bool) {
	if tn == "" {
		return "", "", false
	}
	for _, l := range lists {
		if m, ok := l.Lookup(tn, now); ok {
			entry = m.Entry
			if m.Prefix {
				entry += "*"
			}
			return l.Name(), entry, true
		}
	}
	return "", "", false
}

// rateHit counts the call for a rate rule and reports whether it is over
// the limit.
func (e *Engine) rateHit(ctx context.Context, r *rule, in Input, now time.Time) (Hit, bool) {
	k := keyValue(r.Key, in)
	if e.store == nil || k == "" {
		return Hit{}, false
	}
	n, err := e.store.Counter().Add(ctx, "rate:"+r.Name+":"+k, 1, r.Window, now)
	if err != nil {
		return r.storeError(r.Key, k, err)
	}
	if n <= r.Limit {
		return Hit{}, false
	}
	return Hit{Rule: r.Name, Mode: r.Mode, Action: r.Action.Type, List: r.Key, Entry: fmt.Sprintf("%s count=%d limit=%d window=%s", k, n, r.Limit, r.Window)}, true
}

// keyValue is what a rate or concurrent rule counts the call under: its
// source address, caller, callee, customer or realm ("" when unknown).
func keyValue(key string, in Input) string {
	switch key {
	case "source":
		if in.Source.IsValid() {
			return in.Source.String()
		}
	case "caller":
		return in.Caller
	case "callee":
		return in.Callee
	case "customer":
		return in.Customer
	case "realm":
		return in.Realm
	}
	return ""
}

// bombingHit counts the call for each caller->callee threshold of a
// bombing rule and reports the first one exceeded.
func (e *Engine) bombingHit(ctx context.Context, r *rule, in Input, now time.Time) (Hit, bool) {
	if e.store == nil || in.Caller == "" || in.Callee == "" {
		return Hit{}, false
	}
	var over *Hit
	for i, th := range r.Thresholds {
		key := "bomb:" + r.Name + ":" + strconv.Itoa(i) + ":" + in.Caller + ">" + in.Callee
		n, err := e.store.Counter().Add(ctx, key, 1, th.Window, now)
		if err != nil {
			return r.storeError("caller>callee", in.Caller+">"+in.Callee, err)
		}
		if n > th.Limit && over == nil {
			over = &Hit{Rule: r.Name, Mode: r.Mode, Action: r.Action.Type, List: "caller>callee",
				Entry: fmt.Sprintf("%s>%s count=%d limit=%d window=%s", in.Caller, in.Callee, n, th.Limit, th.Window)}
		}
	}
	if over == nil {
		return Hit{}, false
	}
	return *over, true
}

// hygieneHit runs a hygiene rule's caller-ID checks in their order.
func (r *rule) hygieneHit(in Input, now time.Time) (Hit, bool) {
	hit := func(check, entry string) (Hit, bool) {
		return Hit{Rule: r.Name, Mode: r.Mode, Action: r.Action.Type, List: check, Entry: entry}, true
	}
	for _, c := range r.Checks {
		switch c {
		case "anonymous":
			if in.Caller == "" {
				return hit(c, "")
			}
		case "same_number":
			if in.Caller != "" && in.Caller == in.Callee {
				return hit(c, in.Caller)
			}
		case "invalid":
			if in.Caller != "" && !validNumber(in.Caller) {
				return hit(c, in.Caller)
			}
		case "own_number":
			if _, entry, ok := listed(r.lists, in.Caller, now); ok {
				return hit(c, entry)
			}
		}
	}
	return Hit{}, false
}

// validNumber reports whether a canonical number (E.164 digits) is a
// valid number per libphonenumber.
func validNumber(tn string) bool {
	n, err := phonenumbers.Parse("+"+tn, "")
	return err == nil && phonenumbers.IsValidNumber(n)
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
		if h, ok := r.hit(in, now); ok {
			d.Hits = append(d.Hits, h)
			return d
		}
	}
	for i := range e.rules {
		r := &e.rules[i]
		if r.phase != in.Phase || r.allower || !e.matches(r, in) {
			continue
		}
		var h Hit
		var ok bool
		switch r.Type {
		case "rate":
			h, ok = e.rateHit(ctx, r, in, now)
		case "concurrent":
			h, ok = e.concurrentHit(ctx, r, in, now, &d)
		case "bombing":
			h, ok = e.bombingHit(ctx, r, in, now)
		case "hygiene":
			h, ok = r.hygieneHit(in, now)
		case "window":
			h, ok = r.windowHit(in, now)
		case "protect":
			h, ok = e.protectHit(ctx, r, in, now)
		case "one_ring":
			h, ok = e.flagHit(ctx, r, in.Caller, now)
		case "callback":
			h, ok = e.flagHit(ctx, r, in.Callee, now)
		case "attestation":
			h, ok = r.attestationHit(in)
		case "reputation":
			h, ok = e.reputationHit(ctx, r, in, now)
		default:
			h, ok = r.hit(in, now)
		}
		if !ok {
			continue
		}
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
