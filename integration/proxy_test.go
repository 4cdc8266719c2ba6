package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stirgate/stirgate/integration/internal/sippfiles"
)

// direction says which realm a call enters and which peer answers it.
type direction int

const (
	// outbound: PBX (UAC) -> inside listener -> outside.next_hop (trunk UAS).
	outbound direction = iota
	// inbound: trunk (UAC) -> outside listener -> inside.next_hop (PBX UAS).
	inbound
)

func (d direction) String() string {
	if d == inbound {
		return "inbound"
	}
	return "outbound"
}

// realm is the realm the call arrives on (the one its metrics and log line
// are labelled with).
func (d direction) realm() string {
	if d == inbound {
		return "outside"
	}
	return "inside"
}

// other is the opposite direction.
func (d direction) other() direction {
	if d == inbound {
		return outbound
	}
	return inbound
}

// entry is the stirgate address the UAC sends to.
func (d direction) entry(c proxyConfig) string {
	if d == inbound {
		return c.OutsideAddr()
	}
	return c.InsideAddr()
}

// callee is the next hop port where the UAS listens.
func (d direction) callee(c proxyConfig) int {
	if d == inbound {
		return c.PBXPort
	}
	return c.TrunkPort
}

// withTransport sets the next hop transport of the callee side.
func (d direction) withTransport(c proxyConfig, transport string) proxyConfig {
	tr := "udp"
	if transport == "t1" {
		tr = "tcp"
	}
	if d == inbound {
		c.PBXTransport = tr
	} else {
		c.TrunkTransport = tr
	}
	return c
}

// TestCalls relays complete calls between two SIPp instances through
// stirgate and checks both ends, stirgate's metrics and its call log.
func TestCalls(t *testing.T) {
	requireSipp(t)
	// In-dialog requests stirgate must have relayed, "METHOD@side": entry is
	// the realm the INVITE arrived on, exit the other one.
	var (
		callerBye  = []string{"ACK@entry", "BYE@entry"}
		calleeBye  = []string{"ACK@entry", "BYE@exit"}
		cancelled  = []string{"CANCEL@entry"}
		noInDialog []string
	)
	tests := []struct {
		name       string
		dir        direction
		transport  string // u1 | t1, for both legs
		uac, uas   string
		calls      int
		rate       float64
		pauseMS    int      // pause before the BYE (caller's, or callee's in uas_bye)
		wantStatus string   // final status of the INVITE, as stirgate counts it
		relayed    []string // in-dialog requests that must have crossed stirgate
	}{
		{"outbound/udp/1000", outbound, "u1", "uac.xml", "uas.xml", 1000, 200, 100, "200", callerBye},
		{"outbound/tcp/1000", outbound, "t1", "uac.xml", "uas.xml", 1000, 200, 100, "200", callerBye},
		{"inbound/udp", inbound, "u1", "uac.xml", "uas.xml", 200, 100, 100, "200", callerBye},
		{"inbound/tcp", inbound, "t1", "uac.xml", "uas.xml", 100, 100, 100, "200", callerBye},
		{"cancel/outbound/udp", outbound, "u1", "uac_cancel.xml", "uas_cancel.xml", 20, 10, 0, "487", cancelled},
		{"cancel/outbound/tcp", outbound, "t1", "uac_cancel.xml", "uas_cancel.xml", 10, 10, 0, "487", cancelled},
		{"cancel/inbound/udp", inbound, "u1", "uac_cancel.xml", "uas_cancel.xml", 10, 10, 0, "487", cancelled},
		{"busy/outbound/udp", outbound, "u1", "uac_busy.xml", "uas_busy.xml", 20, 10, 0, "486", noInDialog},
		{"busy/outbound/tcp", outbound, "t1", "uac_busy.xml", "uas_busy.xml", 10, 10, 0, "486", noInDialog},
		{"busy/inbound/udp", inbound, "u1", "uac_busy.xml", "uas_busy.xml", 10, 10, 0, "486", noInDialog},
		{"callee-bye/outbound/udp", outbound, "u1", "uac_bye.xml", "uas_bye.xml", 20, 10, 200, "200", calleeBye},
		{"callee-bye/outbound/tcp", outbound, "t1", "uac_bye.xml", "uas_bye.xml", 10, 10, 200, "200", calleeBye},
		{"callee-bye/inbound/udp", inbound, "u1", "uac_bye.xml", "uas_bye.xml", 10, 10, 200, "200", calleeBye},
		{"big-invite/outbound/udp", outbound, "u1", "uac_big.xml", "uas_big.xml", 10, 10, 50, "200", callerBye},
		{"big-invite/outbound/tcp", outbound, "t1", "uac_big.xml", "uas_big.xml", 10, 10, 50, "200", callerBye},
		{"big-invite/inbound/udp", inbound, "u1", "uac_big.xml", "uas_big.xml", 5, 10, 50, "200", callerBye},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.dir.withTransport(newProxyConfig(t), tc.transport)
			p := startProxy(t, cfg)

			// Bound each sipp by the time its calls need, plus slack.
			bound := time.Duration(float64(tc.calls)/tc.rate*float64(time.Second)) +
				time.Duration(tc.pauseMS)*time.Millisecond + 30*time.Second
			uas := startSipp(t, sippRun{
				Name: "uas", Scenario: tc.uas, Port: tc.dir.callee(cfg), Transport: tc.transport,
				Calls: tc.calls, PauseMS: tc.pauseMS, Timeout: bound,
			})
			uac := runSipp(t, sippRun{
				Name: "uac", Scenario: tc.uac, Remote: tc.dir.entry(cfg), Transport: tc.transport,
				Calls: tc.calls, Rate: tc.rate, PauseMS: tc.pauseMS, Timeout: bound,
			})
			uac.require(t, tc.calls)
			uasRes := uas.Wait(t)
			uasRes.require(t, tc.calls)
			uasRes.requireNoStray(t)

			m := p.Metrics(t)
			checkInviteResponses(t, m, tc.dir.realm(), tc.wantStatus, tc.calls)
			checkGauge(t, m, "stirgate_calls_in_progress", map[string]string{"realm": tc.dir.realm()}, 0)
			checkGauge(t, m, "stirgate_dialogs_active", nil, 0)
			for _, r := range tc.relayed {
				method, side, _ := strings.Cut(r, "@")
				realm := tc.dir.realm()
				if side == "exit" {
					realm = tc.dir.other().realm()
				}
				checkRequests(t, m, method, realm, tc.calls)
			}
			checkCallLog(t, p, tc.dir.realm(), tc.wantStatus, tc.calls)
		})
	}
}

