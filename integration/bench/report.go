package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// results is everything one run measured; it is written as JSON.
type results struct {
	Machine  machine          `json:"machine"`
	Options  publicOptions    `json:"options"`
	Started  time.Time        `json:"started"`
	Finished time.Time        `json:"finished"`
	Steps    []step           `json:"steps"`
	Soak     *soak            `json:"soak,omitempty"`
	State    *stateCompare    `json:"state,omitempty"`
	Overload []overloadResult `json:"overload,omitempty"`
	Dialogs  *dialogSoak      `json:"dialogs,omitempty"`
	// Handshakes: fresh mutual-TLS handshakes stirgate sustained
	// (transport comparison).
	Handshakes *handshakeRate `json:"tls_handshakes,omitempty"`

	// Summary, filled by summarize.
	Ceiling int                       `json:"harness_ceiling_cps"`
	Max     map[string]map[string]int `json:"max_clean_cps"` // mode -> system -> calls/s, p99 within the bound
	// MaxCarried is the same without the latency bound (the "max clean"
	// of runs before the bound existed).
	MaxCarried map[string]map[string]int `json:"max_clean_cps_without_latency_bound"`
	// RampLimited lists "system/mode" whose highest rate was still clean:
	// their maximum is at least that, the ramp did not go higher.
	RampLimited  []string                   `json:"ramp_limited,omitempty"`
	Ratio        map[string]float64         `json:"ratio_stirgate_to_kamailio"` // mode -> max ratio
	At           map[string]map[string]step `json:"at_reference_rate"`          // mode -> system -> first clean step at ReferenceCPS
	ReferenceCPS int                        `json:"reference_cps"`
	Targets      []target                   `json:"targets"`
}

type publicOptions struct {
	Step          string   `json:"step"`
	Rates         []int    `json:"rates"`
	Modes         []string `json:"modes"`
	Soak          string   `json:"soak"`
	SoakCPS       int      `json:"soak_cps"`
	Workers       int      `json:"workers"`
	Smoke         bool     `json:"smoke"`
	States        []string `json:"states"`
	StateCPS      int      `json:"state_cps"`
	StateOnly     bool     `json:"state_only"`
	StateTimeout  string   `json:"state_timeout,omitempty"`
	Transports    []string `json:"transports,omitempty"`
	TransportOnly bool     `json:"transport_only,omitempty"`
	P99Bound      string   `json:"p99_bound"`
	Hold          string   `json:"hold"`
	UACScenario   string   `json:"uac_scenario,omitempty"`
	KamAlloc      string   `json:"kamailio_alloc"`
	KamArgs       []string `json:"kamailio_args,omitempty"`
	Command       string   `json:"command"`
}

func (o options) public() publicOptions {
	return publicOptions{Step: o.step.String(), Rates: o.rates, Modes: o.modes, Soak: o.soak.String(), SoakCPS: o.soakCPS,
		Workers: o.workers, Smoke: o.smoke, States: o.states, StateCPS: o.stateCPS, StateOnly: o.stateOnly, StateTimeout: durationOrDefault(o.stateTimeout),
		Transports: o.transports, TransportOnly: o.transportOnly,
		P99Bound: o.p99Bound.String(), Hold: o.hold.String(), UACScenario: o.uacScenario, KamAlloc: o.kamAlloc, KamArgs: o.kamArgs,
		Command: strings.Join(os.Args, " ")}
}

// target is one goal of issue 6 and whether this run met it.
type target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

const referenceCPS = 1000

