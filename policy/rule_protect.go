package policy

import (
	"context"
	"time"
)

// protect: victim protection. More than distinct (default 10) different
// callers to one callee within window (10m) put the callee into protect
// mode for flag_for (30m); then only callers on the rule's lists and calls
// verified at min_attest (A) pass. Runs after verification.
func init() {
	register(&ruleType{
		name:     "protect",
		realm:    "outside",
		phase:    PhaseVerified,
		code:     486,
		lists:    mayHaveLists,
		stateful: true,
		defaults: func(r *RuleConfig) {
			orDefault(&r.Distinct, 10)
			orDefault(&r.Window, 10*time.Minute)
			orDefault(&r.FlagFor, 30*time.Minute)
			orDefault(&r.MinAttest, "A")
		},
		validate: func(r *RuleConfig) []error {
			var p problems
			if r.Distinct < 1 || r.Distinct > 1000 {
				p.addf("distinct: %d out of range 1..1000", r.Distinct)
			}
			p.window(r, 24*time.Hour)
			p.flagFor(r)
			p.minAttest(r)
			return p
		},
		eval: protectHit,
	})
}

// protectHit counts the distinct callers of the callee; above the limit
// the callee is protected for flag_for, during which only the rule's
// allow-lists and calls verified at min_attest pass.
func protectHit(e *Engine, ctx context.Context, r *rule, in Input, now time.Time) verdict {
	if e.store == nil || in.Callee == "" {
		return verdict{}
	}
	key := "protect:" + r.Name + ":" + in.Callee
	caller := in.Caller
	if caller == "" {
		caller = "anonymous@" + in.Source.String()
	}
	n, err := e.store.Distinct().Add(ctx, key, caller, r.Window, now)
	if err != nil {
		return r.storeError("protect", in.Callee, err)
	}
	until, on, err := e.store.Flags().Get(ctx, key, now)
	if err != nil {
		return r.storeError("protect", in.Callee, err)
	}
	if !on && n > r.Distinct {
		if err := e.store.Flags().Set(ctx, key, r.FlagFor, now); err != nil {
			return r.storeError("protect", in.Callee, err)
		}
		until, on = now.Add(r.FlagFor), true
	}
	if !on || verifiedAt(in, r.MinAttest) {
		return verdict{}
	}
	if _, _, ok := listed(r.lists, in.Caller, now); ok {
		return verdict{}
	}
	return fired(r.hitf("protect", "%s callers=%d limit=%d window=%s until=%s", in.Callee, n, r.Distinct, r.Window, until.UTC().Format(time.RFC3339)))
}
