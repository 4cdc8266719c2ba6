package integration

// The stirgate benchmark: not run by default.
//
//	STIRGATE_BENCH=1 go test ./integration/ -run TestBench -v -timeout 30m
//	STIRGATE_BENCH=1 STIRGATE_BENCH_SIGN=1 go test ./integration/ -run TestBench -v -timeout 30m  # signing on
//	STIRGATE_BENCH=1 STIRGATE_BENCH_VERIFY=1 go test ./integration/ -run TestBench -v -timeout 30m  # calls into the outside realm, verified
//
// It prints one table:
//   - max clean calls/s, SIPp UAC -> SIPp UAS directly (the ceiling of the
//     harness on this machine) and through stirgate (plain forwarding,
//     inside -> outside, UDP): the rate is stepped up until a step has a
//     failed call or a retransmission, or SIPp cannot keep the rate;
//   - stirgate CPU per call at 500 calls/s (utime+stime from /proc/PID/stat
//     before and after the run, divided by the calls);
//   - p50/p99 INVITE -> final response seen by the caller at 500 calls/s,
//     from SIPp's -trace_shortmsg (µs timestamps), direct and through
//     stirgate: the difference is what stirgate adds. SIPp's own loop adds
//     about 1 ms per scenario step on the callee, so the direct figures are
//     the floor, not zero;
//   - stirgate RSS after the run (VmRSS, and the peak VmHWM), with its Go
//     heap in use and goroutines; and the live heap once the SIP
//     transaction timers (32 s) have expired and a garbage collection has
//     run since (an idle Go process collects at least every 2 minutes, so
//     this waits up to 150 s): a live heap that stays large is a leak.
//
// UDP receive-buffer drops on the machine (/proc/net/snmp RcvbufErrors)
// are shown per step: retransmissions with drops mean a socket buffer
// overflowed (sipp's or stirgate's). Run it on an otherwise idle machine;
// the numbers are only comparable with the ceiling measured in the same run.
//
// Every sipp run is bounded by -m and -timeout; calls have no pause.
// STIRGATE_BENCH_STEP_SECONDS sets the length of one rate step (default 5),
// STIRGATE_BENCH_PAUSE_MS the pause between ACK and BYE (default 0: the
// caller sends them back to back, which also tests that stirgate keeps
// their order).

