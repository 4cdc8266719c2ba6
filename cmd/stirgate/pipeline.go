package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
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
// settings: the call pipelines and what the admin server publishes.
type generation struct {
	chains  sip.Chains
	signing *signing // nil when signing is disabled
}

// shared is created once in serve and injected into every generation: state
// that survives reloads (DESIGN.md "State").
type shared struct {
	log           *slog.Logger
	reg           prometheus.Registerer
	replay        *verify.MemoryReplay
	verifyMetrics *verify.Metrics
	fetcher       *certs.Fetcher // process-wide x5u cache, made with the first policy
	fetchPolicy   verify.X5UConfig
	policy        store.Store // rate counters and other policy state
	policyMetrics *policy.Metrics
}

func newShared(log *slog.Logger, reg prometheus.Registerer) *shared {
	return &shared{log: log, reg: reg, replay: verify.NewMemoryReplay(), verifyMetrics: verify.NewMetrics(reg), policy: store.NewMemory(), policyMetrics: policy.NewMetrics(reg)}
}

// certSource returns the process-wide fetcher, made on first use. A changed
// x5u policy is applied in place; the fetcher then drops its cache and
// breakers, which were filled under the old policy.
func (sh *shared) certSource(x verify.X5UConfig) (verify.CertSource, error) {
	if sh.fetcher == nil {
		f, err := certs.NewFetcher(x.Policy(), certs.WithMetrics(sh.reg), certs.WithLogger(sh.log))
		if err != nil {
			return nil, fmt.Errorf("verify.x5u: %w", err)
		}
		sh.fetcher, sh.fetchPolicy = f, x
	} else if !reflect.DeepEqual(x, sh.fetchPolicy) {
		if err := sh.fetcher.SetPolicy(x.Policy()); err != nil {
			return nil, fmt.Errorf("verify.x5u: %w", err)
		}
		sh.fetchPolicy = x
		sh.log.Info("verify.x5u policy changed: certificate cache cleared")
	}
	return verify.FetcherSource{Fetcher: sh.fetcher}, nil
}

// build is the one place where the order of call pipeline stages is written
// (DESIGN.md "The call pipeline"). Cheap stages that reject the most run
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
	engine, err := loadPolicy(cfg.Policy.Files, cfg.Resolve, sh.policy)
	if err != nil {
		return nil, err
	}
	if s != nil {
		g.chains.Inside = append(g.chains.Inside, attest.Classify{Service: s.service})
	}
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
		roots := make([]string, len(vc.TrustRoots))
		for i, r := range vc.TrustRoots {
			roots[i] = cfg.Resolve(r)
		}
		dirs := make([]string, len(vc.TrustDirs))
		for i, d := range vc.TrustDirs {
			dirs[i] = cfg.Resolve(d)
		}
		crls := make([]string, len(vc.CRLs))
		for i, c := range vc.CRLs {
			crls[i] = cfg.Resolve(c)
		}
		store, err := certs.NewTrustStore(roots, dirs, crls)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		src, err := sh.certSource(vc.X5U)
		if err != nil {
			return nil, err
		}
		svc := verify.New(vc, src, verify.TrustCredentials{Store: store}, sh.replay, nil)
		g.chains.Outside = append(g.chains.Outside, verify.Handler{Service: svc, Config: vc, Metrics: sh.verifyMetrics})
	}
	if engine != nil && engine.HasRules(policy.PhaseVerified) {
		g.chains.Outside = append(g.chains.Outside, policy.Handler{Engine: engine, Phase: policy.PhaseVerified, Metrics: sh.policyMetrics, Log: sh.log})
	}
	return g, nil
}

// loadPolicy reads and compiles the policy files (nil when there are none).
// Each file's lists resolve against that file's directory.
func loadPolicy(files []string, resolve func(string) string, st store.Store) (*policy.Engine, error) {
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
	e, err := policy.Compile(parsed, policy.FileLoader(func(p string) string { return p }, time.Now()), st)
	if err != nil {
		return nil, err
	}
	return e, nil
}
