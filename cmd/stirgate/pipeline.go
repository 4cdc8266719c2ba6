package main

import (
	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/sip"
)

// buildChains is the one place where the order of call pipeline stages is
// written (DESIGN.md "The call pipeline"). Cheap stages that reject the most
// run first, so a flood cannot force signature checks or certificate fetches:
//
//	inside  (outbound): classify source → rate → DNC / calling window → attest
//	outside (inbound):  classify source → rate / bombing / one-ring → verify → reputation
//
// The stages arrive with later issues; until then both chains are empty and
// every initial INVITE still runs through them.
func buildChains(cfg *configs.Config) (sip.Chains, error) {
	_ = cfg
	return sip.Chains{Inside: sip.Chain{}, Outside: sip.Chain{}}, nil
}