// TestRejectedNeverForwarded sends INVITEs stirgate must answer itself; a
// listener on the next hop proves none was forwarded.
func TestRejectedNeverForwarded(t *testing.T) {
	requireSipp(t)
	untrusted := []string{"127.0.0.2/32"} // sipp sends from 127.0.0.1
	tests := []struct {
		name       string
		dir        direction
		transport  string
		scenario   string
		configure  func(*proxyConfig)
		wantStatus string
	}{
		{"max-forwards-0/outbound/udp", outbound, "u1", "uac_maxfwd0.xml", nil, "483"},
		{"max-forwards-0/inbound/udp", inbound, "u1", "uac_maxfwd0.xml", nil, "483"},
		{"max-forwards-0/outbound/tcp", outbound, "t1", "uac_maxfwd0.xml", nil, "483"},
		{"untrusted/outbound/udp", outbound, "u1", "uac_403.xml", func(c *proxyConfig) { c.InsideTrusted = untrusted }, "403"},
		{"untrusted/inbound/udp", inbound, "u1", "uac_403.xml", func(c *proxyConfig) { c.OutsideTrusted = untrusted }, "403"},
		{"untrusted/outbound/tcp", outbound, "t1", "uac_403.xml", func(c *proxyConfig) { c.InsideTrusted = untrusted }, "403"},
	}
	const calls = 5
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.dir.withTransport(newProxyConfig(t), tc.transport)
			if tc.configure != nil {
				tc.configure(&cfg)
			}
			callee := startSink(t, tc.dir.callee(cfg))
			p := startProxy(t, cfg)

			uac := runSipp(t, sippRun{
				Name: "uac", Scenario: tc.scenario, Remote: tc.dir.entry(cfg), Transport: tc.transport,
				Calls: calls, Rate: 10, Timeout: 30 * time.Second,
			})
			uac.require(t, calls)
			if got := callee.Messages(); len(got) > 0 {
				t.Errorf("the next hop received %d messages, want none:\n%s", len(got), strings.Join(got, "\n----\n"))
			}
			m := p.Metrics(t)
			checkInviteResponses(t, m, tc.dir.realm(), tc.wantStatus, calls)
			checkCallLog(t, p, tc.dir.realm(), tc.wantStatus, calls)
		})
	}
}

