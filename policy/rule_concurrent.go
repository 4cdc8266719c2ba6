package policy

import (
	"context"
	"time"

	"github.com/stirgate/stirgate/policy/store"
)

// concurrent: at most limit calls in progress per key (customer, source,
// realm). A call holds a slot until it ends (Decision.Held, Release), or
// for max_duration (default 4h) if its end was never seen.
func init() {
	register(&ruleType{
		name:     "concurrent",
		code:     503,
		stateful: true,
		defaults: func(r *RuleConfig) {
			orDefault(&r.MaxDuration, 4*time.Hour)
		},
		validate: func(r *RuleConfig) []error {
			var p problems
			p.add(oneOf("key", r.Key, "customer", "source", "realm"))
			p.limit(r)
			if r.MaxDuration < time.Minute || r.MaxDuration > 48*time.Hour {
				p.addf("max_duration: %s out of range 1m..48h", r.MaxDuration)
			}
			return p
		},
		plan:   concurrentPlan,
		decide: concurrentHit,
	})
}

// concurrentPlan takes a slot for the call under the rule's key. The
// engine puts every slot taken in Decision.Held, whatever the decision:
// the call gives them back when it ends (a rejected call at once).
func concurrentPlan(r *rule, in Input, ops []store.Op) []store.Op {
	k := keyValue(r.Key, in)
	if in.CallID == "" || k == "" {
		return ops
	}
	return append(ops, store.Op{Kind: store.OpConcurrencyAcquire, Key: "concurrent:" + r.Name + ":" + k, Member: in.CallID, Window: r.MaxDuration})
}

// concurrentHit fires when the slot made more than limit calls in
// progress.
func concurrentHit(_ *Engine, _ context.Context, r *rule, in Input, _ time.Time, res []store.Result) verdict {
	if res[0].Err != nil {
		return r.storeError(r.Key, keyValue(r.Key, in), res[0].Err)
	}
	if n := res[0].N; n > r.Limit {
		return fired(r.hitf(r.Key, "%s calls=%d limit=%d", keyValue(r.Key, in), n, r.Limit))
	}
	return verdict{}
}

// Release gives back the slots a call held; errors are counted by the
// caller (a lost release frees itself after max_duration).
func (e *Engine) Release(ctx context.Context, slots []Slot) (failed int) {
	for _, s := range slots {
		if err := e.store.Concurrency().Release(ctx, s.Key, s.Member); err != nil {
			failed++
		}
	}
	return failed
}
