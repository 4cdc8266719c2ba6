package policy

import (
	"context"
	"strconv"
	"time"
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
		eval: bombingHit,
	})
}

// bombingHit counts the call for each caller->callee threshold of a
// bombing rule and reports the first one exceeded.
func bombingHit(e *Engine, ctx context.Context, r *rule, in Input, now time.Time) verdict {
	if e.store == nil || in.Caller == "" || in.Callee == "" {
		return verdict{}
	}
	var over *Hit
	for i, th := range r.Thresholds {
		key := "bomb:" + r.Name + ":" + strconv.Itoa(i) + ":" + in.Caller + ">" + in.Callee
		n, err := e.store.Counter().Add(ctx, key, 1, th.Window, now)
		if err != nil {
			return r.storeError("caller>callee", in.Caller+">"+in.Callee, err)
		}
		if n > th.Limit && over == nil {
			h := r.hitf("caller>callee", "%s>%s count=%d limit=%d window=%s", in.Caller, in.Callee, n, th.Limit, th.Window)
			over = &h
		}
	}
	if over == nil {
		return verdict{}
	}
	return fired(*over)
}
