// Command bench measures stirgate side by side with Kamailio + secsipid, the
// established STIR/SHAKEN edge proxy, on this machine, in one run:
//
//	go run ./integration/bench            # full run, ~25 minutes
//	go run ./integration/bench -smoke     # one low rate per mode, ~1 minute (CI)
//	go run ./integration/bench -state-only  # policy state: memory vs Redis, ~1 minute
//	go run ./integration/bench -transport-only  # sign mode over UDP vs TLS, ~6 minutes
//
// It installs what it needs when run as root on Debian (sip-tester,
// kamailio, kamailio-secsipid-modules, kamailio-tls-modules, secsipidx,
// redis-server), builds stirgate, creates a test STI PKI and serves its
// certificate over HTTP on loopback, then:
//
//  1. ramps SIPp UAC -> SIPp UAS directly: the ceiling of the harness;
//  2. for each mode (plain, sign, verify) starts one stirgate and one
//     Kamailio and ramps the call rate, alternating the two systems at every
//     step so that both see the same machine state;
//  3. offers each system twice stirgate's max clean plain rate for
//     -overload-for, then half of it: what it served, how fast, whether it
//     recovered (overload.go);
//  4. holds -dialogs-cps calls/s for -dialogs-hold each on stirgate and
//     reads its memory per live dialog at the peak (dialogs.go);
//  5. compares the policy state backends (-state, default memory,redis):
//     stirgate with store-backed policy rules (rate per caller, bombing,
//     one-ring), each call from its own number, at -state-cps (1,000),
//     -state-rounds (3) rounds of one step each with its state in memory
//     and one with it in a redis-server the bench starts on loopback,
//     alternating; per backend the medians of p50/p99
//     INVITE->final, and for Redis its commands, round trips and CPU per
//     call and its memory per tracked caller (state.go, redis.go);
//  6. compares the transports (-transport, default udp,tls; transport.go):
//     stirgate in sign mode with the PBX's calls over UDP and over one
//     persistent mutual-TLS connection (the trunk reached the same way),
//     ramped side by side by the Go caller and callee of goload.go
//     (Debian's SIPp has no TLS), with Kamailio's tls module (one TCP
//     worker) on the TLS ramp as a reference, then the fresh mutual-TLS
//     handshakes per second stirgate sustains from 8 clients;
//  7. runs stirgate for -soak (default 5 minutes) at 1,000 calls/s with
//     signing on and reads its memory;
//  8. prints a table with the ratios stirgate/Kamailio and writes it all as
//     JSON (-out).
//
// A step is clean when fewer than 0.1% of its calls failed, the calls/s
// achieved are within 2% of the target and p99 INVITE->final is within
// -p99-bound (50 ms); in sign mode also when a sample of
// the Identity headers the callee received (call 1 and every 10th) carries
// the claims of the calls, each with its own origid, and secsipidx verifies
// up to 20 of them (signature, x5u chain to the bench root, iat). A
// system's maximum is its highest clean step. A system stops ramping after
// two unclean tries of one rate. Both proxies get the same number of
// workers (-workers: GOMAXPROCS for stirgate, children for Kamailio), the
// same key and certificate, and the same SIPp scenario files
// (integration/sipp; the sign-mode callee is uas_identity.xml here).
// Everything binds to 127.0.0.1 and every process is stopped by its PID.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	step          time.Duration
	rates         []int
	modes         []string
	soak          time.Duration
	soakCPS       int
	workers       int
	out           string
	keep          bool
	smoke         bool
	only          string        // "", "stirgate" or "kamailio": skip the other system (profiling)
	profile       string        // directory for stirgate CPU profiles, one per step ("": none)
	env           []string      // extra environment for stirgate (experiments: GOGC=...)
	records       string        // stirgate's records.backend: sqlite (as shipped) or none
	states        []string      // policy state backends to compare: memory, redis (none: skip)
	stateCPS      int           // their call rate
	stateOnly     bool          // only the state comparison: no ceiling, ramp or soak
	transports    []string      // the transport comparison's transports (none: skip)
	transportOnly bool          // only the transport comparison
	stateRounds   int           // rounds of the state comparison (each backend once per round)
	statePolicy   string        // policy file of the state comparison ("": statePolicy)
	redisNice     int           // nice value of the state comparison's redis-server
	stateTimeout  time.Duration // state.redis.timeout of stirgate (0: its default)
	p99Bound      time.Duration // a step is clean only with p99 INVITE->final at most this
	hold          time.Duration // time between the caller's ACK and BYE
	uacScenario   string        // the caller's scenario of plain and sign steps ("": integration/sipp/uac.xml)
	kamAlloc      string        // Kamailio's memory manager for shm and pkg: tlsf, fm, qm
	kamArgs       []string      // further Kamailio command-line arguments
	// overloadFor: each system is offered twice stirgate's max clean
	// plain rate this long, then half of it for overloadRecovery (0: skip).
	overloadFor, overloadRecovery time.Duration
	// dialogsCPS calls/s held dialogsHold each, for dialogsHold: that
	// many dialogs alive at once (0: skip).
	dialogsCPS  int
	dialogsHold time.Duration
}

