package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/stirgate/stirgate/policy/store"
)

// keyOneRing prefixes the one-ring mark of a number. It is not per rule:
// callback rules read what any one_ring rule marked.
const keyOneRing = "onering:"

// one_ring: Wangiri callers. A caller whose calls to at least callees
// (default 5) distinct callees within window (1h) were cancelled within
// ring_max (5s) of ringing, in at least percent (80) % of the callees it
// reached, is marked for flag_for (24h); the rule then rejects or tags its
// calls, and callback rules the calls back to it. It learns from how calls
// ended (Engine.CallEnded).
func init() {
	register(&ruleType{
		name:     "one_ring",
		realm:    "outside",
		code:     608,
		stateful: true,
		defaults: func(r *RuleConfig) {
			orDefault(&r.Callees, 5)
			orDefault(&r.Percent, 80)
			orDefault(&r.Window, time.Hour)
			orDefault(&r.RingMax, 5*time.Second)
			orDefault(&r.FlagFor, 24*time.Hour)
		},
		validate: func(r *RuleConfig) []error {
			var p problems
			if r.Callees < 1 || r.Callees > 1000 {
				p.addf("callees: %d out of range 1..1000", r.Callees)
			}
			if r.Percent < 1 || r.Percent > 100 {
				p.addf("percent: %d out of range 1..100", r.Percent)
			}
			if r.RingMax < 100*time.Millisecond || r.RingMax > time.Minute {
				p.addf("ring_max: %s out of range 100ms..1m", r.RingMax)
			}
			p.window(r, 7*24*time.Hour)
			p.flagFor(r)
			return p
		},
		plan: func(r *rule, in Input, ops []store.Op) []store.Op {
			return flagPlan(in.Caller, ops)
		},
		decide: func(_ *Engine, _ context.Context, r *rule, in Input, _ time.Time, res []store.Result) verdict {
			return flagHit(r, in.Caller, res)
		},
		learn: learnOneRing,
	})
}

// flagPlan reads number's one-ring mark.
func flagPlan(number string, ops []store.Op) []store.Op {
	if number == "" {
		return ops
	}
	return append(ops, store.Op{Kind: store.OpFlagsGet, Key: keyOneRing + number})
}

// flagHit fires when number carries the one-ring mark.
func flagHit(r *rule, number string, res []store.Result) verdict {
	if res[0].Err != nil {
		return r.storeError("one_ring", number, res[0].Err)
	}
	if !res[0].OK {
		return verdict{}
	}
	return fired(r.hitf("one_ring", "%s flagged until=%s", number, res[0].Until.UTC().Format(time.RFC3339)))
}

// learnOneRing counts the caller's distinct callees reached within the
// window and those cancelled within ring_max of ringing; when the cancelled
// ones are at least `callees` and at least `percent` % of all, the caller
// is marked for flag_for (report mode: only reported).
func learnOneRing(e *Engine, ctx context.Context, r *rule, o Outcome, now time.Time, l *Learned) {
	key := "onering:" + r.Name + ":" + o.Caller
	all, err := e.store.Distinct().Add(ctx, key+":reached", o.Callee, r.Window, now)
	if err != nil {
		l.storeFailed(err)
		return
	}
	if !o.oneRing(r.RingMax) {
		return
	}
	short, err := e.store.Distinct().Add(ctx, key+":short", o.Callee, r.Window, now)
	if err != nil {
		l.storeFailed(err)
		return
	}
	if short < r.Callees || short*100 < r.Percent*all {
		return
	}
	if _, on, err := e.store.Flags().Get(ctx, keyOneRing+o.Caller, now); err != nil {
		l.storeFailed(err) // go on: marking again is better than not at all
	} else if on {
		return // already marked: the first mark's expiry stands
	}
	if r.Mode == "report" {
		// Report mode changes nothing: the mark is only reported.
		l.Flagged, l.FlagRule = o.Caller, r.Name
		l.FlagEntry = fmt.Sprintf("report only: callees=%d one_ring=%d window=%s", all, short, r.Window)
		return
	}
	if err := e.store.Flags().Set(ctx, keyOneRing+o.Caller, r.FlagFor, now); err != nil {
		l.storeFailed(err)
		return
	}
	l.Flagged, l.FlagRule = o.Caller, r.Name
	l.FlagEntry = fmt.Sprintf("callees=%d one_ring=%d window=%s flag_for=%s", all, short, r.Window, r.FlagFor)
}
