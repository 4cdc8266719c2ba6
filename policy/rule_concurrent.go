package policy

import (
	"context"
	"time"
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
		eval: concurrentHit,
	})
}

// concurrentHit takes a slot for the call under the rule's key and fires
// when that makes more than limit calls in progress. A rejecting hit gives
// its slot back at once; otherwise the call holds the slot (Decision.Held)
// until Release.
func concurrentHit(e *Engine, ctx context.Context, r *rule, in Input, now time.Time) verdict {
	k := keyValue(r.Key, in)
	if e.store == nil || in.CallID == "" || k == "" {
		return verdict{}
	}
	slot := Slot{Key: "concurrent:" + r.Name + ":" + k, Member: in.CallID}
	n, err := e.store.Concurrency().Acquire(ctx, slot.Key, slot.Member, r.MaxDuration, now)
	if err != nil {
		return r.storeError(r.Key, k, err)
	}
	if n <= r.Limit {
		return verdict{held: slot}
	}
	v := fired(r.hitf(r.Key, "%s calls=%d limit=%d", k, n, r.Limit))
	if r.Mode == "enforce" && r.Action.Type == "reject" {
		if err := e.store.Concurrency().Release(ctx, slot.Key, slot.Member); err != nil {
			// The slot frees itself after max_duration; record the error.
			h := r.storeErrorHit(r.Key, k, err)
			v.also = &h
		}
	} else {
		v.held = slot
	}
	return v
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
