package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// statePolicy is the policy of the state comparison: rules that use the
// store on every call, with limits no call reaches, so every call goes
// through and costs the same on both backends. Per call: 4 counter adds
// (rate, bombing's 3 default thresholds), 1 flag read (one-ring mark), and
// at the call's end 1 distinct add (one-ring learning).
const statePolicy = `rules:
  - name: per-caller
    type: rate
    match: {realm: outside}
    key: caller
    limit: 1000000
    window: 1m
    action: {type: reject}
  - name: bombing
    type: bombing
    match: {realm: outside}
    action: {type: reject, code: 486}
  - name: wangiri
    type: one_ring
    callees: 20
    percent: 80
    ring_max: 2s
    window: 10m
    flag_for: 1h
    action: {type: reject, code: 608}
`

// stateCompare is stirgate with one policy on each state backend, at one
// rate, each call from its own calling number: Rounds rounds, each backend
// one step per round from a fresh process, alternating, so that a drift
// of the machine hits both alike.
type stateCompare struct {
	Rate     int          `json:"target_cps"`
	Rounds   int          `json:"rounds"`
	Timeout  string       `json:"state_redis_timeout"`
	Nice     int          `json:"redis_nice"`
	Policy   string       `json:"policy"`
	Steps    []step       `json:"steps"`
	Median   []median     `json:"medians"`
	Memory   *redisMemory `json:"redis_memory,omitempty"`
	Added    *added       `json:"redis_added_latency,omitempty"`
	Capacity *capacity    `json:"redis_capacity,omitempty"`
	Targets  []target     `json:"targets,omitempty"`
}

