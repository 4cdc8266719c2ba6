package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stirgate/stirgate/integration/internal/sippfiles"
)

// overloadResult is one system offered twice stirgate's maximum clean
// plain rate for -overload-for, then, at once, half that maximum for
// -overload-recovery: what it served during the overload, how fast, and
// whether it was clean again within recoverWithin of the load dropping.
type overloadResult struct {
	System  string  `json:"system"`
	MaxCPS  int     `json:"stirgate_max_clean_cps"` // the reference: stirgate's plain maximum
	Offered int     `json:"offered_cps"`
	For     string  `json:"duration"`
	Calls   int     `json:"calls"`
	OK      int     `json:"answered_200"`
	Refused int     `json:"refused_503"`
	Other   int     `json:"other_final"`
	NoFinal int     `json:"no_final_response"`
	Goodput float64 `json:"goodput_cps"` // 200s per second of the overload
	// GoodputPct is Goodput in % of MaxCPS.
	GoodputPct    float64 `json:"goodput_pct_of_max"`
	P99AcceptedMs float64 `json:"p99_accepted_ms"` // INVITE -> 200 of the answered calls
	// PSS of the proxy before the overload and after the recovery.
	PSSBeforeMB float64 `json:"pss_before_mb"`
	PSSAfterMB  float64 `json:"pss_after_mb"`
	// Recovery: half of MaxCPS right after; judged on the calls made from
	// recoverWithin on.
	RecoveryCPS    int     `json:"recovery_cps"`
	RecoveryCalls  int     `json:"recovery_calls_judged"`
	RecoveryFailed int     `json:"recovery_failed"`
	RecoveryP99ms  float64 `json:"recovery_p99_ms"`
	Recovered      bool    `json:"recovered"`
	Why            string  `json:"why,omitempty"`
}

// recoverWithin is how soon after the load drops the issue wants a clean
// system again.
const recoverWithin = 5 * time.Second

// overloadRun offers 2 x max calls/s of plain calls to each system, one
// after the other, each from a fresh process.
func (b *bench) overloadRun(ctx context.Context, maxCPS int) error {
	if maxCPS <= 0 {
		log.Printf("overload: no clean plain step of stirgate: skipped")
		return nil
	}
	systems := []string{"stirgate", "kamailio"}
	if b.o.only != "" {
		systems = []string{b.o.only}
	}
	for _, system := range systems {
		p, err := b.startSystem(ctx, system, "plain", 0)
		if err != nil {
			return err
		}
		res, err := b.overloadStep(ctx, p, maxCPS)
		p.stop()
		if err != nil {
			return err
		}
		log.Printf("  %s", res)
		b.res.Overload = append(b.res.Overload, res)
	}
	return nil
}

