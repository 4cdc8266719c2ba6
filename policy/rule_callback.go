package policy

import (
	"context"
	"time"

	"github.com/stirgate/stirgate/policy/store"
)

// callback: the callback shield. Calls from the inside to a number a
// one_ring rule marked are rejected or tagged while the mark lasts.
func init() {
	register(&ruleType{
		name:     "callback",
		realm:    "inside",
		code:     608,
		stateful: true,
		plan: func(r *rule, in Input, ops []store.Op) []store.Op {
			return flagPlan(in.Callee, ops)
		},
		decide: func(_ *Engine, _ context.Context, r *rule, in Input, _ time.Time, res []store.Result) verdict {
			return flagHit(r, in.Callee, res)
		},
	})
}
