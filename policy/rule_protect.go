package policy

import (
	"context"
	"time"

	"github.com/stirgate/stirgate/policy/store"
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
		plan:   protectPlan,
		decide: protectHit,
	})
}

// protectPlan counts the caller among the callee's distinct callers and
// reads the callee's protect mode.
func protectPlan(r *rule, in Input, ops []store.Op) []store.Op {
	if in.Callee == "" {
		return ops
	}
	key := protectKey(r.Name, in.Callee)
	caller := in.Caller
	if caller == "" {
		caller = "anonymous@" + in.Source.String()
	}
	return append(ops,
		store.Op{Kind: store.OpDistinctAdd, Key: key, Member: caller, Window: r.Window},
		store.Op{Kind: store.OpFlagsGet, Key: key})
}

// protectHit: above the limit the callee is protected for flag_for (the
// one store call after the batch, on the call that turns protect mode on),
// during which only the rule's allow-lists and calls verified at
// min_attest pass.
func protectHit(e *Engine, ctx context.Context, r *rule, in Input, now time.Time, res []store.Result) verdict {
	for _, x := range res {
		if x.Err != nil {
			return r.storeError("protect", in.Callee, x.Err)
		}
	}
	n, until, on := res[0].N, res[1].Until, res[1].OK
	var v verdict
	if !on && n > r.Distinct {
		set := e.run(ctx, store.Op{Kind: store.OpFlagsSet, Key: protectKey(r.Name, in.Callee), Window: r.FlagFor}, now)
		if set.Err != nil {
			v = r.storeError("protect", in.Callee, set.Err)
			v.trips = set.trips
			return v
		}
		v.trips = set.trips
		until, on = now.Add(r.FlagFor), true
	}
	if !on || verifiedAt(in, r.MinAttest) {
		return v
	}
	if _, _, ok := listed(r.lists, in.Caller, now); ok {
		return v
	}
	h := fired(r.hitf("protect", "%s callers=%d limit=%d window=%s until=%s", in.Callee, n, r.Distinct, r.Window, until.UTC().Format(time.RFC3339)))
	h.trips = v.trips
	return h
}
