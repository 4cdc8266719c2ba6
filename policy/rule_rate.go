package policy

import (
	"context"
	"time"
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
		eval: rateHit,
	})
}

// rateHit counts the call for a rate rule and reports whether it is over
// the limit.
func rateHit(e *Engine, ctx context.Context, r *rule, in Input, now time.Time) verdict {
	k := keyValue(r.Key, in)
	if e.store == nil || k == "" {
		return verdict{}
	}
	n, err := e.store.Counter().Add(ctx, "rate:"+r.Name+":"+k, 1, r.Window, now)
	if err != nil {
		return r.storeError(r.Key, k, err)
	}
	if n <= r.Limit {
		return verdict{}
	}
	return fired(r.hitf(r.Key, "%s count=%d limit=%d window=%s", k, n, r.Limit, r.Window))
}
