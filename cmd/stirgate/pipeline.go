package main

import (
	"github.com/stirgate/stirgate/attest"
	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/sip"
)

// generation is everything one configuration builds besides the edge's own
// settings: the call pipelines and what the admin server publishes.
type generation struct {
	chains  sip.Chains
	signing *signing // nil when signing is disabled
}

// build is the one place where the order of call pipeline stages is written
// (DESIGN.md "The call pipeline"). Cheap stages that reject the most run
// first, so a flood cannot force signature checks or certificate fetches:
//
//	inside  (outbound): classify source → rate → DNC / calling window → attest
//	outside (inbound):  classify source → rate / bombing / one-ring → verify → reputation
//
// Stages arrive issue by issue; a missing one is simply not in the chain.
func build(cfg *configs.Config) (*generation, error) {
	g := &generation{chains: sip.Chains{Inside: sip.Chain{}, Outside: sip.Chain{}}}
	s, err := loadSigning(cfg)
	if err != nil {
		return nil, err
	}
	if s != nil {
		g.signing = s
		g.chains.Inside = append(g.chains.Inside, attest.Handler{Service: s.service})
	}
	return g, nil
}