// TestOptions checks that stirgate answers OPTIONS addressed to itself on
// every listener.
func TestOptions(t *testing.T) {
	requireSipp(t)
	cfg := newProxyConfig(t)
	callee := startSink(t, cfg.TrunkPort)
	pbx := startSink(t, cfg.PBXPort)
	startProxy(t, cfg)
	tests := []struct {
		name      string
		addr      string
		transport string
	}{
		{"inside/udp", cfg.InsideAddr(), "u1"},
		{"inside/tcp", cfg.InsideAddr(), "t1"},
		{"outside/udp", cfg.OutsideAddr(), "u1"},
		{"outside/tcp", cfg.OutsideAddr(), "t1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runSipp(t, sippRun{
				Name: "options", Scenario: "options.xml", Remote: tc.addr, Transport: tc.transport,
				Calls: 3, Rate: 10, Timeout: 20 * time.Second,
			})
			res.require(t, 3)
		})
	}
	for _, s := range []*sink{callee, pbx} {
		if got := s.Messages(); len(got) > 0 {
			t.Errorf("OPTIONS to stirgate was forwarded: a next hop received %d messages; first:\n%s", len(got), got[0])
		}
	}
}

// TestSIGTERMDrainsCalls sends SIGTERM while all calls are up: every call
// must still complete, a new INVITE must get 503, and stirgate must exit 0
// because the calls have ended (not because drain_timeout ran out).
func TestSIGTERMDrainsCalls(t *testing.T) {
	requireSipp(t)
	const (
		calls   = 60
		rate    = 100
		callLen = 3000 // ms between ACK and BYE
	)
	cfg := newProxyConfig(t)
	cfg.DrainTimeout = 30 * time.Second
	p := startProxy(t, cfg)

	uas := startSipp(t, sippRun{
		Name: "uas", Scenario: "uas.xml", Port: cfg.TrunkPort, Calls: calls, Timeout: 60 * time.Second,
	})
	uac := startSipp(t, sippRun{
		Name: "uac", Scenario: "uac.xml", Remote: cfg.InsideAddr(),
		Calls: calls, Rate: rate, PauseMS: callLen, Timeout: 60 * time.Second,
	})

	// SIGTERM once every call is up: all INVITEs answered, no BYE yet.
	// Polled, not slept. The bound: each caller hangs up callLen after its
	// ACK, so after callLen the calls are no longer all up.
	var up float64
	for i := 0; i < callLen/50 && up != calls; i++ {
		up, _ = p.Metrics(t).Sum("stirgate_dialogs_active", nil)
		if up != calls {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if up != calls {
		t.Fatalf("stirgate_dialogs_active = %v before SIGTERM, want all %d calls up", up, calls)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// While draining, a new INVITE gets 503 from stirgate itself.
	late := runSipp(t, sippRun{
		Name: "uac-late", Scenario: "uac_503.xml", Remote: cfg.InsideAddr(),
		Calls: 1, Rate: 1, Timeout: 10 * time.Second,
	})
	late.require(t, 1)

	uac.Wait(t).require(t, calls)
	uasRes := uas.Wait(t)
	uasRes.require(t, calls)
	if uasRes.Created != calls {
		t.Errorf("the callee saw %d calls, want %d: an INVITE sent while draining was forwarded", uasRes.Created, calls)
	}

	// drain_timeout is the most stirgate may wait; 10 s more to exit.
	code, exited := p.Wait(cfg.DrainTimeout + 10*time.Second)
	if !exited {
		t.Fatalf("stirgate still running %s after the calls ended", cfg.DrainTimeout+10*time.Second)
	}
	if code != 0 {
		t.Errorf("stirgate exit code %d after SIGTERM, want 0", code)
	}
	// The exit code is 0 either way: the log says whether the drain ended
	// with the calls or at its deadline.
	if log := p.Log(); !strings.Contains(log, " msg=drained") || strings.Contains(log, "drain deadline reached") {
		t.Errorf("stirgate did not finish draining when the calls ended:\n%s", tail(log, 10))
	}
	checkCallLog(t, p, "inside", "200", calls)
}

// checkInviteResponses asserts that stirgate counted at least want INVITE
// responses with status for the realm the INVITEs came in on.
func checkInviteResponses(t *testing.T, m metrics, realm, status string, want int) {
	t.Helper()
	const name = "stirgate_sip_responses_total"
	got, ok := m.Sum(name, map[string]string{"method": "INVITE", "realm": realm, "status": status})
	if !ok {
		t.Errorf("/metrics has no %s{method=INVITE,realm=%s,status=%s}; stirgate metrics: %v", name, realm, status, m.Names())
		return
	}
	if got < float64(want) {
		t.Errorf("%s{method=INVITE,realm=%s,status=%s} = %v, want >= %d", name, realm, status, got, want)
	}
}

// checkRequests asserts that stirgate received at least want requests of
// method on realm: in-dialog requests that went through it.
func checkRequests(t *testing.T, m metrics, method, realm string, want int) {
	t.Helper()
	const name = "stirgate_sip_requests_total"
	got, ok := m.Sum(name, map[string]string{"method": method, "realm": realm})
	if !ok || got < float64(want) {
		t.Errorf("%s{method=%s,realm=%s} = %v, want >= %d (one per call, relayed by stirgate)", name, method, realm, got, want)
	}
}

// checkGauge asserts a gauge's value (summed over the matching labels).
func checkGauge(t *testing.T, m metrics, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := m.Sum(name, labels)
	if !ok {
		t.Errorf("/metrics has no %s%v; stirgate metrics: %v", name, labels, m.Names())
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

var (
	logStatus = regexp.MustCompile(`(?:^| )status=(\d+)(?: |$)`)
	logRealm  = regexp.MustCompile(`(?:^| )realm=(\S+)`)
	logCallID = regexp.MustCompile(`(?:^| )call_id=(\S+)`)
)

// checkCallLog asserts one msg=call line per INVITE: want lines for the
// realm with the status, each with a distinct Call-ID, and the keys the
// operators rely on.
func checkCallLog(t *testing.T, p *proxy, realm, status string, want int) {
	t.Helper()
	lines := p.callLogLines()
	got := 0
	ids := map[string]int{}
	for _, l := range lines {
		for _, k := range []string{"call_id=", "realm=", "source=", "from=", "to=", "status=", "duration=", "stage="} {
			if !strings.Contains(l, " "+k) {
				t.Errorf("call log line lacks %s: %s", strings.TrimSuffix(k, "="), l)
				return
			}
		}
		r := logRealm.FindStringSubmatch(l)
		s := logStatus.FindStringSubmatch(l)
		if r == nil || s == nil || r[1] != realm || s[1] != status {
			continue
		}
		got++
		if id := logCallID.FindStringSubmatch(l); id != nil {
			ids[id[1]]++
		}
	}
	if got != want {
		t.Errorf("%d call log lines with realm=%s status=%s, want %d (of %d msg=call lines)%s",
			got, realm, status, want, len(lines), sampleLines(lines, 3))
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("call %s logged %d times, want once", id, n)
			break
		}
	}
}

func sampleLines(lines []string, n int) string {
	if len(lines) == 0 {
		return ""
	}
	if len(lines) > n {
		lines = lines[:n]
	}
	return "; first:\n" + strings.Join(lines, "\n")
}

// Guard against the table drifting from the scenario files.
func TestScenarioFilesExist(t *testing.T) {
	for _, f := range []string{
		"uac.xml", "uas.xml", "uac_cancel.xml", "uas_cancel.xml", "uac_busy.xml", "uas_busy.xml",
		"uac_bye.xml", "uas_bye.xml", "uac_maxfwd0.xml", "uac_403.xml", "uac_503.xml", "options.xml",
		"uac_big.xml", "uas_big.xml",
	} {
		scenario(t, f)
	}
}

// sanity for the helpers that parse stirgate's and sipp's output.
func TestParseMetrics(t *testing.T) {
	in := strings.Join([]string{
		`# HELP stirgate_sip_responses_total x`,
		`# TYPE stirgate_sip_responses_total counter`,
		`stirgate_sip_responses_total{method="INVITE",realm="inside",status="200"} 1000`,
		`stirgate_sip_responses_total{method="INVITE",realm="inside",status="180"} 990`,
		`stirgate_sip_responses_total{method="INVITE",realm="outside",status="200"} 7`,
		`stirgate_odd{v="a,b=\"c\""} 2.5e+00`,
		`stirgate_dialogs_active 0`,
	}, "\n")
	m, err := parseMetrics([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"stirgate_sip_responses_total", map[string]string{"realm": "inside", "status": "200"}, 1000},
		{"stirgate_sip_responses_total", map[string]string{"method": "INVITE", "realm": "inside"}, 1990},
		{"stirgate_sip_responses_total", nil, 1997},
		{"stirgate_odd", map[string]string{"v": `a,b="c"`}, 2.5},
		{"stirgate_dialogs_active", nil, 0},
	}
	for _, tc := range tests {
		got, ok := m.Sum(tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("Sum(%s, %v) = %v, %v; want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if _, ok := m.Sum("stirgate_missing", nil); ok {
		t.Errorf("Sum of a missing metric reported found")
	}
}

func TestReadSippStats(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "stat.csv")
	head := "StartTime;TotalCallCreated;SuccessfulCall(C);FailedCall(C);Retransmissions(C);"
	body := head + "\n2026-01-01\t00:00:00;1;0;0;0;\n2026-01-01\t00:00:01;1000;998;2;5;\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := sippfiles.ReadStats(p)
	if err != nil {
		t.Fatal(err)
	}
	for col, want := range map[string]int{"TotalCallCreated": 1000, "SuccessfulCall(C)": 998, "FailedCall(C)": 2, "Retransmissions(C)": 5} {
		if got := s.Int(col); got != want {
			t.Errorf("%s = %d, want %d", col, got, want)
		}
	}
}
