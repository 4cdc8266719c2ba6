package policy

import (
	"context"
	"time"
)

// attestation: inbound calls not verified at min_attest (A > B > C >
// unverified) fire, usually for the trunks in match.sources. Runs after
// verification.
func init() {
	register(&ruleType{
		name:  "attestation",
		realm: "outside",
		phase: PhaseVerified,
		code:  608,
		validate: func(r *RuleConfig) []error {
			var p problems
			p.minAttest(r)
			return p
		},
		eval: attestationHit,
	})
}

// attestationHit fires when the call was not verified at min_attest.
func attestationHit(_ *Engine, _ context.Context, r *rule, in Input, _ time.Time) verdict {
	if verifiedAt(in, r.MinAttest) {
		return verdict{}
	}
	got := "unverified"
	if in.Verified {
		got = in.Attest
	}
	return fired(r.hitf("attestation", "%s attest=%s min=%s", in.Caller, got, r.MinAttest))
}
