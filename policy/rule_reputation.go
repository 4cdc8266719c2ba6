package policy

import (
	"context"
	"time"
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
		eval: reputationHit,
	})
}

// reputationHit fires when the subject has at least limit complaints
// within the window.
func reputationHit(e *Engine, ctx context.Context, r *rule, in Input, now time.Time) verdict {
	if e.store == nil {
		return verdict{}
	}
	subject := in.Caller
	if r.Subject == "source" || subject == "" {
		subject = trunkSubject(in)
	}
	n, err := e.store.Complaints().Count(ctx, subject, r.Window, now)
	if err != nil {
		return r.storeError("complaints", subject, err)
	}
	if n < r.Limit {
		return verdict{}
	}
	return fired(r.hitf("complaints", "%s count=%d limit=%d window=%s", subject, n, r.Limit, r.Window))
}
