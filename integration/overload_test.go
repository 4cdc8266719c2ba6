package integration

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOverloadStallRefusesLateCallsOnly: stirgate is stopped (SIGSTOP) for
// 600 ms in the middle of a SIPp run, as a VM pause or a long stall would:
// the INVITEs of that time queue up in its socket. When it runs again, the
// overload control refuses the late ones with 503 + a jittered
// Retry-After (from the socket reader, or at the start of their pipeline),
// each with its call record, and serves the rest; the emergency caller
// (911, calling through the whole stall) is never refused; every INVITE
// gets a final response; and calls made a second after the stall all go
// through again.
func TestOverloadStallRefusesLateCallsOnly(t *testing.T) {
	requireSipp(t)
	cfg := newProxyConfig(t)
	cfg.DrainTimeout = 2 * time.Second
	cfg.SIPExtra = "  overload: {target_wait: 5ms, interval: 20ms, retry_after: 4s}\n"
	p := startProxy(t, cfg)

	const calls, rate = 1500, 300
	uas := startSipp(t, sippRun{Name: "uas", Scenario: "uas.xml", Port: cfg.PBXPort, Calls: calls + 200, NoTrace: true, Timeout: 60 * time.Second})
	uac := startSipp(t, sippRun{Name: "uac", Scenario: "uac.xml", Remote: cfg.OutsideAddr(), Calls: calls, Rate: rate, ShortMsg: true, Timeout: 60 * time.Second})
	sos := startSipp(t, sippRun{Name: "uac-911", Scenario: "uac.xml", Remote: cfg.OutsideAddr(), LocalIP: "127.0.0.2", Service: "911", Calls: 200, Rate: 40, ShortMsg: true, Timeout: 60 * time.Second})

	waitRecords(t, p, 600)
	if err := syscall.Kill(p.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(600 * time.Millisecond)
	resumed := time.Now()
	if err := syscall.Kill(p.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("stirgate stopped for %v", resumed.Sub(stopped))

	res := uac.Wait(t)
	sosRes := sos.Wait(t)
	_ = uas.cmd.Process.Signal(syscall.SIGTERM)
	<-uas.done

	timings := inviteTimings(t, filepath.Join(res.Dir, "shortmsg.csv"))
	codes := map[int]int{}
	var lateAfter []string
	for _, c := range timings {
		codes[c.Code]++
		if c.Code != 200 && c.Sent > float64(resumed.Add(time.Second).UnixMicro())/1e6 {
			lateAfter = append(lateAfter, fmt.Sprintf("%s: %d", c.CallID, c.Code))
		}
	}
	t.Logf("caller: %d INVITEs, final responses by code %v", len(timings), codes)
	if len(timings) != calls || codes[0] != 0 || codes[200]+codes[503] != calls {
		t.Errorf("final responses by code %v for %d INVITEs, want %d, each 200 or 503", codes, len(timings), calls)
	}
	if codes[503] == 0 {
		t.Errorf("no call was refused after a 600 ms stall at %d calls/s (target_wait 5ms)", rate)
	}
	if len(lateAfter) > 0 {
		t.Errorf("%d calls made more than 1 s after the stall were not answered 200: %s", len(lateAfter), strings.Join(lateAfter[:min(len(lateAfter), 10)], "; "))
	}

	sosCodes := map[int]int{}
	for _, c := range inviteTimings(t, filepath.Join(sosRes.Dir, "shortmsg.csv")) {
		sosCodes[c.Code]++
	}
	if sosCodes[200] != 200 {
		t.Errorf("emergency caller (911): final responses by code %v, want 200 x 200 (never refused for overload)", sosCodes)
	}

	// The 503s carry Retry-After 4 s ±50%: whole seconds in 2..6, not all
	// the same.
	msgs := readFile(filepath.Join(res.Dir, "messages.log"))
	retry := map[int]int{}
	for _, m := range regexp.MustCompile(`(?m)^Retry-After:\s*(\d+)`).FindAllStringSubmatch(msgs, -1) {
		n, _ := strconv.Atoi(m[1])
		retry[n]++
	}
	if len(retry) < 2 {
		t.Errorf("Retry-After values in the 503s: %v, want jittered values", retry)
	}
	for v := range retry {
		if v < 2 || v > 6 {
			t.Errorf("Retry-After %d outside 2..6 (retry_after 4s ±50%%)", v)
		}
	}
	if !strings.Contains(msgs, `cause=503;text="overload"`) {
		t.Error(`no 503 carries Reason: SIP;cause=503;text="overload"`)
	}

	// Each refusal is recorded and counted.
	waitRecords(t, p, calls+200)
	refused := recordsWith(p, "overload:")
	m := p.Metrics(t)
	shed, _ := m.Sum("stirgate_sip_overload_shed_total", nil)
	t.Logf("refused: %d call records, stirgate_sip_overload_shed_total %v", len(refused), shed)
	if len(refused) != codes[503] || shed != float64(codes[503]) {
		t.Errorf("%d call records say overload and the shed counter is %v, want both %d (the 503s the caller got)", len(refused), shed, codes[503])
	}
}
