package policy

import (
	"context"
	"time"

	"github.com/stirgate/stirgate/policy/store"
)

// reputation: the caller (subject: caller, the default) or the source
// trunk (subject: source) has at least limit (3) 607 complaints within
// window (24h). The complaints are recorded by Engine.CallEnded. Runs after
// verification.
func init() {
	register(&ruleType{
		name:     "reputation",
		realm:    "outside",
		phase:    PhaseVerified,
		code:     608,
		stateful: true,
		defaults: func(r *RuleConfig) {
			orDefault(&r.Limit, 3)
			orDefault(&r.Window, 24*time.Hour)
			orDefault(&r.Subject, "caller")
		},
		validate: func(r *RuleConfig) []error {
			var p problems
			p.add(oneOf("subject", r.Subject, "caller", "source"))
			p.limit(r)
			p.window(r, 30*24*time.Hour)
			return p
		},
		plan:   reputationPlan,
		decide: reputationHit,
	})
}

// reputationSubject is who the rule counts complaints against.
func reputationSubject(r *rule, in Input) string {
	if r.Subject == "source" || in.Caller == "" {
		return trunkSubject(in)
	}
	return in.Caller
}

// reputationPlan counts the subject's complaints within the window.
func reputationPlan(r *rule, in Input, ops []store.Op) []store.Op {
	return append(ops, store.Op{Kind: store.OpComplaintsCount, Key: reputationSubject(r, in), Window: r.Window})
}

// reputationHit fires when the subject has at least limit complaints
// within the window.
func reputationHit(_ *Engine, _ context.Context, r *rule, in Input, _ time.Time, res []store.Result) verdict {
	if res[0].Err != nil {
		return r.storeError("complaints", reputationSubject(r, in), res[0].Err)
	}
	if n := res[0].N; n >= r.Limit {
		return fired(r.hitf("complaints", "%s count=%d limit=%d window=%s", reputationSubject(r, in), n, r.Limit, r.Window))
	}
	return verdict{}
}