func (r *results) summarize() {
	r.Max = map[string]map[string]int{}
	r.MaxCarried = map[string]map[string]int{}
	r.At = map[string]map[string]step{}
	r.Ratio = map[string]float64{}
	r.ReferenceCPS = referenceCPS
	highest := map[string]int{}
	for _, s := range r.Steps {
		key := s.System + "/" + s.Mode
		highest[key] = max(highest[key], s.Target)
		if s.Carried && s.System != "direct" {
			if r.MaxCarried[s.Mode] == nil {
				r.MaxCarried[s.Mode] = map[string]int{}
			}
			r.MaxCarried[s.Mode][s.System] = max(r.MaxCarried[s.Mode][s.System], s.Target)
		}
		if !s.Clean {
			continue
		}
		if s.System == "direct" {
			r.Ceiling = max(r.Ceiling, s.Target)
			continue
		}
		if r.Max[s.Mode] == nil {
			r.Max[s.Mode] = map[string]int{}
			r.At[s.Mode] = map[string]step{}
		}
		r.Max[s.Mode][s.System] = max(r.Max[s.Mode][s.System], s.Target)
		if _, ok := r.At[s.Mode][s.System]; !ok && s.Target == referenceCPS {
			r.At[s.Mode][s.System] = s
		}
	}
	for _, s := range r.Steps {
		key := s.System + "/" + s.Mode
		if s.Clean && s.Target == highest[key] && s.Target == r.Options.Rates[len(r.Options.Rates)-1] && !slices.Contains(r.RampLimited, key) {
			r.RampLimited = append(r.RampLimited, key)
		}
	}
	for mode, m := range r.Max {
		if m["kamailio"] > 0 {
			r.Ratio[mode] = float64(m["stirgate"]) / float64(m["kamailio"])
		}
	}
	for _, mode := range r.Options.Modes {
		if ratio, ok := r.Ratio[mode]; ok {
			r.Targets = append(r.Targets, target{
				Name: fmt.Sprintf("max clean calls/s (p99 <= %s), %s, stirgate/Kamailio", r.Options.P99Bound, mode),
				Want: ">= 1.5", Got: fmt.Sprintf("%.2f (%d / %d)", ratio, r.Max[mode]["stirgate"], r.Max[mode]["kamailio"]),
				Met: ratio >= 1.5,
			})
		}
		sg, ok1 := r.At[mode]["stirgate"]
		km, ok2 := r.At[mode]["kamailio"]
		if ok1 && ok2 && km.CPUus > 0 {
			ratio := sg.CPUus / km.CPUus
			r.Targets = append(r.Targets, target{
				Name: fmt.Sprintf("CPU per call at %d calls/s, %s, stirgate/Kamailio", referenceCPS, mode),
				Want: "<= 0.7", Got: fmt.Sprintf("%.2f (%.0f / %.0f µs)", ratio, sg.CPUus, km.CPUus), Met: ratio <= 0.7,
			})
		}
		if ok1 {
			r.Targets = append(r.Targets, target{
				Name: fmt.Sprintf("p99 INVITE->final through stirgate at %d calls/s, %s", referenceCPS, mode),
				Want: "<= 5 ms", Got: fmt.Sprintf("%.2f ms", sg.P99ms), Met: sg.P99ms <= 5,
			})
		}
	}
	for _, o := range r.Overload {
		if o.System != "stirgate" {
			continue
		}
		r.Targets = append(r.Targets,
			target{Name: fmt.Sprintf("overload %d cps for %s: p99 INVITE->200 of the answered calls", o.Offered, o.For), Want: "<= 100 ms", Got: fmt.Sprintf("%.1f ms", o.P99AcceptedMs), Met: o.P99AcceptedMs <= 100 && o.OK > 0},
			target{Name: fmt.Sprintf("overload %d cps for %s: goodput, of the max clean %d", o.Offered, o.For, o.MaxCPS), Want: ">= 90%", Got: fmt.Sprintf("%.0f%% (%.0f cps)", o.GoodputPct, o.Goodput), Met: o.GoodputPct >= 90},
			target{Name: fmt.Sprintf("clean again within %s at %d cps after the overload", recoverWithin, o.RecoveryCPS), Want: "clean", Got: recoveredWord(o), Met: o.Recovered})
	}
	if d := r.Dialogs; d != nil {
		r.Targets = append(r.Targets,
			target{Name: fmt.Sprintf("memory per live dialog beyond the idle process, %.0f dialogs", d.Dialogs), Want: "<= 2 KB", Got: fmt.Sprintf("%.0f B", d.BytesPerDialog), Met: d.Dialogs > 0 && d.BytesPerDialog <= 2048},
			target{Name: fmt.Sprintf("CPU per call with %s holds vs short calls, %d calls/s", d.Hold, d.Rate), Want: "no worse", Got: fmt.Sprintf("%.0f vs %.0f µs", d.CPUus, d.ShortCPUus), Met: d.CPUus <= d.ShortCPUus})
	}
	if r.Soak != nil {
		r.Targets = append(r.Targets, target{
			Name: fmt.Sprintf("stirgate RSS after %s at %d calls/s (sign)", r.Soak.Duration, r.Soak.Rate),
			Want: "<= 200 MB", Got: fmt.Sprintf("%.0f MB", r.Soak.Step.Mem.RSSMB), Met: r.Soak.Step.Mem.RSSMB <= 200 && r.Soak.Step.Clean,
		})
	}
	if peak, ok := peakPSS(r.Steps, "stirgate", peakPSSCPS); ok {
		r.Targets = append(r.Targets, target{
			Name: fmt.Sprintf("stirgate peak PSS at %d calls/s, any mode", peakPSSCPS),
			Want: "<= 400 MB", Got: fmt.Sprintf("%.0f MB", peak), Met: peak <= 400,
		})
	}
}