import (
	"bufio"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchRates are the steps of the max-rate search, in calls/s.
var benchRates = []int{200, 400, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000}

const benchCPURate = 500 // calls/s for the CPU, latency and RSS run

// benchPauseMS is the pause between ACK and BYE (STIRGATE_BENCH_PAUSE_MS).
var benchPauseMS = 0

// benchSippFlags let sipp itself go as fast as it can: bigger socket
// buffers, more messages and calls per event loop.
var benchSippFlags = []string{"-buff_size", "4194304", "-max_recv_loops", "10000", "-max_sched_loops", "10000"}

// benchStep is one rate step.
type benchStep struct {
	Target     int
	Achieved   float64 // successful calls / elapsed seconds
	Successful int
	Failed     int
	Retrans    int // caller + callee retransmissions
	UDPDrops   int // machine-wide UDP RcvbufErrors during the step
}

func (s benchStep) clean() bool {
	return s.Failed == 0 && s.Retrans == 0 && s.Achieved >= 0.9*float64(s.Target)
}

func (s benchStep) String() string {
	return fmt.Sprintf("%5d cps target: %7.1f achieved, %6d ok, %4d failed, %5d retrans, %5d UDP drops",
		s.Target, s.Achieved, s.Successful, s.Failed, s.Retrans, s.UDPDrops)
}

// benchSign (STIRGATE_BENCH_SIGN=1) turns signing on in the inside realm:
// every proxied INVITE is attested and signed.
var benchSign = os.Getenv("STIRGATE_BENCH_SIGN") == "1"

// benchVerify (STIRGATE_BENCH_VERIFY=1) sends the proxied calls into the
// outside realm with a fresh signed Identity each, and turns verification
// on: every proxied INVITE is verified (certificate cached after the first).
var benchVerify = os.Getenv("STIRGATE_BENCH_VERIFY") == "1"

// benchTarget is where the proxied calls enter and what the caller sends.
type benchTarget struct {
	remote     string // stirgate listener the caller sends to
	calleePort int    // where stirgate forwards
	// caller returns the UAC scenario and extra sipp arguments for n calls.
	caller func(t *testing.T, n int) (scenario string, extra []string)
}

func plainCaller(*testing.T, int) (string, []string) { return "uac.xml", nil }

// benchProxyConfig is the stirgate under test: info logging off (one line
// per call would measure the logger), signing as STIRGATE_BENCH_SIGN says,
// verification as STIRGATE_BENCH_VERIFY says.
func benchProxyConfig(t *testing.T) (proxyConfig, benchTarget) {
	cfg := newProxyConfig(t)
	cfg.LogLevel = "warn"
	target := benchTarget{caller: plainCaller}
	if benchSign {
		base := fmt.Sprintf("http://%s/certs/", hostPort(cfg.AdminPort))
		cfg.Extra = attestYAML(testPKI(t, base), base+"sp.pem")
	}
	target.remote, target.calleePort = cfg.InsideAddr(), cfg.TrunkPort
	if benchVerify {
		pki := testPKI(t, "http://127.0.0.1/")
		cs := startCertServer(t, pki)
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimSuffix(cs.Base, "/certs/"), "http://"))
		p, _ := strconv.Atoi(port)
		cfg.Extra += verifyYAML(filepath.Join(pki, "root.pem"), []int{p})
		x5u := cs.URL("sp.pem")
		signer := signerFor(t, pki, x5u)
		target.remote, target.calleePort = cfg.OutsideAddr(), cfg.PBXPort
		target.caller = func(t *testing.T, n int) (string, []string) {
			// One fresh JWS per call, signed just before the step.
			var b strings.Builder
			b.WriteString("SEQUENTIAL\n")
			now := time.Now()
			for i := 0; i < n; i++ {
				id, err := signer.Sign(passport("15551230001", now))
				if err != nil {
					t.Fatal(err)
				}
				jws, _, _ := strings.Cut(id, ";")
				b.WriteString(jws + "\n")
			}
			inf := filepath.Join(t.TempDir(), "identities.csv")
			if err := os.WriteFile(inf, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			return "uac_signed.xml", []string{"-inf", inf, "-key", "x5u", x5u}
		}
	}
	return cfg, target
}

