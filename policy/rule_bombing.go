package policy

import (
	"context"
	"strconv"
	"time"

	"github.com/stirgate/stirgate/policy/store"
)

// DefaultBombing are the caller->callee thresholds of a bombing rule, after
// published anti-harassment practice.
var DefaultBombing = []Threshold{{5, 15 * time.Minute}, {9, time.Hour}, {15, 24 * time.Hour}}

// bombing: one caller calling one callee more often than any of the
// rule's thresholds allows (default DefaultBombing).
func init() {
	register(&ruleType{
		name:     "bombing",
		code:     486,
		stateful: true,
		defaults: func(r *RuleConfig) {
			if len(r.Thresholds) == 0 {
				r.Thresholds = append([]Threshold(nil), DefaultBombing...)
			}
		},
		validate: func(r *RuleConfig) []error {
			var p problems
			for j, th := range r.Thresholds {
				if th.Limit < 1 || th.Window < time.Second || th.Window > 7*24*time.Hour {
					p.addf("thresholds[%d]: want limit >= 1 and window 1s..168h", j)
				}
			}
			return p
		},
		plan:   bombingPlan,
		decide: bombingHit,
	})
}

// bombingPlan counts the call for each caller->callee threshold.
func bombingPlan(r *rule, in Input, ops []store.Op) []store.Op {
	if in.Caller == "" || in.Callee == "" {
		return ops
	}
	for i, th := range r.Thresholds {
		key := "bomb:" + r.Name + ":" + strconv.Itoa(i) + ":" + in.Caller + ">" + in.Callee
		ops = append(ops, store.Op{Kind: store.OpCounterAdd, Key: key, N: 1, Window: th.Window})
	}
	return ops
}

// bombingHit reports the first threshold exceeded.
func bombingHit(_ *Engine, _ context.Context, r *rule, in Input, _ time.Time, res []store.Result) verdict {
	for _, x := range res {
		if x.Err != nil {
			return r.storeError("caller>callee", in.Caller+">"+in.Callee, x.Err)
		}
	}
	for i, th := range r.Thresholds {
		if n := res[i].N; n > th.Limit {
			return fired(r.hitf("caller>callee", "%s>%s count=%d limit=%d window=%s", in.Caller, in.Callee, n, th.Limit, th.Window))
		}
	}
	return verdict{}
}
