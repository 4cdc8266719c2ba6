package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stirgate/stirgate/attest"
	"github.com/stirgate/stirgate/certs"
	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/policy"
	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/sip"
	"github.com/stirgate/stirgate/verify"
)

// generation is everything one configuration builds besides the edge's own
// settings: the call pipelines, and what it will change in shared state
// once it is accepted. Building one changes nothing outside it (see install).
type generation struct {
	chains  sip.Chains
	engine  *policy.Engine // nil when there is no policy
	signing *signing       // nil when signing is disabled
	// fetch is the x5u fetch policy to put in force, nil when unchanged.
	fetch *fetchUpdate
}

// fetchUpdate is a changed x5u policy, compiled and not yet in force.
type fetchUpdate struct {
	prepared *certs.PreparedPolicy
	config   verify.X5UConfig
}

// shared is created once in serve and injected into every generation: state
// that survives reloads (docs/DESIGN.md "State").
type shared struct {
	log           *slog.Logger
	reg           prometheus.Registerer
	replay        verify.ReplayStore
	verifyMetrics *verify.Metrics
	fetcher       *certs.Fetcher   // process-wide x5u cache
	fetchPolicy   verify.X5UConfig // the policy in force in fetcher
	policy        store.Store      // rate counters and other policy state
	policyMetrics *policy.Metrics
	managed       *policy.ManagedLists // the lists the admin API edits
	// engine is the policy of the generation in force (nil: no policy),
	// for the admin API.
	engine atomic.Pointer[policy.Engine]
	// chains are the call pipelines in force, for the admin API's explain.
	chains atomic.Pointer[sip.Chains]
}

// explain runs one INVITE through the pipeline of realm in force without
// sending anything (the admin API's dry run).
func (sh *shared) explain(ctx context.Context, realm string, src netip.AddrPort, invite []byte) (*sip.Call, []byte, error) {
	chains := sh.chains.Load()
	if chains == nil {
		return nil, nil, errors.New("no pipeline in force")
	}
	chain := chains.Inside
	if realm == "outside" {
		chain = chains.Outside
	}
	return sip.DryRun(ctx, chain, realm, src, invite, nil)
}

// newShared makes the state that outlives generations; x is the x5u fetch
// policy of the first configuration, st and replay the policy store and the
// replay cache (openState).
func newShared(log *slog.Logger, reg prometheus.Registerer, x verify.X5UConfig, st store.Store, replay verify.ReplayStore) (*shared, error) {
	f, err := certs.NewFetcher(x.Policy(), certs.WithMetrics(reg), certs.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("verify.x5u: %w", err)
	}
	return &shared{log: log, reg: reg, replay: replay, verifyMetrics: verify.NewMetrics(reg),
		fetcher: f, fetchPolicy: x, policy: st, policyMetrics: policy.NewMetrics(reg), managed: &policy.ManagedLists{}}, nil
}

// install puts the shared side of an accepted generation in force: its x5u
// policy (the fetcher then drops its cache and breakers, filled under the
// old policy) and its certificate chain on the repository. It cannot fail:
// everything that can was done by build.
func (g *generation) install(sh *shared, repo *x5uRepository) {
	if g.fetch != nil {
		sh.fetcher.Install(g.fetch.prepared)
		sh.fetchPolicy = g.fetch.config
		sh.log.Info("verify.x5u policy changed: certificate cache cleared")
	}
	repo.publish(g.signing)
	sh.engine.Store(g.engine)
	sh.chains.Store(&g.chains)
}

// build is the one place where the order of call pipeline stages is written
// (docs/DESIGN.md "The call pipeline"). Cheap stages that reject the most run
// first, so a flood cannot force signature checks or certificate fetches:
//
//	inside  (outbound): classify source → policy (rate, DNC, calling window,
//	                    callback shield, …) → attest
//	outside (inbound):  policy (rate, bombing, one-ring, hygiene, …) → verify →
//	                    policy.verified (min attestation, victim protection,
//	                    reputation)
//
// Stages arrive issue by issue; a missing one is simply not in the chain.
func build(cfg *configs.Config, sh *shared) (*generation, error) {
	g := &generation{chains: sip.Chains{Inside: sip.Chain{}, Outside: sip.Chain{}}}
	s, err := loadSigning(cfg)
	if err != nil {
		return nil, err
	}
	engine, err := loadPolicy(cfg.Policy.Files, cfg.Resolve, sh.policy, sh.managed)
	if err != nil {
		return nil, err
	}
	if s != nil {
		g.chains.Inside = append(g.chains.Inside, attest.Classify{Service: s.service})
	}
	g.engine = engine
	if engine != nil {
		early := policy.Handler{Engine: engine, Phase: policy.PhaseEarly, Metrics: sh.policyMetrics, Log: sh.log}
		g.chains.Inside = append(g.chains.Inside, early)
		g.chains.Outside = append(g.chains.Outside, early)
	}
	if s != nil {
		g.signing = s
		g.chains.Inside = append(g.chains.Inside, attest.Handler{Service: s.service})
	}
	if vc := cfg.Verify; vc.Enabled {
		trust, err := certs.NewTrustStore(resolveAll(cfg, vc.TrustRoots), resolveAll(cfg, vc.TrustDirs), resolveAll(cfg, vc.CRLs))
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		if !reflect.DeepEqual(vc.X5U, sh.fetchPolicy) {
			p, err := sh.fetcher.Prepare(vc.X5U.Policy())
			if err != nil {
				return nil, fmt.Errorf("verify.x5u: %w", err)
			}
			g.fetch = &fetchUpdate{prepared: p, config: vc.X5U}
		}
		src := verify.FetcherSource{Fetcher: sh.fetcher}
		svc := verify.New(vc, src, verify.TrustCredentials{Store: trust}, sh.replay, nil)
		g.chains.Outside = append(g.chains.Outside, verify.Handler{Service: svc, Config: vc, Metrics: sh.verifyMetrics})
	}
	if engine != nil && engine.HasRules(policy.PhaseVerified) {
		g.chains.Outside = append(g.chains.Outside, policy.Handler{Engine: engine, Phase: policy.PhaseVerified, Metrics: sh.policyMetrics, Log: sh.log})
	}
	return g, nil
}

// resolveAll resolves paths against the configuration file's directory.
func resolveAll(cfg *configs.Config, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = cfg.Resolve(p)
	}
	return out
}

// loadPolicy reads and compiles the policy files (nil when there are none).
// Each file's lists resolve against that file's directory.
func loadPolicy(files []string, resolve func(string) string, st store.Store, managed *policy.ManagedLists) (*policy.Engine, error) {
	if len(files) == 0 {
		return nil, nil
	}
	parsed := make([]policy.File, len(files))
	for i, f := range files {
		path := resolve(f)
		if err := configs.LoadFile(path, &parsed[i]); err != nil {
			return nil, err
		}
		dir := filepath.Dir(path)
		for j := range parsed[i].Lists {
			if l := &parsed[i].Lists[j]; l.File != "" && !filepath.IsAbs(l.File) {
				l.File = filepath.Join(dir, l.File)
			}
		}
	}
	e, err := policy.Compile(parsed, policy.FileLoader(func(p string) string { return p }, time.Now()), st, managed)
	if err != nil {
		return nil, err
	}
	return e, nil
}
