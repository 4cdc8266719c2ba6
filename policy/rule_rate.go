package policy

import (
	"context"
	"time"

	"github.com/stirgate/stirgate/policy/store"
)

// rate: more than limit calls within window for one key (source, caller,
// callee, customer or realm). A rejection asks the caller to retry after
// the window (Retry-After).
func init() {
	register(&ruleType{
		name:     "rate",
		code:     503,
		stateful: true,
		defaults: func(r *RuleConfig) {
			if r.Action.Type == "reject" {
				orDefault(&r.Action.RetryAfter, int((r.Window+time.Second-1)/time.Second))
			}
		},
		validate: func(r *RuleConfig) []error {
			var p problems
			p.add(oneOf("key", r.Key, "source", "caller", "callee", "customer", "realm"))
			p.limit(r)
			if r.Window < time.Second || r.Window > 24*time.Hour {
				p.addf("window: %s out of range 1s..24h", r.Window)
			}
			return p
		},
		plan:   ratePlan,
		decide: rateHit,
	})
}

// ratePlan counts the call under the rule's key.
func ratePlan(r *rule, in Input, ops []store.Op) []store.Op {
	k := keyValue(r.Key, in)
	if k == "" {
		return ops
	}
	return append(ops, store.Op{Kind: store.OpCounterAdd, Key: "rate:" + r.Name + ":" + k, N: 1, Window: r.Window})
}

// rateHit reports whether the count is over the limit.
func rateHit(_ *Engine, _ context.Context, r *rule, in Input, _ time.Time, res []store.Result) verdict {
	if res[0].Err != nil {
		return r.storeError(r.Key, keyValue(r.Key, in), res[0].Err)
	}
	if n := res[0].N; n > r.Limit {
		return fired(r.hitf(r.Key, "%s count=%d limit=%d window=%s", keyValue(r.Key, in), n, r.Limit, r.Window))
	}
	return verdict{}
}
