package policy

import (
	"context"
	"time"
)

// list: allow, block or tag calls whose number (callee, or caller with
// number: caller) is on one of the rule's lists. An enforce-mode allow
// list rule is evaluated before every other rule.
func init() {
	register(&ruleType{
		name:   "list",
		code:   608,
		lists:  needsLists,
		allows: true,
		eval:   listHit,
	})
}

// listHit looks the rule's number up in its lists (a dnc rule: unless a
// consent list holds it) and returns the match.
func listHit(_ *Engine, _ context.Context, r *rule, in Input, now time.Time) verdict {
	tn := in.Callee
	if r.Number == "caller" {
		tn = in.Caller
	}
	list, entry, ok := listed(r.lists, tn, now)
	if !ok {
		return verdict{}
	}
	if _, _, consented := listed(r.consent, tn, now); consented {
		return verdict{}
	}
	return fired(r.hit(list, entry))
}