// table is the human summary.
func (r *results) table() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "\nstirgate vs Kamailio + secsipid, %s .. %s\n", r.Started.Format(time.RFC3339), r.Finished.Format(time.RFC3339))
	fmt.Fprintf(&b, "machine: %s, %d cores, %d MB, Linux %s; %s; %s; libsecsipid %s; %s; %s\n", m.CPU, m.Cores, m.MemoryMB, m.Kernel, m.Go, m.Kamailio, m.Secsipid, m.SIPp, m.Redis)
	fmt.Fprintf(&b, "workers: %d (stirgate GOMAXPROCS, Kamailio children); steps of %s; calls held %s; Kamailio memory manager %s %s\n", r.Options.Workers, r.Options.Step, r.Options.Hold, r.Options.KamAlloc, strings.Join(r.Options.KamArgs, " "))
	fmt.Fprintf(&b, "clean = < 0.1%% failed, >= 98%% of the target rate and p99 INVITE->final <= %s (max without the bound in brackets)\n", r.Options.P99Bound)
	fmt.Fprintf(&b, "command: %s\n\n", r.Options.Command)
	if r.Ceiling > 0 || slices.ContainsFunc(r.Steps, func(s step) bool { return s.System == "direct" }) {
		fmt.Fprintf(&b, "harness ceiling (SIPp -> SIPp): %s calls/s\n\n", r.maxString("direct", "plain", r.Ceiling))
	}
	if r.Options.StateOnly {
		if r.State != nil {
			b.WriteString(r.State.table())
		}
		return b.String()
	}
	if r.Options.TransportOnly {
		b.WriteString(r.transportTable())
		r.stepsTable(&b)
		return b.String()
	}
	fmt.Fprintf(&b, "%-7s | %-16s | %-16s | %-6s | %-26s | %-26s\n", "mode", "stirgate max cps", "kamailio max cps", "ratio",
		fmt.Sprintf("CPU µs/call @%d s / k", referenceCPS), fmt.Sprintf("p50/p99 ms @%d s | k", referenceCPS))
	fmt.Fprintf(&b, "%s\n", strings.Repeat("-", 112))
	for _, mode := range r.Options.Modes {
		sg, km := r.At[mode]["stirgate"], r.At[mode]["kamailio"]
		ratio := "n/a"
		if v, ok := r.Ratio[mode]; ok {
			ratio = fmt.Sprintf("%.2f", v)
		}
		cpu := fmt.Sprintf("%s / %s", usOrNA(sg), usOrNA(km))
		if sg.CPUus > 0 && km.CPUus > 0 {
			cpu += fmt.Sprintf(" (%.2f)", sg.CPUus/km.CPUus)
		}
		lat := fmt.Sprintf("%s | %s", latOrNA(sg), latOrNA(km))
		fmt.Fprintf(&b, "%-7s | %-16s | %-16s | %-6s | %-26s | %-26s\n", mode,
			r.maxString("stirgate", mode, r.Max[mode]["stirgate"])+fmt.Sprintf(" (%d)", r.MaxCarried[mode]["stirgate"]),
			r.maxString("kamailio", mode, r.Max[mode]["kamailio"])+fmt.Sprintf(" (%d)", r.MaxCarried[mode]["kamailio"]), ratio, cpu, lat)
	}
	if r.Soak != nil {
		s := r.Soak
		fmt.Fprintf(&b, "\nsoak: stirgate sign mode, %d calls/s for %s: %s; RSS %.0f MB, PSS %.0f MB, Go heap in use %.0f MB, %d goroutines\n",
			s.Rate, s.Duration, cleanWord(s.Step), s.Step.Mem.RSSMB, s.Step.Mem.PSSMB, s.HeapInUse, s.Goroutines)
	}
	if len(r.Overload) > 0 {
		fmt.Fprintf(&b, "\noverload (plain, twice stirgate's max clean rate, then half of it):\n")
		for _, o := range r.Overload {
			fmt.Fprintf(&b, "  %s\n", o)
		}
	}
	if r.Dialogs != nil {
		fmt.Fprintf(&b, "\nmany dialogs (stirgate, plain): %s\n", r.Dialogs)
	}
	if r.State != nil {
		b.WriteString(r.State.table())
	}
	b.WriteString(r.transportTable())
	if len(r.Targets) > 0 {
		fmt.Fprintf(&b, "\ntargets:\n")
		for _, t := range r.Targets {
			mark := "MET    "
			if !t.Met {
				mark = "NOT MET"
			}
			fmt.Fprintf(&b, "  %s %-62s want %-9s got %s\n", mark, t.Name, t.Want, t.Got)
		}
	}
	r.stepsTable(&b)
	return b.String()
}