func (b *bench) overloadStep(ctx context.Context, p *proxy, maxCPS int) (overloadResult, error) {
	o := overloadResult{System: p.system, MaxCPS: maxCPS, Offered: 2 * maxCPS, For: b.o.overloadFor.String(), RecoveryCPS: max(maxCPS/2, 1)}
	o.Calls = o.Offered * int(b.o.overloadFor/time.Second)
	recCalls := o.RecoveryCPS * int(b.o.overloadRecovery/time.Second)
	b.seq++
	dir := filepath.Join(b.env.work, "steps", fmt.Sprintf("%03d-%s-overload-%d", b.seq, p.system, o.Offered))
	bound := b.o.overloadFor + b.o.overloadRecovery + b.o.hold + 60*time.Second
	uas, err := startSipp(ctx, sippRun{dir: filepath.Join(dir, "uas"), scenario: b.env.scenario("uas.xml"), port: p.nextHop, calls: o.Calls + recCalls, timeout: bound})
	if err != nil {
		return o, err
	}
	defer uas.stop()
	if err := uas.waitBound(10 * time.Second); err != nil {
		return o, err
	}
	o.PSSBeforeMB = readMemory(p.pids()).PSSMB
	ports, err := freeUDPPorts(2)
	if err != nil {
		return o, err
	}
	scenario := b.env.scenario("uac.xml")
	if b.o.uacScenario != "" {
		scenario = b.o.uacScenario
	}
	over, err := startSipp(ctx, sippRun{dir: filepath.Join(dir, "uac"), scenario: scenario, port: ports[0], remote: p.addr, calls: o.Calls, rate: o.Offered, hold: b.o.hold, timeout: bound})
	if err != nil {
		return o, err
	}
	defer over.stop()
	// The recovery caller starts when the overload caller has sent its
	// last INVITE (by the clock: SIPp paces -r exactly).
	select {
	case <-time.After(b.o.overloadFor):
	case <-ctx.Done():
		return o, ctx.Err()
	}
	dropped := time.Now()
	rec, err := startSipp(ctx, sippRun{dir: filepath.Join(dir, "recovery"), scenario: scenario, port: ports[1], remote: p.addr, calls: recCalls, rate: o.RecoveryCPS, hold: b.o.hold, timeout: bound})
	if err != nil {
		return o, err
	}
	defer rec.stop()
	over.wait()
	rec.wait()
	if !p.alive() {
		o.Why = fmt.Sprintf("%s died: %s", p.system, p.logTail())
		return o, nil
	}
	o.PSSAfterMB = readMemory(p.pids()).PSSMB

	calls, err := sippfiles.InviteTimings(filepath.Join(dir, "uac", "shortmsg.csv"))
	if err != nil {
		return o, err
	}
	var ok []time.Duration
	for _, c := range calls {
		switch {
		case c.Code == 0:
			o.NoFinal++
		case c.Code == 200:
			o.OK++
			ok = append(ok, c.Wait())
		case c.Code == 503:
			o.Refused++
		default:
			o.Other++
		}
	}
	o.NoFinal += o.Calls - len(calls) // never sent: SIPp fell behind
	o.Goodput = float64(o.OK) / b.o.overloadFor.Seconds()
	o.GoodputPct = 100 * o.Goodput / float64(maxCPS)
	o.P99AcceptedMs = p99ms(ok)

	rcalls, err := sippfiles.InviteTimings(filepath.Join(dir, "recovery", "shortmsg.csv"))
	if err != nil {
		return o, err
	}
	judgeFrom := min(recoverWithin, b.o.overloadRecovery/2)
	from := float64(dropped.Add(judgeFrom).UnixMicro()) / 1e6
	var rlat []time.Duration
	for _, c := range rcalls {
		if c.Sent < from {
			continue
		}
		o.RecoveryCalls++
		if c.Code != 200 {
			o.RecoveryFailed++
			continue
		}
		rlat = append(rlat, c.Wait())
	}
	o.RecoveryP99ms = p99ms(rlat)
	boundMs := float64(b.o.p99Bound) / float64(time.Millisecond)
	var why []string
	if o.RecoveryCalls == 0 {
		why = append(why, "no recovery call to judge")
	}
	if o.RecoveryFailed*1000 >= max(o.RecoveryCalls, 1) {
		why = append(why, fmt.Sprintf("%d of %d recovery calls failed", o.RecoveryFailed, o.RecoveryCalls))
	}
	if o.RecoveryP99ms > boundMs {
		why = append(why, fmt.Sprintf("recovery p99 %.1f ms > %.0f ms", o.RecoveryP99ms, boundMs))
	}
	o.Recovered = len(why) == 0
	o.Why = strings.Join(why, "; ")
	if !b.o.keep {
		os.RemoveAll(dir)
	}
	return o, nil
}

func (o overloadResult) String() string {
	rec := "recovered"
	if !o.Recovered {
		rec = "NOT recovered: " + o.Why
	}
	return fmt.Sprintf("%-8s overload %d cps for %s: %d calls, %d x 200, %d x 503, %d other, %d without final; goodput %.0f cps (%.0f%% of %d), p99 of answered %.1f ms; PSS %.0f -> %.0f MB; then %d cps: %s (%d judged, p99 %.1f ms)",
		o.System, o.Offered, o.For, o.Calls, o.OK, o.Refused, o.Other, o.NoFinal, o.Goodput, o.GoodputPct, o.MaxCPS, o.P99AcceptedMs,
		o.PSSBeforeMB, o.PSSAfterMB, o.RecoveryCPS, rec, o.RecoveryCalls, o.RecoveryP99ms)
}

// maxClean is the highest clean step of system in mode so far.
func (b *bench) maxClean(system, mode string) int {
	m := 0
	for _, s := range b.res.Steps {
		if s.System == system && s.Mode == mode && s.Clean {
			m = max(m, s.Target)
		}
	}
	return m
}
