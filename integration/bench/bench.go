package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/stirgate/stirgate/attest"
	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/certs"
	"github.com/stirgate/stirgate/integration/internal/sippfiles"
)

// bench runs the steps and fills results.
type bench struct {
	env     *env
	o       options
	res     *results
	uasPort int // the callee of direct steps
	signer  *attest.Signer
	seq     int
}

// step is one SIPp run at one rate through one system (or direct).
type step struct {
	System     string  `json:"system"` // stirgate | kamailio | direct
	Mode       string  `json:"mode"`
	Target     int     `json:"target_cps"`
	Try        int     `json:"try"`
	Calls      int     `json:"calls"`
	Successful int     `json:"successful"`
	Failed     int     `json:"failed"`
	FailedPct  float64 `json:"failed_pct"`
	Achieved   float64 `json:"achieved_cps"`
	Retrans    int     `json:"retransmissions"`
	UDPDrops   int     `json:"udp_rcvbuf_drops"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	CPUus      float64 `json:"proxy_cpu_us_per_call"`
	// GenCPUus: the Go caller and callee's CPU per call (transport
	// comparison), which shares the cores with the proxy.
	GenCPUus float64 `json:"generator_cpu_us_per_call,omitempty"`
	Mem      memory  `json:"proxy_memory"`
	// Identity: sign mode, what secsipidx said about the callee's sample.
	Identity *identitySample `json:"identity_sample,omitempty"`
	// Records: stirgate's call records of the step, written and dropped
	// (a full queue); a drop makes the step unclean.
	RecordsWritten float64 `json:"records_written,omitempty"`
	RecordsDropped float64 `json:"records_dropped,omitempty"`
	// Redis: policy-redis mode, what Redis did per call.
	Redis *redisStepStats `json:"redis,omitempty"`
	// Clean: every criterion, the latency bound included; Carried: every
	// criterion but the latency bound (the "clean" of earlier runs).
	Clean   bool   `json:"clean"`
	Carried bool   `json:"clean_without_latency_bound"`
	Why     string `json:"why,omitempty"`
}

func (b *bench) runAll(ctx context.Context) error {
	ports, err := freeUDPPorts(1)
	if err != nil {
		return err
	}
	b.uasPort = ports[0]
	s, err := certs.LoadSigner(filepath.Join(b.env.pki, "sp.key"), filepath.Join(b.env.pki, "sp.pem"), time.Now())
	if err != nil {
		return err
	}
	if b.signer, err = attest.NewSigner(s.Key, b.env.x5u); err != nil {
		return err
	}

	if b.o.stateOnly {
		return b.stateRun(ctx)
	}
	if b.o.transportOnly {
		return b.transportRun(ctx)
	}
	if b.o.only == "" {
		log.Printf("harness ceiling: SIPp -> SIPp")
		if err := b.ramp(ctx, []*proxy{nil}, b.sippStep("plain")); err != nil {
			return err
		}
	}
	for _, mode := range b.o.modes {
		// Each system has its own callee port: a proxy still
		// retransmitting after an overloaded step must not feed calls to
		// the other system's callee.
		var systems []*proxy
		if b.o.only != "kamailio" {
			p, err := b.startSystem(ctx, "stirgate", mode, 0)
			if err != nil {
				return err
			}
			systems = append(systems, p)
		}
		if b.o.only != "stirgate" {
			p, err := b.startSystem(ctx, "kamailio", mode, 0)
			if err != nil {
				return err
			}
			systems = append(systems, p)
		}
		log.Printf("mode %s", mode)
		err := b.ramp(ctx, systems, b.sippStep(mode))
		for _, p := range systems {
			p.stop()
		}
		if err != nil {
			return err
		}
	}
	if b.o.overloadFor > 0 && slices.Contains(b.o.modes, "plain") {
		log.Printf("overload: twice stirgate's max clean plain rate for %v, then half of it", b.o.overloadFor)
		if err := b.overloadRun(ctx, b.maxClean("stirgate", "plain")); err != nil {
			return err
		}
	}
	if b.o.dialogsHold > 0 && b.o.only != "kamailio" {
		if err := b.dialogsRun(ctx); err != nil {
			return err
		}
	}
	if len(b.o.states) > 0 && b.o.only != "kamailio" {
		if err := b.stateRun(ctx); err != nil {
			return err
		}
	}
	if len(b.o.transports) > 0 && b.o.only != "kamailio" {
		if err := b.transportRun(ctx); err != nil {
			return err
		}
	}
	if b.o.soak > 0 && b.o.only != "kamailio" {
		if err := b.soakRun(ctx); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// stepFunc runs one step of a ramp through p at rate.
type stepFunc func(ctx context.Context, p *proxy, rate, try int) (step, error)

// sippStep is a ramp's step driven by SIPp in mode.
func (b *bench) sippStep(mode string) stepFunc {
	return func(ctx context.Context, p *proxy, rate, try int) (step, error) {
		return b.step(ctx, p, mode, rate, b.o.step, try)
	}
}

// ramp raises the rate for every system, alternating them at each rate
// (and which goes first), until every system has failed a rate twice
// (failed: not carried; a step over the latency bound only is retried,
// and the ramp goes on).
func (b *bench) ramp(ctx context.Context, systems []*proxy, run stepFunc) error {
	active := append([]*proxy(nil), systems...)
	for i, rate := range b.o.rates {
		if len(active) == 0 {
			break
		}
		order := active
		if i%2 == 1 && len(active) == 2 {
			order = []*proxy{active[1], active[0]}
		}
		var still []*proxy
		for _, p := range order {
			clean, carried := false, false
			for try := 1; try <= 2 && !clean; try++ {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s, err := run(ctx, p, rate, try)
				if err != nil {
					return err
				}
				b.res.Steps = append(b.res.Steps, s)
				log.Printf("  %s", s)
				clean, carried = s.Clean, carried || s.Carried
				if !clean && p != nil && try == 1 {
					// An overloaded proxy keeps retransmitting for up
					// to 32 s: the retry starts from a fresh process.
					if err := b.restart(ctx, p); err != nil {
						return err
					}
				}
			}
			// Over the latency bound but carried: go on, for the
			// maximum without the bound.
			if clean || carried {
				still = append(still, p)
			}
		}
		// Keep the original order for the alternation.
		active = active[:0]
		for _, p := range systems {
			if slices.Contains(still, p) {
				active = append(active, p)
			}
		}
	}
	return nil
}

// startSystem starts stirgate or Kamailio for mode, forwarding to the
// callee port nextHop (0: a fresh port of its own).
func (b *bench) startSystem(ctx context.Context, system, mode string, nextHop int) (*proxy, error) {
	if nextHop == 0 {
		port, err := freeUDPPort()
		if err != nil {
			return nil, err
		}
		nextHop = port
	}
	if system == "stirgate" {
		return b.env.startStirgate(ctx, mode, nextHop, b.o.workers, b.o.env, b.o.stateTimeout, nil)
	}
	return b.env.startKamailio(ctx, mode, nextHop, b.o.workers, b.o.kamAlloc, b.o.kamArgs, nil)
}

// restart replaces p's process with a fresh one (same mode, same callee
// port); p keeps its identity in the ramp.
func (b *bench) restart(ctx context.Context, p *proxy) error {
	p.stop()
	var q *proxy
	var err error
	if p.relaunch != nil {
		q, err = p.relaunch(ctx)
	} else {
		q, err = b.startSystem(ctx, p.system, p.mode, p.nextHop)
	}
	if err != nil {
		return err
	}
	*p = *q
	return nil
}

func systemName(p *proxy) string {
	if p == nil {
		return "direct"
	}
	return p.system
}

// step runs rate*d calls through p (nil: straight to the callee).
func (b *bench) step(ctx context.Context, p *proxy, mode string, rate int, d time.Duration, try int) (step, error) {
	if p != nil && !p.alive() {
		return step{}, fmt.Errorf("%s (%s) died:\n%s", p.system, mode, p.logTail())
	}
	b.seq++
	calls := rate * int(d/time.Second)
	s := step{System: systemName(p), Mode: mode, Target: rate, Try: try, Calls: calls}
	dir := filepath.Join(b.env.work, "steps", fmt.Sprintf("%03d-%s-%s-%d", b.seq, s.System, mode, rate))
	remote, uasPort := hostPort(b.uasPort), b.uasPort
	if p != nil {
		remote, uasPort = p.addr, p.nextHop
	}
	scenario, extra := b.env.scenario("uac.xml"), []string(nil)
	if b.o.uacScenario != "" {
		scenario = b.o.uacScenario
	}
	if mode == "verify" && p != nil {
		ids, err := b.identities(dir, calls)
		if err != nil {
			return s, err
		}
		scenario, extra = b.env.scenario("uac_signed.xml"), []string{"-inf", ids, "-key", "x5u", b.env.x5u}
	}
	if strings.HasPrefix(mode, "policy-") && p != nil {
		scenario, extra = b.env.benchScenario("uac_callers.xml"), []string{"-inf", b.env.callers}
	}
	// In sign mode the callee fails every call whose INVITE arrives
	// without a signed-looking Identity and logs a sample of the headers,
	// which secsipidx verifies after the step: both proxies must really
	// sign.
	signed := mode == "sign" && p != nil
	callee, calleeExtra := b.env.scenario("uas.xml"), []string(nil)
	if signed {
		callee, calleeExtra = b.env.benchScenario("uas_identity.xml"), []string{"-trace_logs", "-log_file", identityLog}
	}
	bound := d + b.o.hold + 30*time.Second
	uas, err := startSipp(ctx, sippRun{dir: filepath.Join(dir, "uas"), scenario: callee, port: uasPort, calls: calls, timeout: bound, extra: calleeExtra})
	if err != nil {
		return s, err
	}
	defer uas.stop()
	if err := uas.waitBound(10 * time.Second); err != nil {
		return s, err
	}
	uacPort, err := freeUDPPort()
	if err != nil {
		return s, err
	}
	var pids []int
	var cpu0 time.Duration
	if p != nil {
		pids = p.pids()
		if cpu0, err = cpuTime(pids); err != nil {
			return s, err
		}
	}
	// Redis and stirgate's store metrics, read as close to the calls as
	// stirgate's CPU.
	var r0 redisSnap
	var m0 map[string]float64
	if p != nil && p.system == "stirgate" {
		if m0, err = scrapeMetrics(p); err != nil {
			return s, err
		}
	}
	if p != nil && p.redis != nil {
		if r0, err = p.redis.snapshot(); err != nil {
			return s, err
		}
	}
	drops := udpRcvbufErrors()
	var profErr chan error
	if b.o.profile != "" && p != nil && p.system == "stirgate" && d >= 4*time.Second {
		profErr = make(chan error, 1)
		path := filepath.Join(b.o.profile, fmt.Sprintf("%s-%s-%d-try%d", p.system, mode, rate, try))
		go func() {
			time.Sleep(time.Second)
			profErr <- p.profile(ctx, d-3*time.Second, path)
		}()
	}
	started := time.Now()
	uac, err := startSipp(ctx, sippRun{dir: filepath.Join(dir, "uac"), scenario: scenario, port: uacPort, remote: remote, calls: calls, rate: rate, hold: b.o.hold, timeout: bound, extra: extra})
	if err != nil {
		return s, err
	}
	ur := uac.wait()
	if p != nil {
		cpu1, err := cpuTime(pids)
		if err != nil {
			return s, err
		}
		s.CPUus = float64((cpu1-cpu0)/time.Microsecond) / float64(calls)
		s.Mem = readMemory(pids)
	}
	if p != nil && p.redis != nil {
		r1, err := p.redis.snapshot()
		if err != nil {
			return s, err
		}
		m1, err := scrapeMetrics(p)
		if err != nil {
			return s, err
		}
		s.Redis = redisStats(r0, r1, m0, m1, calls)
	}
	// The callee has what it will get; give it its timewait, then stop it.
	select {
	case <-uas.done:
	case <-time.After(3 * time.Second):
		uas.stop()
	}
	sr := uas.wait()
	if profErr != nil {
		if err := <-profErr; err != nil {
			log.Printf("profile: %v", err)
		}
	}
	s.UDPDrops = udpRcvbufErrors() - drops
	if p != nil && p.system == "stirgate" {
		// After the callee's timewait: the writer has flushed (100 ms).
		m2, err := scrapeMetrics(p)
		if err != nil {
			return s, err
		}
		s.RecordsWritten = m2["stirgate_records_written_total"] - m0["stirgate_records_written_total"]
		s.RecordsDropped = m2["stirgate_records_dropped_total"] - m0["stirgate_records_dropped_total"]
	}
	s.Successful = min(ur.successful, sr.successful)
	s.Retrans = ur.retransmit + sr.retransmit
	var why []string
	// Achieved: the calls answered per second between the first INVITE
	// sent and the last final response received (a call stuck until its
	// timeout does not stretch it; a proxy that falls behind does).
	if l, err := inviteLatency(filepath.Join(dir, "uac", "shortmsg.csv")); err == nil {
		s.P50ms = float64(l.P50) / float64(time.Millisecond)
		s.P99ms = float64(l.P99) / float64(time.Millisecond)
		if l.Span > 0 && s.Successful > 1 {
			s.Achieved = float64(s.Successful-1) / l.Span.Seconds()
		}
	} else {
		why = append(why, err.Error())
	}
	if ur.err != nil {
		why = append(why, ur.err.Error())
	}
	if (calls-s.Successful)*1000 >= calls { // judge's threshold: the caller's errors say why
		if e := firstLines(sippfiles.ReadFile(filepath.Join(dir, "uac", "errors.log")), 3); e != "" {
			why = append(why, "caller: "+strings.ReplaceAll(e, "\n", " | "))
		}
	}
	if s.Redis != nil && len(s.Redis.Errors) > 0 {
		why = append(why, fmt.Sprintf("store errors %v", s.Redis.Errors))
	}
	if signed {
		why = append(why, b.checkSample(ctx, &s, filepath.Join(dir, "uas", identityLog), started, bound)...)
	}
	s.judge(why, b.o.p99Bound)
	if !b.o.keep {
		os.RemoveAll(dir)
	}
	return s, nil
}

// checkSample checks the Identity headers the callee logged to logPath
// into s.Identity and says why they fail, if they do. The oldest was
// signed when the step started; the check runs at most bound (+ the
// callee's stop) later.
func (b *bench) checkSample(ctx context.Context, s *step, logPath string, started time.Time, bound time.Duration) []string {
	sample, err := b.env.checkIdentities(ctx, logPath, started, bound+time.Minute)
	s.Identity = &sample
	if err != nil {
		return []string{"identity: " + err.Error()}
	}
	return nil
}

// judge fills Failed and decides whether s is carried and clean: fewer
// than 0.1% of its calls failed, at least 98% of the target rate, no call
// record dropped, nothing in why (the step's other findings); clean also
// within the p99 bound.
func (s *step) judge(why []string, p99Bound time.Duration) {
	s.Failed = s.Calls - s.Successful
	s.FailedPct = 100 * float64(s.Failed) / float64(s.Calls)
	if s.Failed*1000 >= s.Calls {
		why = append([]string{fmt.Sprintf("%.2f%% failed", s.FailedPct)}, why...)
	}
	if s.Achieved < 0.98*float64(s.Target) {
		why = append(why, fmt.Sprintf("achieved %.0f < 98%% of %d", s.Achieved, s.Target))
	}
	if s.RecordsDropped > 0 {
		why = append(why, fmt.Sprintf("%.0f call records dropped", s.RecordsDropped))
	}
	s.Carried = len(why) == 0
	if bound := float64(p99Bound) / float64(time.Millisecond); s.P99ms > bound {
		why = append(why, fmt.Sprintf("p99 %.1f ms > %.0f ms", s.P99ms, bound))
	}
	s.Clean = len(why) == 0
	s.Why = strings.Join(why, "; ")
}

// identities writes a SIPp injection file with n fresh JWS, one per call,
// signed with the SP key for the caller and callee of uac_signed.xml.
func (b *bench) identities(dir string, n int) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString("SEQUENTIAL\n")
	now := time.Now().Unix()
	for i := 0; i < n; i++ {
		id, err := b.signer.Sign(passport.Claims{Attest: passport.LevelA, Orig: "15551230001", Dest: []string{strings.TrimPrefix(callee, "+")}, IAT: now, OrigID: uuid.NewString()})
		if err != nil {
			return "", err
		}
		jws, _, _ := strings.Cut(id, ";")
		sb.WriteString(jws)
		sb.WriteByte('\n')
	}
	path := filepath.Join(dir, "identities.csv")
	return path, os.WriteFile(path, []byte(sb.String()), 0o644)
}

// soak is stirgate's memory after a long run at soakCPS with signing on.
type soak struct {
	Duration   string  `json:"duration"`
	Rate       int     `json:"target_cps"`
	Step       step    `json:"step"`
	HeapInUse  float64 `json:"go_heap_inuse_mb"`
	Goroutines int     `json:"goroutines"`
}

func (b *bench) soakRun(ctx context.Context) error {
	log.Printf("soak: stirgate, sign mode, %d calls/s for %v", b.o.soakCPS, b.o.soak)
	p, err := b.startSystem(ctx, "stirgate", "sign", 0)
	if err != nil {
		return err
	}
	defer p.stop()
	s, err := b.step(ctx, p, "sign", b.o.soakCPS, b.o.soak, 1)
	if err != nil {
		return err
	}
	log.Printf("  %s", s)
	heap, g := goMemory(p)
	b.res.Soak = &soak{Duration: b.o.soak.String(), Rate: b.o.soakCPS, Step: s, HeapInUse: heap, Goroutines: g}
	return nil
}

func listenUDP(port int) (net.PacketConn, error) {
	return net.ListenPacket("udp", hostPort(port))
}

func (s step) String() string {
	mark := "clean"
	if !s.Clean {
		mark = "NOT clean: " + s.Why
	}
	return fmt.Sprintf("%-8s %-6s %5d cps (try %d): %7.1f achieved, %d/%d ok, %5d retrans, p50 %.2f ms, p99 %.2f ms, cpu %.0f µs/call, pss %.0f MB, %s",
		s.System, s.Mode, s.Target, s.Try, s.Achieved, s.Successful, s.Calls, s.Retrans, s.P50ms, s.P99ms, s.CPUus, s.Mem.PSSMB, mark)
}
