package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// hygiene: caller-ID checks, in the rule's order: anonymous (no calling
// number), same_number (caller = callee), invalid (not a valid number per
// libphonenumber), own_number (the caller is on the rule's lists: our own
// customers' numbers, arriving from the trunk).
func init() {
	register(&ruleType{
		name:  "hygiene",
		code:  608,
		lists: mayHaveLists,
		validate: func(r *RuleConfig) []error {
			var p problems
			if len(r.Checks) == 0 {
				p.addf("checks: at least one of anonymous, same_number, invalid, own_number")
			}
			own := false
			for j, c := range r.Checks {
				p.add(oneOf(fmt.Sprintf("checks[%d]", j), c, "anonymous", "same_number", "invalid", "own_number"))
				own = own || c == "own_number"
			}
			if own != (len(r.Lists) > 0) {
				p.addf("lists: own_number needs the lists of our numbers, and only it uses lists")
			}
			return p
		},
		eval: hygieneHit,
	})
}

// hygieneHit runs a hygiene rule's caller-ID checks in their order.
func hygieneHit(_ *Engine, _ context.Context, r *rule, in Input, now time.Time) verdict {
	for _, c := range r.Checks {
		switch c {
		case "anonymous":
			if in.Caller == "" {
				return fired(r.hit(c, ""))
			}
		case "same_number":
			if in.Caller != "" && in.Caller == in.Callee {
				return fired(r.hit(c, in.Caller))
			}
		case "invalid":
			if in.Caller != "" && !validNumber(in.Caller) {
				return fired(r.hit(c, in.Caller))
			}
		case "own_number":
			if _, entry, ok := listed(r.lists, in.Caller, now); ok {
				return fired(r.hit(c, entry))
			}
		}
	}
	return verdict{}
}

// validNumber reports whether a canonical number (E.164 digits) is a
// valid number per libphonenumber.
func validNumber(tn string) bool {
	n, err := phonenumbers.Parse("+"+tn, "")
	return err == nil && phonenumbers.IsValidNumber(n)
}