var allModes = []string{"plain", "sign", "verify"}

func parseFlags() (options, error) {
	var o options
	var rates, modes string
	flag.DurationVar(&o.step, "step", 10*time.Second, "length of one rate step")
	flag.StringVar(&rates, "rates", "500,1000,1500,2000,2500,3000,3500,4000,4500,5000,6000,7000,8000", "call rates of the ramp, calls/s, ascending")
	flag.StringVar(&modes, "modes", strings.Join(allModes, ","), "modes to compare: plain, sign, verify")
	flag.DurationVar(&o.soak, "soak", 5*time.Minute, "stirgate memory run at -soak-cps with signing on (0: skip)")
	flag.IntVar(&o.soakCPS, "soak-cps", 1000, "call rate of the memory run")
	flag.IntVar(&o.workers, "workers", runtime.NumCPU(), "worker count of both proxies: stirgate GOMAXPROCS, Kamailio children")
	flag.StringVar(&o.out, "out", "bench-results.json", "where the JSON results go")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs, SIPp traces)")
	flag.BoolVar(&o.smoke, "smoke", false, "smoke test: one step of 2 s at 200 calls/s per mode and system, no soak")
	flag.StringVar(&o.only, "only", "", "run one system only: stirgate or kamailio (for profiling; no ratios)")
	flag.StringVar(&o.profile, "profile", "", "directory: fetch a CPU profile of stirgate during each of its steps (via the admin port and its token)")
	var env, states, transports string
	flag.StringVar(&transports, "transport", "udp,tls", "transport comparison, stirgate sign mode with the Go caller and callee: udp, tls, or none")
	flag.BoolVar(&o.transportOnly, "transport-only", false, "run the transport comparison only (no harness ceiling, modes, state or soak)")
	flag.StringVar(&states, "state", "memory,redis", "policy state backends to compare at -state-cps: memory, redis, or none")
	flag.IntVar(&o.stateCPS, "state-cps", referenceCPS, "call rate of the state comparison")
	flag.DurationVar(&o.stateTimeout, "state-timeout", 0, "state.redis.timeout of stirgate in the state comparison (0: stirgate's default; -smoke: 100ms, so that one slow round trip on a loaded CI machine does not fail the smoke run)")
	flag.BoolVar(&o.stateOnly, "state-only", false, "run the state comparison only (no harness ceiling, ramp or soak)")
	flag.IntVar(&o.stateRounds, "state-rounds", 3, "rounds of the state comparison: each backend runs one step per round, alternating, from a fresh process; the medians over the rounds are compared")
	flag.IntVar(&o.redisNice, "redis-nice", 0, "nice value of the state comparison's redis-server (e.g. -10: it runs first, as if on its own core; needs root)")
	flag.StringVar(&o.statePolicy, "state-policy", "", "policy file of the state comparison (default: the built-in one of rate, bombing and one-ring rules)")
	var kamArgs string
	flag.DurationVar(&o.p99Bound, "p99-bound", 50*time.Millisecond, "a step is clean only if its p99 INVITE->final is at most this (the maxima without it are reported too)")
	flag.DurationVar(&o.hold, "hold", 100*time.Millisecond, "how long each call is held between the caller's ACK and BYE (SIPp -d)")
	flag.StringVar(&o.uacScenario, "uac-scenario", "", "SIPp caller scenario of the plain and sign steps (default integration/sipp/uac.xml; it must take -d as its pause)")
	flag.StringVar(&o.kamAlloc, "kamailio-alloc", "tlsf", "Kamailio's memory manager for shared and private memory (-x, -X): tlsf (what performance-minded operators run), fm (Kamailio's default) or qm")
	flag.StringVar(&kamArgs, "kamailio-args", "", "further Kamailio command-line arguments, space-separated")
	flag.DurationVar(&o.overloadFor, "overload-for", 30*time.Second, "after the plain ramp, offer each system twice stirgate's max clean plain rate this long (0: skip), then half of that max for -overload-recovery")
	flag.DurationVar(&o.overloadRecovery, "overload-recovery", 10*time.Second, "length of the half-rate run after the overload; judged from 5 s in (or half of it, if shorter)")
	flag.IntVar(&o.dialogsCPS, "dialogs-cps", 500, "stirgate's many-dialogs run: calls/s, each held -dialogs-hold, for -dialogs-hold (500 x 120 s = 60,000 dialogs at once)")
	flag.DurationVar(&o.dialogsHold, "dialogs-hold", 120*time.Second, "hold time of the many-dialogs run (0: skip it)")
	flag.StringVar(&o.records, "records", "sqlite", "stirgate's call-record database: sqlite (the default as shipped: every call is written) or none (Kamailio writes no records either)")
	flag.StringVar(&env, "stirgate-env", "", "extra environment for stirgate, comma-separated (e.g. GOGC=200,GOMEMLIMIT=200MiB)")
	flag.Parse()
	if env != "" {
		o.env = strings.Split(env, ",")
	}
	o.kamArgs = strings.Fields(kamArgs)
	switch o.kamAlloc {
	case "tlsf", "fm", "qm":
	default:
		return o, fmt.Errorf("-kamailio-alloc %q: want tlsf, fm or qm", o.kamAlloc)
	}
	if o.overloadFor < 0 || o.overloadRecovery < 2*time.Second {
		return o, fmt.Errorf("-overload-for %v, -overload-recovery %v: want >= 0 and >= 2s", o.overloadFor, o.overloadRecovery)
	}
	if o.dialogsHold != 0 && (o.dialogsHold < 2*time.Second || o.dialogsCPS < 1) {
		return o, fmt.Errorf("-dialogs-hold %v, -dialogs-cps %d: want 0 (skip) or >= 2s, and >= 1 call/s", o.dialogsHold, o.dialogsCPS)
	}
	if o.p99Bound <= 0 {
		return o, fmt.Errorf("-p99-bound %v: want a positive duration", o.p99Bound)
	}
	if o.hold < 0 || o.hold > 10*time.Minute {
		return o, fmt.Errorf("-hold %v: want 0..10m", o.hold)
	}
	if o.uacScenario != "" {
		abs, err := filepath.Abs(o.uacScenario)
		if err != nil {
			return o, err
		}
		if _, err := os.Stat(abs); err != nil {
			return o, fmt.Errorf("-uac-scenario: %w", err)
		}
		o.uacScenario = abs
	}
	if o.smoke {
		o.step, rates, o.soak, o.stateCPS, o.stateRounds = 2*time.Second, "200", 0, 200, 1
		o.overloadFor, o.overloadRecovery = 2*time.Second, 4*time.Second
		o.dialogsCPS, o.dialogsHold = 200, 3*time.Second
		if o.stateTimeout == 0 {
			o.stateTimeout = 100 * time.Millisecond
		}
	}
	if states != "none" {
		for _, s := range strings.Split(states, ",") {
			s = strings.TrimSpace(s)
			if s != "memory" && s != "redis" {
				return o, fmt.Errorf("-state: %q: want memory, redis or none", s)
			}
			if !slices.Contains(o.states, s) {
				o.states = append(o.states, s)
			}
		}
	}
	if transports != "none" {
		for _, t := range strings.Split(transports, ",") {
			t = strings.TrimSpace(t)
			if !slices.Contains(allTransports, t) {
				return o, fmt.Errorf("-transport: %q: want udp, tls or none", t)
			}
			if !slices.Contains(o.transports, t) {
				o.transports = append(o.transports, t)
			}
		}
	}
	if o.transportOnly && (len(o.transports) == 0 || o.stateOnly) {
		return o, fmt.Errorf("-transport-only: wants -transport udp,tls (or one) and no -state-only")
	}
	if o.stateOnly && len(o.states) == 0 {
		return o, fmt.Errorf("-state-only with -state none: nothing to run")
	}
	if o.stateRounds < 1 || o.stateRounds > 20 {
		return o, fmt.Errorf("-state-rounds %d: want 1..20", o.stateRounds)
	}
	if o.stateCPS < 1 || o.stateCPS > 20000 {
		return o, fmt.Errorf("-state-cps %d: want 1..20000", o.stateCPS)
	}
	for _, f := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return o, fmt.Errorf("-rates: %q is not a positive integer", f)
		}
		if len(o.rates) > 0 && n <= o.rates[len(o.rates)-1] {
			return o, fmt.Errorf("-rates: %d after %d: rates must ascend", n, o.rates[len(o.rates)-1])
		}
		o.rates = append(o.rates, n)
	}
	for _, m := range strings.Split(modes, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(allModes, m) {
			return o, fmt.Errorf("-modes: %q: want plain, sign or verify", m)
		}
		o.modes = append(o.modes, m)
	}
	if o.step < time.Second || o.step > 5*time.Minute {
		return o, fmt.Errorf("-step %v: want 1s..5m", o.step)
	}
	if o.workers < 1 || o.workers > 64 {
		return o, fmt.Errorf("-workers %d: want 1..64", o.workers)
	}
	if o.only != "" && o.only != "stirgate" && o.only != "kamailio" {
		return o, fmt.Errorf("-only %q: want stirgate or kamailio", o.only)
	}
	return o, nil
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	o, err := parseFlags()
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, o options) error {
	if err := ensureTools(); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "stirgate-bench-")
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	if o.keep {
		log.Printf("work directory (kept): %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	if o.records != "sqlite" && o.records != "none" {
		return fmt.Errorf("-records %q: want sqlite or none", o.records)
	}
	env, err := setup(ctx, work)
	if err != nil {
		return err
	}
	env.records = o.records
	defer env.close()

	res := &results{Machine: describeMachine(), Options: o.public(), Started: time.Now().UTC()}
	b := &bench{env: env, o: o, res: res}
	if err := b.runAll(ctx); err != nil {
		return err
	}
	res.Finished = time.Now().UTC()
	res.summarize()
	fmt.Println(res.table())
	if err := res.writeJSON(o.out); err != nil {
		return err
	}
	log.Printf("results written to %s", o.out)
	if o.smoke {
		return res.smokeCheck()
	}
	return nil
}

// moduleRoot is the directory of stirgate's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the current directory: run the bench from the stirgate checkout")
		}
		dir = parent
	}
}