// median is one backend's medians over its clean steps.
type median struct {
	Backend string  `json:"backend"`
	Steps   int     `json:"clean_steps"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	CPUus   float64 `json:"cpu_us_per_call"`
	// Redis only: Redis CPU per call and the mean batch round trip.
	RedisCPUus  float64 `json:"redis_cpu_us_per_call,omitempty"`
	BatchMeanMs float64 `json:"batch_mean_ms,omitempty"`
}

// added is INVITE -> final with Redis less with memory (medians).
type added struct {
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
}

// capacity is what one Redis shard (one core: Redis runs commands on one
// thread) can serve, from Redis CPU per call.
type capacity struct {
	RedisCPUusPerCall float64 `json:"redis_cpu_us_per_call"`
	CallsPerSecond    float64 `json:"calls_per_s_at_one_core"`
	NodesAt3000       float64 `json:"stirgate_nodes_at_3000_cps"`
	NodesAt3000At70   float64 `json:"stirgate_nodes_at_3000_cps_at_70pct"`
}

// stateRun runs the comparison: per round, each backend one step from a
// fresh stirgate (a second try if the first is not clean).
func (b *bench) stateRun(ctx context.Context) error {
	rate, d := b.o.stateCPS, b.o.step
	calls := rate * int(d/time.Second)
	b.env.policy = statePolicy
	if b.o.statePolicy != "" {
		pol, err := os.ReadFile(b.o.statePolicy)
		if err != nil {
			return fmt.Errorf("-state-policy: %w", err)
		}
		b.env.policy = string(pol)
	}
	log.Printf("policy state: %s at %d calls/s, %d calls each, each from its own number, %d rounds", strings.Join(b.o.states, " vs "), rate, calls, b.o.stateRounds)
	if err := b.env.writeCallers(calls); err != nil {
		return err
	}
	sc := &stateCompare{Rate: rate, Rounds: b.o.stateRounds, Timeout: durationOrDefault(b.o.stateTimeout), Nice: b.o.redisNice, Policy: b.env.policy}
	b.res.State = sc
	if slices.Contains(b.o.states, "redis") {
		r, err := startRedis(ctx, filepath.Join(b.env.work, "redis"), b.o.redisNice)
		if err != nil {
			return err
		}
		b.env.redis = r
		defer func() { r.stop(); b.env.redis = nil }()
	}
	for round := 1; round <= b.o.stateRounds; round++ {
		for _, backend := range b.o.states {
			if err := b.stateStep(ctx, sc, backend, rate, d); err != nil {
				return err
			}
		}
	}
	sc.summarize()
	return nil
}

// stateStep runs one backend's step of a round.
func (b *bench) stateStep(ctx context.Context, sc *stateCompare, backend string, rate int, d time.Duration) error {
	p, err := b.startSystem(ctx, "stirgate", "policy-"+backend, 0)
	if err != nil {
		return err
	}
	defer func() { p.stop() }()
	for try := 1; try <= 2; try++ {
		var used0 int64
		if p.redis != nil {
			if err := p.redis.flush(); err != nil {
				return err
			}
			s0, err := p.redis.snapshot()
			if err != nil {
				return err
			}
			used0 = s0.usedMemory
		}
		s, err := b.step(ctx, p, p.mode, rate, d, try)
		if err != nil {
			return err
		}
		sc.Steps = append(sc.Steps, s)
		log.Printf("  %s%s", s, s.redisString())
		// Redis memory after the step: the last clean one's.
		if p.redis != nil && s.Clean {
			if sc.Memory, err = p.redis.memory(used0); err != nil {
				log.Printf("redis memory: %v", err)
			}
		}
		if s.Clean {
			return nil
		}
		if try == 1 {
			if err := b.restart(ctx, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeCallers writes the SIPp injection file of uac_callers.xml: n
// distinct calling numbers, one per call.
func (e *env) writeCallers(n int) error {
	var sb strings.Builder
	sb.WriteString("SEQUENTIAL\n")
	for i := range n {
		fmt.Fprintf(&sb, "+1555%07d\n", 2000000+i)
	}
	e.callers = filepath.Join(e.work, "callers.csv")
	return os.WriteFile(e.callers, []byte(sb.String()), 0o644)
}

func (sc *stateCompare) first(backend string) (step, bool) {
	for _, s := range sc.Steps {
		if s.Mode == "policy-"+backend && s.Clean {
			return s, true
		}
	}
	return step{}, false
}

// medianOf is backend's medians over its clean steps (Steps 0: none).
func (sc *stateCompare) medianOf(backend string) median {
	m := median{Backend: backend}
	var p50, p99, cpu, rcpu, batch []float64
	for _, s := range sc.Steps {
		if s.Mode != "policy-"+backend || !s.Clean {
			continue
		}
		p50, p99, cpu = append(p50, s.P50ms), append(p99, s.P99ms), append(cpu, s.CPUus)
		if r := s.Redis; r != nil {
			rcpu, batch = append(rcpu, r.CPUusPerCall), append(batch, r.BatchMeanMs)
		}
	}
	m.Steps = len(p50)
	m.P50ms, m.P99ms, m.CPUus = middle(p50), middle(p99), middle(cpu)
	m.RedisCPUus, m.BatchMeanMs = middle(rcpu), middle(batch)
	return m
}

// middle is the median of v (0 when empty).
func middle(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// summarize compares the medians of the backends' clean steps. A target
// is met only when every round of both backends gave a clean step.
func (sc *stateCompare) summarize() {
	sc.Median = nil
	for _, be := range []string{"memory", "redis"} {
		if m := sc.medianOf(be); m.Steps > 0 {
			sc.Median = append(sc.Median, m)
		}
	}
	mem, red := sc.medianOf("memory"), sc.medianOf("redis")
	if red.RedisCPUus > 0 {
		perCore := 1e6 / red.RedisCPUus
		sc.Capacity = &capacity{RedisCPUusPerCall: red.RedisCPUus, CallsPerSecond: perCore, NodesAt3000: perCore / 3000, NodesAt3000At70: 0.7 * perCore / 3000}
	}
	if mem.Steps == 0 || red.Steps == 0 {
		return
	}
	sc.Added = &added{P50ms: red.P50ms - mem.P50ms, P99ms: red.P99ms - mem.P99ms}
	all := mem.Steps == sc.Rounds && red.Steps == sc.Rounds
	note := ""
	if !all {
		note = fmt.Sprintf(" (clean steps: memory %d, redis %d of %d rounds)", mem.Steps, red.Steps, sc.Rounds)
	}
	sc.Targets = append(sc.Targets,
		target{Name: fmt.Sprintf("added p50 INVITE->final, Redis vs memory, %d calls/s", sc.Rate), Want: "<= +0.3 ms",
			Got: fmt.Sprintf("%+.2f ms (%.2f vs %.2f)%s", sc.Added.P50ms, red.P50ms, mem.P50ms, note), Met: sc.Added.P50ms <= 0.3 && all},
		target{Name: fmt.Sprintf("added p99 INVITE->final, Redis vs memory, %d calls/s", sc.Rate), Want: "<= +2 ms",
			Got: fmt.Sprintf("%+.2f ms (%.2f vs %.2f)%s", sc.Added.P99ms, red.P99ms, mem.P99ms, note), Met: sc.Added.P99ms <= 2 && all})
}

// table is the comparison's part of the text report.
func (sc *stateCompare) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\npolicy state, memory vs redis-server on loopback, %d calls/s, each call from its own number, %d rounds; state.redis.timeout %s; redis-server nice %d:\n", sc.Rate, sc.Rounds, sc.Timeout, sc.Nice)
	fmt.Fprintf(&b, "(redis cmd/c: commands Redis executed, those the scripts run inside EVALSHA included; round trip/c: stirgate's stirgate_policy_store_round_trips, summed over the stages)\n")
	fmt.Fprintf(&b, "(batch ms: a stage's batch as stirgate timed it, mean)\n")
	fmt.Fprintf(&b, "%-8s %3s %8s %8s %8s %9s %10s %12s %12s %8s %8s  %s\n", "state", "try", "failed%", "p50 ms", "p99 ms", "sg µs/c", "redis cmd/c", "round trip/c", "redis µs/c", "batch ms", "errors", "clean")
	for _, s := range sc.Steps {
		cmds, rts, cpu, batch, errs := "-", "-", "-", "-", "-"
		if r := s.Redis; r != nil {
			cmds, rts, cpu = fmt.Sprintf("%.2f", r.CommandsPerCall), fmt.Sprintf("%.2f", r.RoundTripsPerCall), fmt.Sprintf("%.1f", r.CPUusPerCall)
			batch, errs = fmt.Sprintf("%.3f", r.BatchMeanMs), strconv.Itoa(int(sumValues(r.Errors)))
		}
		fmt.Fprintf(&b, "%-8s %3d %8.3f %8.2f %8.2f %9.0f %10s %12s %12s %8s %8s  %s\n", strings.TrimPrefix(s.Mode, "policy-"), s.Try, s.FailedPct, s.P50ms, s.P99ms, s.CPUus, cmds, rts, cpu, batch, errs, cleanWord(s))
	}
	for _, m := range sc.Median {
		fmt.Fprintf(&b, "median %-6s over %d clean steps: p50 %.2f ms, p99 %.2f ms, stirgate %.0f µs/call", m.Backend, m.Steps, m.P50ms, m.P99ms, m.CPUus)
		if m.RedisCPUus > 0 {
			fmt.Fprintf(&b, ", redis %.1f µs/call, batch %.3f ms", m.RedisCPUus, m.BatchMeanMs)
		}
		b.WriteString("\n")
	}
	if red, ok := sc.first("redis"); ok && red.Redis != nil {
		fmt.Fprintf(&b, "redis commands per call: %s; store operations per call by op: %s; flag cache hits %.0f, misses %.0f\n",
			perCall(red.Redis.ByCommand), perCall(red.Redis.OpsByOp), red.Redis.CacheHits, red.Redis.CacheMisses)
	}
	if a := sc.Added; a != nil {
		fmt.Fprintf(&b, "added by redis (medians): p50 %+.2f ms, p99 %+.2f ms\n", a.P50ms, a.P99ms)
	}
	if c := sc.Capacity; c != nil {
		fmt.Fprintf(&b, "one Redis shard (one core): %.0f calls/s at %.1f µs/call = %.1f stirgate nodes at 3,000 calls/s (%.1f at 70%% of the core)\n",
			c.CallsPerSecond, c.RedisCPUusPerCall, c.NodesAt3000, c.NodesAt3000At70)
	}
	if m := sc.Memory; m != nil {
		fmt.Fprintf(&b, "redis memory: %d distinct callers, %d keys: MEMORY USAGE %.0f B per caller, used_memory %.0f B per caller\n",
			m.Callers, m.Keys, m.BytesPerCaller, m.UsedMemoryPerCaller)
		for _, g := range m.Groups {
			fmt.Fprintf(&b, "  %-48s %7d keys %6.0f B each, TTL left %s\n", g.Pattern, g.Keys, g.AvgBytes, g.TTL)
		}
	}
	for _, t := range sc.Targets {
		mark := "MET    "
		if !t.Met {
			mark = "NOT MET"
		}
		fmt.Fprintf(&b, "  %s %-62s want %-11s got %s\n", mark, t.Name, t.Want, t.Got)
	}
	return b.String()
}

// check fails a backend without a clean step (smoke: the bench is broken).
func (sc *stateCompare) check(backends []string) []string {
	var bad []string
	for _, be := range backends {
		if _, ok := sc.first(be); !ok {
			why := "no step"
			for _, s := range sc.Steps {
				if s.Mode == "policy-"+be {
					why = s.Why
				}
			}
			bad = append(bad, fmt.Sprintf("stirgate/policy-%s: %s", be, why))
		}
	}
	return bad
}

func (s step) redisString() string {
	r := s.Redis
	if r == nil {
		return ""
	}
	return fmt.Sprintf("; redis: %.2f commands/call, %.2f round trips/call, %.1f µs CPU/call, batch mean %.3f ms (p50 <= %g, p99 <= %g), errors %v",
		r.CommandsPerCall, r.RoundTripsPerCall, r.CPUusPerCall, r.BatchMeanMs, r.BatchP50ms, r.BatchP99ms, r.Errors)
}

func perCall(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sumValues(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}

// scrapeMetrics reads stirgate's /metrics: value by series
// (`name{labels}`).
func scrapeMetrics(p *proxy) (map[string]float64, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(p.admin + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(body), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out, nil
}

// splitSeries splits `name{k="v",...}` (values without commas or quotes,
// as stirgate's labels are) into the name and labels.
func splitSeries(series string) (string, map[string]string) {
	name, rest, ok := strings.Cut(series, "{")
	labels := map[string]string{}
	if !ok {
		return name, labels
	}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			labels[k] = strings.Trim(v, `"`)
		}
	}
	return name, labels
}

func durationOrDefault(d time.Duration) string {
	if d == 0 {
		return "default"
	}
	return d.String()
}
