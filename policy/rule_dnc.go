package policy

// dnc: Do-Not-Call. Calls to a number on the rule's DNC lists are rejected
// (603 Decline) or tagged, unless a consent list holds the number (an
// existing relationship, until its expiry).
func init() {
	register(&ruleType{
		name:    "dnc",
		code:    603,
		lists:   needsLists,
		consent: true,
		eval:    listHit,
	})
}
