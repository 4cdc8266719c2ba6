package policy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/stirgate/stirgate/policy/store"
)

// ruleType is everything a rule type contributes to the engine. Each type
// lives in its own file (rule_<type>.go), which registers its ruleType
// from init; nothing else in the package names a type. Adding a type is
// that file plus its tests, its parameters in RuleConfig (when it needs new
// ones) and its documentation (configs/policy.yaml, README.md; TestRuleTypes
// Documented checks them).
type ruleType struct {
	name string
	// realm is the only realm the type makes sense in ("" any): it is the
	// rule's default match.realm, and another is refused.
	realm string
	// phase the type's rules run in: PhaseVerified for those that need the
	// verification result.
	phase Phase
	// code is the default reject code.
	code int
	// lists says what the rule's lists are for.
	lists listUse
	// consent: the type takes consent lists (exemptions).
	consent bool
	// allows: the type may have action allow (evaluated before every block).
	allows bool
	// stateful: the type keeps state in policy/store, so on_store_error
	// applies to it.
	stateful bool
	// defaults fills the type's absent parameters (nil: none).
	defaults func(r *RuleConfig)
	// validate checks the type's parameters; each error starts with its key
	// within the rule ("limit: ..."). nil: nothing to check.
	validate func(r *RuleConfig) []error
	// compile prepares what evaluation needs from the parameters (nil:
	// nothing).
	compile func(r *rule) error
	// eval looks at one call and says whether the rule fired (or its store
	// failed: r.storeError). It returns a value rather than writing to the
	// Decision, whose address would escape through the function value:
	// one allocation on every call.
	eval func(e *Engine, ctx context.Context, r *rule, in Input, now time.Time) verdict
	// plan and decide replace eval for the types that keep state: plan
	// appends the store operations the rule needs for the call (none: the
	// rule does not apply), Evaluate runs those of every such rule of the
	// stage in one batch (one round trip), and decide reads their results,
	// in plan's order.
	plan   func(r *rule, in Input, ops []store.Op) []store.Op
	decide func(e *Engine, ctx context.Context, r *rule, in Input, now time.Time, res []store.Result) verdict
	// learn, when set, learns from how an inbound call that reached its
	// callee ended (see Engine.CallEnded).
	learn func(e *Engine, ctx context.Context, r *rule, o Outcome, now time.Time, l *Learned)
}

// listUse is what a rule type does with `lists`.
type listUse int

const (
	noLists      listUse = iota // it has none
	needsLists                  // it looks the number up in them (at least one)
	mayHaveLists                // optional (protect: allow-lists; hygiene: own numbers)
)

// ruleTypes holds every registered type by name.
var ruleTypes = map[string]*ruleType{}

// register adds a rule type; called from the init of the type's file.
func register(t *ruleType) {
	if t.name == "" || (t.eval == nil) == (t.plan == nil) || (t.plan == nil) != (t.decide == nil) ||
		(t.plan != nil) != t.stateful || t.code == 0 || ruleTypes[t.name] != nil {
		panic(fmt.Sprintf("policy: bad or duplicate rule type %q", t.name))
	}
	ruleTypes[t.name] = t
}

// typeNames are the registered type names, sorted (for error messages).
func typeNames() []string {
	names := make([]string, 0, len(ruleTypes))
	for n := range ruleTypes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// check validates a rule of this type: what every type shares (realm,
// lists, consent, allow, on_store_error), then the type's own parameters.
// Each error starts with its key within the rule.
func (t *ruleType) check(r *RuleConfig) []error {
	var p problems
	if t.realm != "" && r.Match.Realm != t.realm {
		p.addf("match.realm: %s rules apply to the %s realm only", t.name, t.realm)
	}
	switch {
	case t.lists == needsLists && len(r.Lists) == 0:
		p.addf("lists: at least one list")
	case t.lists == noLists && len(r.Lists) > 0:
		p.addf("lists: a %s rule has no lists", t.name)
	}
	if !t.consent && len(r.Consent) > 0 {
		p.addf("consent: a %s rule has no consent lists", t.name)
	}
	if !t.allows && r.Action.Type == "allow" {
		p.addf("action.type: a %s rule rejects or tags", t.name)
	}
	if t.stateful {
		p.add(oneOf("on_store_error", r.OnStoreError, "open", "closed"))
	} else if r.OnStoreError != "" {
		p.addf("on_store_error: %s rules keep no state", t.name)
	}
	if t.validate != nil {
		p = append(p, t.validate(r)...)
	}
	return p
}

// problems collects validation errors.
type problems []error

func (p *problems) addf(format string, a ...any) { *p = append(*p, fmt.Errorf(format, a...)) }

func (p *problems) add(err error) {
	if err != nil {
		*p = append(*p, err)
	}
}

// Checks several types share; each adds the key's error to p.

func (p *problems) window(r *RuleConfig, max time.Duration) {
	if r.Window < time.Second || r.Window > max {
		p.addf("window: %s out of range 1s..%s", r.Window, max)
	}
}

func (p *problems) flagFor(r *RuleConfig) {
	if r.FlagFor < time.Second || r.FlagFor > 30*24*time.Hour {
		p.addf("flag_for: %s out of range 1s..720h", r.FlagFor)
	}
}

func (p *problems) minAttest(r *RuleConfig) {
	if r.MinAttest != "A" && r.MinAttest != "B" && r.MinAttest != "C" {
		p.addf("min_attest: %q is not one of A, B, C", r.MinAttest)
	}
}

func (p *problems) limit(r *RuleConfig) {
	if r.Limit < 1 {
		p.addf("limit: %d, want at least 1", r.Limit)
	}
}