func (r *results) stepsTable(b *strings.Builder) {
	fmt.Fprintf(b, "\nsteps (memory: PSS summed over the proxy's processes, so Kamailio's shared memory counts once; RSS in the JSON):\n")
	fmt.Fprintf(b, "%-8s %-8s %6s %3s %9s %8s %7s %8s %8s %8s %9s %8s  %s\n", "system", "mode", "target", "try", "achieved", "failed%", "retrans", "p50 ms", "p99 ms", "µs/call", "PSS MB", "drops", "clean")
	for _, s := range r.Steps {
		fmt.Fprintf(b, "%-8s %-8s %6d %3d %9.1f %8.3f %7d %8.2f %8.2f %8.0f %9.0f %8d  %s\n", s.System, s.Mode, s.Target, s.Try, s.Achieved, s.FailedPct, s.Retrans, s.P50ms, s.P99ms, s.CPUus, s.Mem.PSSMB, s.UDPDrops, cleanWord(s))
	}
}

// transportTable is the transport comparison ("" without one).
func (r *results) transportTable() string {
	if len(r.Options.Transports) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\ntransport (sign mode; the Go caller over UDP, or one mutual-TLS connection per step; the trunk reached the same way):\n")
	for _, t := range r.Options.Transports {
		mode := "sign/" + t
		at := r.At[mode]["stirgate"]
		cpu := usOrNA(at)
		if at.Calls > 0 {
			cpu += fmt.Sprintf(" (the Go caller and callee %.0f)", at.GenCPUus)
		}
		fmt.Fprintf(&b, "  %-3s max clean %s calls/s (%d without the bound); at %d calls/s: CPU µs/call %s, p50/p99 %s ms\n", t,
			r.maxString("stirgate", mode, r.Max[mode]["stirgate"]), r.MaxCarried[mode]["stirgate"], referenceCPS, cpu, latOrNA(at))
	}
	if k, ok := r.At["sign/tls"]["kamailio"]; ok || r.Max["sign/tls"]["kamailio"] > 0 || slices.ContainsFunc(r.Steps, func(s step) bool { return s.System == "kamailio" && s.Mode == "sign/tls" }) {
		fmt.Fprintf(&b, "  Kamailio tls (one TCP worker) max clean %s calls/s (%d without the bound); at %d calls/s: CPU µs/call %s, p50/p99 %s ms\n",
			r.maxString("kamailio", "sign/tls", r.Max["sign/tls"]["kamailio"]), r.MaxCarried["sign/tls"]["kamailio"], referenceCPS, usOrNA(k), latOrNA(k))
	}
	if u, t := r.Max["sign/udp"]["stirgate"], r.Max["sign/tls"]["stirgate"]; u > 0 && t > 0 {
		fmt.Fprintf(&b, "  TLS / UDP max: %.2f\n", float64(t)/float64(u))
	}
	if h := r.Handshakes; h != nil {
		fmt.Fprintf(&b, "  fresh mutual-TLS handshakes (%d clients, %s): %.0f/s, %d failed, %.0f µs of stirgate CPU each, %s\n", h.Clients, h.For, h.PerSecond, h.Failed, h.CPUus, h.Version)
	}
	return b.String()
}

