package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/stirgate/stirgate/integration/internal/sippfiles"
)

// dialogSoak is stirgate holding many dialogs at once: plain calls at
// Rate, each held Hold, for as long as one hold, so that at the end of the
// sending all of them are alive together (500 calls/s x 120 s = 60,000).
// Memory is read at that peak; CPU per call over the whole run is compared
// with short calls at the same rate.
type dialogSoak struct {
	Rate  int    `json:"target_cps"`
	Hold  string `json:"hold"`
	Calls int    `json:"calls"`
	OK    int    `json:"answered_200"`
	// Dialogs is stirgate_dialogs_active at the peak.
	Dialogs   float64 `json:"dialogs_at_peak"`
	RSSIdleMB float64 `json:"rss_idle_mb"`
	RSSPeakMB float64 `json:"rss_peak_mb"`
	PSSPeakMB float64 `json:"pss_peak_mb"`
	// BytesPerDialog is (RSS at the peak - RSS idle) / Dialogs.
	BytesPerDialog float64 `json:"bytes_per_dialog"`
	CPUus          float64 `json:"cpu_us_per_call"`
	ShortCPUus     float64 `json:"cpu_us_per_call_short_calls"`
	Why            string  `json:"why,omitempty"`
}

// dialogsRun measures dialogSoak on a fresh stirgate (plain mode), after a
// step of short calls at the same rate on another fresh one.
func (b *bench) dialogsRun(ctx context.Context) error {
	d := &dialogSoak{Rate: b.o.dialogsCPS, Hold: b.o.dialogsHold.String()}
	b.res.Dialogs = d
	log.Printf("dialogs: %d calls/s held %v, for %v", d.Rate, b.o.dialogsHold, b.o.dialogsHold)
	p, err := b.startSystem(ctx, "stirgate", "plain", 0)
	if err != nil {
		return err
	}
	short, err := b.step(ctx, p, "plain", d.Rate, 10*time.Second, 1)
	p.stop()
	if err != nil {
		return err
	}
	log.Printf("  short calls: %s", short)
	d.ShortCPUus = short.CPUus

	if p, err = b.startSystem(ctx, "stirgate", "plain", 0); err != nil {
		return err
	}
	defer p.stop()
	d.Calls = d.Rate * int(b.o.dialogsHold/time.Second)
	b.seq++
	dir := filepath.Join(b.env.work, "steps", fmt.Sprintf("%03d-stirgate-dialogs-%d", b.seq, d.Rate))
	bound := 2*b.o.dialogsHold + 60*time.Second
	uas, err := startSipp(ctx, sippRun{dir: filepath.Join(dir, "uas"), scenario: b.env.scenario("uas.xml"), port: p.nextHop, calls: d.Calls, timeout: bound})
	if err != nil {
		return err
	}
	defer uas.stop()
	if err := uas.waitBound(10 * time.Second); err != nil {
		return err
	}
	pids := p.pids()
	d.RSSIdleMB = readMemory(pids).RSSMB
	cpu0, err := cpuTime(pids)
	if err != nil {
		return err
	}
	port, err := freeUDPPort()
	if err != nil {
		return err
	}
	uac, err := startSipp(ctx, sippRun{dir: filepath.Join(dir, "uac"), scenario: b.env.scenario("uac.xml"), port: port, remote: p.addr, calls: d.Calls, rate: d.Rate, hold: b.o.dialogsHold, timeout: bound})
	if err != nil {
		return err
	}
	defer uac.stop()
	// The peak: the last call is being set up, the first is about to end.
	select {
	case <-time.After(b.o.dialogsHold - 500*time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	peak := readMemory(pids)
	d.RSSPeakMB, d.PSSPeakMB = peak.RSSMB, peak.PSSMB
	m, err := scrapeMetrics(p)
	if err != nil {
		return fmt.Errorf("many dialogs at the peak: %w", err)
	}
	d.Dialogs = m["stirgate_dialogs_active"]
	ur := uac.wait()
	cpu1, err := cpuTime(pids)
	if err != nil {
		return err
	}
	d.OK = ur.successful
	d.CPUus = float64((cpu1-cpu0)/time.Microsecond) / float64(d.Calls)
	if d.Dialogs > 0 {
		d.BytesPerDialog = (d.RSSPeakMB - d.RSSIdleMB) * (1 << 20) / d.Dialogs
	}
	if d.OK < d.Calls {
		d.Why = fmt.Sprintf("%d of %d calls failed", d.Calls-d.OK, d.Calls)
		if e := firstLines(sippfiles.ReadFile(filepath.Join(dir, "uac", "errors.log")), 3); e != "" {
			d.Why += ": " + e
		}
	}
	log.Printf("  %s", d)
	if !b.o.keep {
		os.RemoveAll(dir)
	}
	return nil
}

func (d *dialogSoak) String() string {
	s := fmt.Sprintf("%d calls/s held %s: %d/%d answered, %.0f dialogs at the peak, RSS %.0f -> %.0f MB (PSS %.0f MB), %.0f bytes per dialog, CPU %.0f µs/call (short calls %.0f)",
		d.Rate, d.Hold, d.OK, d.Calls, d.Dialogs, d.RSSIdleMB, d.RSSPeakMB, d.PSSPeakMB, d.BytesPerDialog, d.CPUus, d.ShortCPUus)
	if d.Why != "" {
		s += "; " + d.Why
	}
	return s
}