func TestBench(t *testing.T) {
	if os.Getenv("STIRGATE_BENCH") != "1" {
		t.Skip("benchmark: set STIRGATE_BENCH=1 to run it")
	}
	requireSipp(t)
	stepSeconds := 5
	if v := os.Getenv("STIRGATE_BENCH_STEP_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 60 {
			t.Fatalf("STIRGATE_BENCH_STEP_SECONDS=%q: want 1..60", v)
		}
		stepSeconds = n
	}
	if v := os.Getenv("STIRGATE_BENCH_PAUSE_MS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 10000 {
			t.Fatalf("STIRGATE_BENCH_PAUSE_MS=%q: want 0..10000", v)
		}
		benchPauseMS = n
	}

	// 1. Harness ceiling: SIPp to SIPp.
	direct := stepRates(t, "direct", stepSeconds, benchTarget{caller: plainCaller})

	// 2. Through stirgate, one process for all steps.
	var proxied []benchStep
	t.Run("proxied", func(t *testing.T) {
		cfg, target := benchProxyConfig(t)
		startProxy(t, cfg)
		proxied = stepRates(t, "proxied", stepSeconds, target)
	})

	// 3. CPU, latency and RSS at 500 calls/s.
	calls := benchCPURate * 10
	var directLat, proxyLat latency
	t.Run("latency-direct", func(t *testing.T) {
		directLat = latencyRun(t, benchTarget{caller: plainCaller}, calls)
	})
	var cpuPerCall time.Duration
	var rss, hwm string
	var mem, memLater string
	t.Run("cpu-proxied", func(t *testing.T) {
		cfg, target := benchProxyConfig(t)
		p := startProxy(t, cfg)
		before, err := procCPU(p.PID())
		if err != nil {
			t.Fatal(err)
		}
		proxyLat = latencyRun(t, target, calls)
		after, err := procCPU(p.PID())
		if err != nil {
			t.Fatal(err)
		}
		cpuPerCall = (after - before) / time.Duration(calls)
		rss, hwm = procStatus(p.PID(), "VmRSS"), procStatus(p.PID(), "VmHWM")
		mem = goMemory(t, p)
		memLater = settledMemory(t, p, time.Now())
	})

	var b strings.Builder
	fmt.Fprintf(&b, "\nstirgate benchmark (%d s per rate step, UDP, %d ms between ACK and BYE, %d CPUs, signing %v, verification %v)\n", stepSeconds, benchPauseMS, runtime.NumCPU(), benchSign, benchVerify)
	fmt.Fprintf(&b, "%-44s %s\n", "max clean calls/s, SIPp -> SIPp (ceiling)", maxClean(direct))
	fmt.Fprintf(&b, "%-44s %s\n", "max clean calls/s, through stirgate", maxClean(proxied))
	fmt.Fprintf(&b, "%-44s %v\n", fmt.Sprintf("stirgate CPU per call at %d cps", benchCPURate), cpuPerCall)
	fmt.Fprintf(&b, "%-44s %s\n", fmt.Sprintf("INVITE->final p50/p99 direct at %d cps", benchCPURate), directLat)
	fmt.Fprintf(&b, "%-44s %s\n", fmt.Sprintf("INVITE->final p50/p99 stirgate at %d cps", benchCPURate), proxyLat)
	fmt.Fprintf(&b, "%-44s %s (peak %s), %s\n", "stirgate RSS after the run", rss, hwm, mem)
	fmt.Fprintf(&b, "%-44s %s\n", "stirgate memory once timers expired + GC", memLater)
	fmt.Fprintf(&b, "\nrate steps, direct:\n")
	for _, s := range direct {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	fmt.Fprintf(&b, "rate steps, through stirgate:\n")
	for _, s := range proxied {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	t.Log(b.String())
	fmt.Println(b.String())
}

// stepRates raises the rate until a step is not clean. remote is the
// address the UAC calls ("": the UAS directly), calleePort where the UAS
// listens (0: a fresh port per step).
func stepRates(t *testing.T, name string, seconds int, target benchTarget) []benchStep {
	var steps []benchStep
	for _, rate := range benchRates {
		var step benchStep
		ok := t.Run(fmt.Sprintf("%s/%d", name, rate), func(t *testing.T) {
			step = rateStep(t, target, rate, seconds)
		})
		steps = append(steps, step)
		t.Logf("%s: %s", name, step)
		if !ok || !step.clean() {
			break
		}
	}
	return steps
}

// rateStep runs rate*seconds calls at rate, UAC -> (remote or the UAS).
func rateStep(t *testing.T, target benchTarget, rate, seconds int) benchStep {
	calls := rate * seconds
	remote, calleePort := target.remote, target.calleePort
	scenario, extra := target.caller(t, calls)
	if calleePort == 0 {
		calleePort = freePort(t)
	}
	if remote == "" {
		remote = hostPort(calleePort)
	}
	bound := time.Duration(seconds)*time.Second + 30*time.Second
	uas := startSipp(t, sippRun{
		Name: "uas", Scenario: "uas.xml", Port: calleePort, Calls: calls, Timeout: bound, NoTrace: true,
		Extra: benchSippFlags,
	})
	drops := udpRcvbufErrors()
	start := time.Now()
	uac := runSipp(t, sippRun{
		Name: "uac", Scenario: scenario, Remote: remote, Calls: calls, Rate: float64(rate),
		Limit: rate * 10, PauseMS: benchPauseMS, Timeout: bound, NoTrace: true, Extra: append(append([]string{}, benchSippFlags...), extra...),
	})
	// The calls were placed over `seconds`; each then lasts the pause and
	// ~1.1 s of timewait, which are not load.
	elapsed := time.Since(start) - 1100*time.Millisecond - time.Duration(benchPauseMS)*time.Millisecond
	uasRes := uas.Wait(t)
	s := benchStep{
		Target:     rate,
		Successful: uac.Successful,
		Failed:     max(uac.Failed, 0) + max(uasRes.Failed, 0),
		Retrans:    max(uac.Retransmissions, 0) + max(uasRes.Retransmissions, 0),
		UDPDrops:   udpRcvbufErrors() - drops,
	}
	if elapsed > 0 {
		s.Achieved = float64(uac.Successful) / elapsed.Seconds()
	}
	if uac.ExitCode != 0 || uac.Err != nil {
		s.Failed = max(s.Failed, 1)
		t.Logf("uac exit %d (%s), err %v", uac.ExitCode, sippExitMeaning(uac.ExitCode), uac.Err)
	}
	if s.Failed > 0 {
		// Say why, briefly: the first unexpected messages on each side.
		for _, r := range []sippResult{uac, uasRes} {
			if e := firstLines(readFile(filepath.Join(r.Dir, "errors.log")), 12); e != "" {
				t.Logf("%s errors.log, first lines:\n%s", r.Name, e)
			}
		}
	}
	return s
}

// latency is INVITE -> final response as the caller saw it.
type latency struct {
	N        int
	P50, P99 time.Duration
}

func (l latency) String() string {
	if l.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%v / %v (%d calls)", l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.N)
}

// latencyRun places calls at benchCPURate with -trace_shortmsg and reads
// the INVITE -> final times. remote "" calls the UAS directly.
func latencyRun(t *testing.T, target benchTarget, calls int) latency {
	remote, calleePort := target.remote, target.calleePort
	scenario, extra := target.caller(t, calls)
	if calleePort == 0 {
		calleePort = freePort(t)
	}
	if remote == "" {
		remote = hostPort(calleePort)
	}
	bound := time.Duration(calls/benchCPURate)*time.Second + 30*time.Second
	uas := startSipp(t, sippRun{
		Name: "uas", Scenario: "uas.xml", Port: calleePort, Calls: calls, Timeout: bound, NoTrace: true,
		Extra: benchSippFlags,
	})
	uac := runSipp(t, sippRun{
		Name: "uac", Scenario: scenario, Remote: remote, Calls: calls, Rate: benchCPURate,
		PauseMS: benchPauseMS, Timeout: bound, NoTrace: true, ShortMsg: true, Extra: append(append([]string{}, benchSippFlags...), extra...),
	})
	uac.require(t, calls)
	uas.Wait(t).require(t, calls)
	l, err := inviteLatency(filepath.Join(uac.Dir, "shortmsg.csv"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// inviteLatency reads a -trace_shortmsg file: tab-separated date, time,
// epoch seconds, S|R, Call-ID, "CSeq:N METHOD", first line.
func inviteLatency(path string) (latency, error) {
	f, err := os.Open(path)
	if err != nil {
		return latency{}, fmt.Errorf("latency: %w", err)
	}
	defer f.Close()
	sent := map[string]float64{}
	var ds []time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) < 7 || !strings.HasSuffix(fs[5], " INVITE") {
			continue
		}
		ts, err := strconv.ParseFloat(fs[2], 64)
		if err != nil {
			continue
		}
		id, line := fs[4], fs[6]
		switch {
		case fs[3] == "S" && strings.HasPrefix(line, "INVITE "):
			if _, ok := sent[id]; !ok {
				sent[id] = ts
			}
		case fs[3] == "R" && strings.HasPrefix(line, "SIP/2.0 "):
			code, err := strconv.Atoi(strings.Fields(line)[1])
			if err != nil || code < 200 {
				continue
			}
			if t0, ok := sent[id]; ok {
				ds = append(ds, time.Duration((ts-t0)*float64(time.Second)))
				delete(sent, id)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return latency{}, fmt.Errorf("latency: %s: %w", path, err)
	}
	if len(ds) == 0 {
		return latency{}, fmt.Errorf("latency: %s: no INVITE with a final response", path)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return latency{N: len(ds), P50: percentile(ds, 0.50), P99: percentile(ds, 0.99)}, nil
}

// percentile of sorted ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func maxClean(steps []benchStep) string {
	best := 0
	for _, s := range steps {
		if !s.clean() {
			break
		}
		best = s.Target
	}
	if len(steps) > 0 && steps[len(steps)-1].clean() {
		return fmt.Sprintf(">= %d (highest step tried)", best)
	}
	if best == 0 {
		return "none clean"
	}
	return strconv.Itoa(best)
}

// procCPU returns utime+stime of a process from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu: /proc/%d/stat: no command name", pid)
	}
	fs := strings.Fields(s[i+1:])
	if len(fs) < 13 {
		return 0, fmt.Errorf("cpu: /proc/%d/stat: %d fields", pid, len(fs))
	}
	utime, err := strconv.ParseInt(fs[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cpu: utime: %w", err)
	}
	stime, err := strconv.ParseInt(fs[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cpu: stime: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / time.Duration(clockTicks()), nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times.
func clockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

// procStatus returns one field of /proc/PID/status, e.g. "VmRSS".
func procStatus(pid int, key string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "n/a"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "n/a"
}

// firstLines returns the first n lines of s.
func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// goMemory reports stirgate's Go heap in use and goroutines from /metrics.
func goMemory(t *testing.T, p *proxy) string {
	m := p.Metrics(t)
	heap, ok1 := m.Sum("go_memstats_heap_inuse_bytes", nil)
	objs, ok2 := m.Sum("go_memstats_heap_objects", nil)
	g, ok3 := m.Sum("go_goroutines", nil)
	if !ok1 || !ok2 || !ok3 {
		return "go heap n/a"
	}
	return fmt.Sprintf("Go heap in use %.1f MiB, %d objects, %d goroutines", heap/(1<<20), int(objs), int(g))
}

// settledMemory waits until 35 s after end (SIP timers expired) and a
// garbage collection after that, bounded by 150 s, then reports memory.
func settledMemory(t *testing.T, p *proxy, end time.Time) string {
	gcs := func() float64 {
		n, _ := p.Metrics(t).Sum("go_gc_duration_seconds_count", nil)
		return n
	}
	time.Sleep(35*time.Second - time.Since(end))
	base := gcs()
	for i := 0; i < 30 && gcs() == base; i++ {
		time.Sleep(5 * time.Second)
	}
	note := ""
	if gcs() == base {
		note = " (no GC seen within the bound: heap includes garbage)"
	}
	return fmt.Sprintf("after %v: RSS %s, %s%s", time.Since(end).Round(time.Second), procStatus(p.PID(), "VmRSS"), goMemory(t, p), note)
}

// udpRcvbufErrors is the machine-wide count of UDP datagrams dropped for a
// full receive buffer.
func udpRcvbufErrors() int {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var head []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "Udp: ") {
			continue
		}
		fs := strings.Fields(l)
		if head == nil {
			head = fs
			continue
		}
		for i, h := range head {
			if h == "RcvbufErrors" && i < len(fs) {
				n, _ := strconv.Atoi(fs[i])
				return n
			}
		}
	}
	return 0
}
