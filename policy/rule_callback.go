package policy

import (
	"context"
	"time"
)

// callback: the callback shield. Calls from the inside to a number a
// one_ring rule marked are rejected or tagged while the mark lasts.
func init() {
	register(&ruleType{
		name:     "callback",
		realm:    "inside",
		code:     608,
		stateful: true,
		eval: func(e *Engine, ctx context.Context, r *rule, in Input, now time.Time) verdict {
			return e.flagHit(ctx, r, in.Callee, now)
		},
	})
}