func (r *results) maxString(system, mode string, v int) string {
	if v == 0 {
		if slices.ContainsFunc(r.Steps, func(s step) bool { return s.System == system && s.Mode == mode }) {
			return "none clean"
		}
		return "n/a"
	}
	if slices.Contains(r.RampLimited, system+"/"+mode) {
		return ">= " + strconv.Itoa(v)
	}
	return strconv.Itoa(v)
}

func usOrNA(s step) string {
	if s.Calls == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", s.CPUus)
}

func latOrNA(s step) string {
	if s.Calls == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f/%.2f", s.P50ms, s.P99ms)
}

func cleanWord(s step) string {
	if s.Clean {
		return "clean"
	}
	return "NOT clean: " + s.Why
}

func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// smokeCheck fails the smoke run when a system could not carry its one low
// rate: the bench itself is broken then (config, scenario, tool).
func (r *results) smokeCheck() error {
	var bad []string
	for _, s := range r.Steps {
		if s.Try == 1 && !s.Clean && !slices.ContainsFunc(r.Steps, func(o step) bool { return o.System == s.System && o.Mode == s.Mode && o.Clean }) {
			bad = append(bad, fmt.Sprintf("%s/%s: %s", s.System, s.Mode, s.Why))
		}
	}
	if r.State != nil {
		bad = append(bad, r.State.check(r.Options.States)...)
	}
	if h := r.Handshakes; slices.Contains(r.Options.Transports, "tls") && (h == nil || h.Handshakes == 0 || h.Failed > 0) {
		bad = append(bad, fmt.Sprintf("TLS handshakes: %+v", h))
	}
	if d := r.Dialogs; d != nil && (d.OK != d.Calls || d.Dialogs == 0) {
		bad = append(bad, "many-dialogs run: "+d.String())
	}
	// The smoke overload is twice 200 calls/s: nothing is overloaded, so
	// any failure is the bench's.
	for _, o := range r.Overload {
		if !o.Recovered || o.OK == 0 || o.NoFinal > 0 {
			bad = append(bad, fmt.Sprintf("overload step of %s: %s", o.System, o))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("smoke run: not clean at %d calls/s: %s", r.Options.Rates[0], strings.Join(bad, "; "))
	}
	return nil
}

// goMemory reads stirgate's Go heap in use (MB) and goroutines from its
// /metrics.
func goMemory(p *proxy) (heapMB float64, goroutines int) {
	resp, err := http.Get(p.admin + "/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	for _, l := range strings.Split(string(body), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_memstats_heap_inuse_bytes":
			heapMB = v / (1 << 20)
		case "go_goroutines":
			goroutines = int(v)
		}
	}
	return heapMB, goroutines
}

func recoveredWord(o overloadResult) string {
	if o.Recovered {
		return fmt.Sprintf("clean (%d calls judged, p99 %.1f ms)", o.RecoveryCalls, o.RecoveryP99ms)
	}
	return "not clean: " + o.Why
}

// peakPSSCPS is the rate of the memory goal: peak PSS at 4,000
// calls/s at most 400 MB.
const peakPSSCPS = 4000

// peakPSS is the highest PSS of system's steps at rate cps (every mode and
// try); ok is false when no such step ran.
func peakPSS(steps []step, system string, cps int) (float64, bool) {
	peak, ok := 0.0, false
	for _, s := range steps {
		if s.System == system && s.Target == cps {
			peak, ok = max(peak, s.Mem.PSSMB), true
		}
	}
	return peak, ok
}
