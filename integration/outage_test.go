package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stirgate/stirgate/integration/internal/sippfiles"
	"github.com/stirgate/stirgate/policy/store/redistest"
)

// storeTimeout is state.redis.timeout in these tests: the deadline of one
// store operation.
const storeTimeout = 20 * time.Millisecond

// decisionBound is how long any INVITE may wait for its final response
// while Redis is down or paused. A call runs at most one store operation
// per stateful rule that matches it (here at most 2: the rate rule, and
// the probe rule for its own source), each under its own storeTimeout,
// so the store can cost a call at most 2 x 20 ms = 40 ms. The rest,
// 460 ms, is margin for a loaded 2-core machine (stirgate, SIPp and
// redis-server share it; a call normally takes ~1 ms). 500 ms is SIP's
// T1: a caller that got no 100 Trying would retransmit then. A call that
// waited for Redis (the 5 s CLIENT PAUSE, the 1 s dial_timeout) or hung
// exceeds it.
const decisionBound = 2*storeTimeout + 460*time.Millisecond

// outagePolicy is the policy of the outage tests: a per-caller limit too
// high to fire, with fail mode mode, for the SIPp calls; and a probe, a
// per-caller limit of 3 for calls from 127.0.0.2 only, that shows the
// shared limits work again after Redis is back.
func outagePolicy(mode string) string {
	return fmt.Sprintf(`rules:
  - name: per-caller
    type: rate
    match: {realm: outside, sources: ["127.0.0.1/32"]}
    key: caller
    limit: 100000
    window: 1m
    on_store_error: %s
    action: {type: reject}
  - name: probe
    type: rate
    match: {realm: outside, sources: ["127.0.0.2/32"]}
    key: caller
    limit: 3
    window: 1m
    action: {type: reject}
`, mode)
}

// redisProxy starts a redis-server and one stirgate whose state is in it
// (timeout storeTimeout), with policy pol.
func redisProxy(t *testing.T, pol string) (*redistest.Server, proxyConfig, *proxy) {
	t.Helper()
	redis := redistest.Start(t)
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(polFile, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := newProxyConfig(t)
	cfg.DrainTimeout = 2 * time.Second
	cfg.Extra = fmt.Sprintf("policy:\n  files: [%q]\n", polFile) +
		fmt.Sprintf("state:\n  backend: redis\n  redis:\n    addrs: [%q]\n    timeout: %s\n", redis.Addr, storeTimeout)
	return redis, cfg, startProxy(t, cfg)
}

// waitRecords waits (bounded: 60 s) until stirgate has written at least n
// call records, and returns how many there are.
func waitRecords(t *testing.T, p *proxy, n int) int {
	t.Helper()
	for range 3000 {
		if got := len(p.callLogLines()); got >= n {
			return got
		}
		select {
		case <-p.done:
			t.Fatalf("stirgate exited (code %d) while waiting for %d call records:\n%s", p.exitCode, n, tail(p.Log(), 30))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("fewer than %d call records after 60 s (%d)", n, len(p.callLogLines()))
	return 0
}

// inviteTimings reads the INVITE timings of a SIPp caller's
// -trace_shortmsg file.
func inviteTimings(t *testing.T, path string) []sippfiles.InviteTiming {
	t.Helper()
	calls, err := sippfiles.InviteTimings(path)
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

// requireDecidedInTime fails for every INVITE without a final response or
// whose final response took longer than decisionBound, and returns the
// count by status code.
func requireDecidedInTime(t *testing.T, calls []sippfiles.InviteTiming, want int) map[int]int {
	t.Helper()
	if len(calls) != want {
		t.Errorf("the caller sent %d INVITEs, want %d", len(calls), want)
	}
	codes := map[int]int{}
	var slowest time.Duration
	var bad []string
	for _, c := range calls {
		codes[c.Code]++
		slowest = max(slowest, c.Wait())
		if c.Code == 0 {
			bad = append(bad, c.CallID+": no final response")
		} else if c.Wait() > decisionBound {
			bad = append(bad, fmt.Sprintf("%s: %d after %v", c.CallID, c.Code, c.Wait()))
		}
	}
	t.Logf("%d INVITEs, final responses by code %v, slowest %v (bound %v)", len(calls), codes, slowest, decisionBound)
	if len(bad) > 0 {
		t.Errorf("%d INVITEs not decided within %v: %s", len(bad), decisionBound, strings.Join(bad[:min(len(bad), 10)], "; "))
	}
	return codes
}

// redisErrors is stirgate_state_redis_errors_total by kind.
func redisErrors(t *testing.T, p *proxy) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range p.Metrics(t) {
		if s.Name == "stirgate_state_redis_errors_total" {
			out[s.Labels["kind"]] += s.Value
		}
	}
	return out
}

// outageRun drives 1,000 SIPp calls at 100 calls/s through a stirgate
// whose Redis is stopped after 200 call records and started again (same
// port, empty) after 600. It returns the caller's result, the INVITE
// timings and the number of call records written before the restart.
func outageRun(t *testing.T, mode string, uasCalls int) (proxyConfig, *proxy, sippResult, []sippfiles.InviteTiming) {
	t.Helper()
	requireSipp(t)
	const calls = 1000
	redis, cfg, p := redisProxy(t, outagePolicy(mode))
	pid := p.PID()
	uas := startSipp(t, sippRun{Name: "uas", Scenario: "uas.xml", Port: cfg.PBXPort, Calls: uasCalls, NoTrace: true, Timeout: 60 * time.Second})
	uac := startSipp(t, sippRun{Name: "uac", Scenario: "uac.xml", Remote: cfg.OutsideAddr(), Calls: calls, Rate: 100, NoTrace: true, ShortMsg: true, Timeout: 60 * time.Second})

	waitRecords(t, p, 200)
	redis.Stop()
	t.Logf("redis-server stopped after %d call records", len(p.callLogLines()))
	waitRecords(t, p, 600)
	redis.Restart()
	t.Logf("redis-server started again after %d call records", len(p.callLogLines()))

	res := uac.Wait(t)
	if mode == "open" {
		uas.Wait(t).require(t, calls)
	} else {
		// The callee got the calls that were not refused: an unknown
		// number. Stop it by its PID; its port is the probe's next.
		_ = uas.cmd.Process.Signal(syscall.SIGTERM)
		<-uas.done
	}
	timings := inviteTimings(t, filepath.Join(res.Dir, "shortmsg.csv"))
	if p.PID() != pid {
		t.Fatalf("stirgate PID %d, was %d", p.PID(), pid)
	}
	if _, exited := p.Wait(0); exited {
		t.Fatalf("stirgate exited (code %d) during the outage:\n%s", p.exitCode, tail(p.Log(), 30))
	}
	if err := p.waitReady(5 * time.Second); err != nil {
		t.Fatalf("stirgate after the outage: %v", err)
	}
	waitRecords(t, p, calls)
	return cfg, p, res, timings
}

// requireStoreErrorsCounted checks the store errors of an outage in the
// call records, the policy metric and the Redis metric, and that the last
// 100 calls (decided well after the restart) had none.
func requireStoreErrorsCounted(t *testing.T, p *proxy, mode string) []string {
	t.Helper()
	failed := recordsWith(p, "action=store_error")
	if len(failed) == 0 {
		t.Fatalf("no call record with a store_error hit during the outage; records:\n%s", sampleLines(p.callLogLines(), 5))
	}
	for _, l := range failed {
		if !strings.Contains(l, "rule=per-caller") || !strings.Contains(l, "on_store_error="+mode) {
			t.Fatalf("store_error record: %q, want rule per-caller with on_store_error=%s", l, mode)
		}
	}
	m := p.Metrics(t)
	if v, _ := m.Sum("stirgate_policy_store_errors_total", nil); v < float64(len(failed)) {
		t.Errorf("stirgate_policy_store_errors_total = %v, want at least the %d store_error records", v, len(failed))
	}
	kinds := redisErrors(t, p)
	if kinds["connection"] == 0 {
		t.Errorf("stirgate_state_redis_errors_total by kind = %v, want connection errors while Redis was stopped", kinds)
	}
	t.Logf("%d calls with a store_error hit; stirgate_state_redis_errors_total by kind: %v", len(failed), kinds)
	lines := p.callLogLines()
	for _, l := range lines[len(lines)-100:] {
		if strings.Contains(l, "action=store_error") {
			t.Errorf("a call decided well after Redis was back still failed its store:\n%s", l)
			break
		}
	}
	return failed
}

// requireLimitResumed: a fresh caller from 127.0.0.2 gets 3 calls through
// and the 4th refused: the probe's counter lives in the restarted Redis,
// reached by the same stirgate process.
func requireLimitResumed(t *testing.T, cfg proxyConfig) {
	t.Helper()
	pbx := startSink(t, cfg.PBXPort)
	for i := range 3 {
		requireForwarded(t, pbx, "127.0.0.2", cfg.OutsideAddr(), inviteFrom(cfg.OutsideAddr(), "+15551239999", "+15559870002", 900+i),
			fmt.Sprintf("probe call %d of 3 after Redis is back", i+1))
	}
	if got := sendUDPFrom(t, "127.0.0.2", cfg.OutsideAddr(), inviteFrom(cfg.OutsideAddr(), "+15551239999", "+15559870002", 903), answerWait); !strings.HasPrefix(got, "SIP/2.0 503 ") {
		t.Fatalf("4th probe call, over the limit of 3 after Redis is back: %q, want 503 (the shared limit did not resume)", got)
	}
}

// TestRedisOutageFailOpen: Redis stopped during a 1,000-call SIPp run
// through one stirgate whose rate rule fails open: every call succeeds,
// each INVITE is answered within decisionBound, the calls of the outage
// carry store_error in their call records and the metrics count the
// errors; after Redis is started again the same process (same PID, ready)
// enforces a shared limit again.
func TestRedisOutageFailOpen(t *testing.T) {
	cfg, p, res, timings := outageRun(t, "open", 1000)
	res.require(t, 1000)
	if codes := requireDecidedInTime(t, timings, 1000); codes[200] != 1000 {
		t.Errorf("final responses by code %v, want 1000 x 200", codes)
	}
	requireStoreErrorsCounted(t, p, "open")
	requireLimitResumed(t, cfg)
}

// TestRedisOutageFailClosed: the same outage with a rule that fails
// closed: the calls of the outage are refused with the rule's 503, at
// once (within decisionBound), the others go through; the limit resumes
// after the restart.
func TestRedisOutageFailClosed(t *testing.T) {
	cfg, p, res, timings := outageRun(t, "closed", 0)
	codes := requireDecidedInTime(t, timings, 1000)
	failed := requireStoreErrorsCounted(t, p, "closed")
	refused := recordsWith(p, "status=503")
	if len(refused) != len(failed) || codes[503] != len(failed) {
		t.Errorf("%d call records with status=503, %d 503s at the caller, want one per store_error record (%d)", len(refused), codes[503], len(failed))
	}
	if codes[200]+codes[503] != 1000 || codes[200] == 0 {
		t.Errorf("final responses by code %v, want 200 or 503 only, some 200", codes)
	}
	if res.Successful != codes[200] {
		t.Errorf("SIPp counted %d successful calls, %d were answered 200", res.Successful, codes[200])
	}
	requireLimitResumed(t, cfg)
}

// TestRedisSlowIsAnOutage: a Redis that does not answer (CLIENT PAUSE
// 5000 ALL: it holds every command for 5 s; long enough for the SIPp
// caller, ~1 s to start, to call inside it) is treated like an outage at
// the store deadline. During the pause a call from the trunk whose rule
// fails closed gets 503, and a SIPp call whose rule fails open is
// answered 200 by the callee, each within decisionBound (20 ms of store
// deadline + margin: well before the pause ends, so neither waited for
// Redis), each with a store_error hit naming the deadline in its call
// record; stirgate_state_redis_errors_total{kind="timeout"} grows. Once
// the pause is over, the closed rule counts again: calls go through.
func TestRedisSlowIsAnOutage(t *testing.T) {
	requireSipp(t)
	redis, cfg, p := redisProxy(t, `rules:
  - name: open-limit
    type: rate
    match: {realm: outside, sources: ["127.0.0.1/32"]}
    key: caller
    limit: 1000
    window: 1m
    on_store_error: open
    action: {type: reject}
  - name: closed-limit
    type: rate
    match: {realm: outside, sources: ["127.0.0.3/32"]}
    key: caller
    limit: 1000
    window: 1m
    on_store_error: closed
    action: {type: reject}
`)
	// The callee of each SIPp call is started first; the caller from
	// source (its rule) at 10 calls/s sends its INVITE 100 ms after start.
	call := func(name, source string, uas *sippProc) []sippfiles.InviteTiming {
		t.Helper()
		if uas == nil {
			uas = startSipp(t, sippRun{Name: name + "-uas", Scenario: "uas.xml", Port: cfg.PBXPort, Calls: 1, Timeout: 20 * time.Second})
		}
		res := runSipp(t, sippRun{Name: name + "-uac", Scenario: "uac.xml", Remote: cfg.OutsideAddr(), LocalIP: source, Calls: 1, Rate: 10, ShortMsg: true, Timeout: 20 * time.Second})
		res.require(t, 1)
		uas.Wait(t).require(t, 1)
		return inviteTimings(t, filepath.Join(res.Dir, "shortmsg.csv"))
	}
	// Both rules reach Redis before the pause: connected, scripts loaded.
	call("before-open", "127.0.0.1", nil)
	call("before-closed", "127.0.0.3", nil)
	if recs := recordsWith(p, "action=store_error"); len(recs) != 0 {
		t.Fatalf("store errors before the pause: %q", recs)
	}
	before := redisErrors(t, p)

	uas := startSipp(t, sippRun{Name: "paused-uas", Scenario: "uas.xml", Port: cfg.PBXPort, Calls: 1, Timeout: 20 * time.Second})
	if got := redis.Do("CLIENT", "PAUSE", "5000", "ALL"); got != "OK" {
		t.Fatalf("CLIENT PAUSE: %q", got)
	}
	paused := time.Now()
	got := sendUDPFrom(t, "127.0.0.3", cfg.OutsideAddr(), inviteFrom(cfg.OutsideAddr(), "+15551230003", "+15559870002", 1), answerWait)
	closedWait := time.Since(paused)
	if !strings.HasPrefix(got, "SIP/2.0 503 ") {
		t.Fatalf("closed-limit call while Redis is paused: %q, want 503", got)
	}
	openCalls := call("paused-open", "127.0.0.1", uas)
	t.Logf("while paused: the closed rule's 503 after %v, the open rule's call answered %d after %v (bound %v); %v since the pause began",
		closedWait, openCalls[0].Code, openCalls[0].Wait(), decisionBound, time.Since(paused))
	if closedWait > decisionBound {
		t.Errorf("closed-limit call while Redis is paused: 503 after %v, want within %v", closedWait, decisionBound)
	}
	requireDecidedInTime(t, openCalls, 1)

	// Both calls failed their store at the deadline, not on an answer.
	for _, rule := range []string{"open-limit", "closed-limit"} {
		recs := waitRecordsWith(t, p, "rule="+rule+" mode=enforce action=store_error", 1)
		if len(recs) != 1 || !strings.Contains(recs[0], "deadline exceeded") {
			t.Errorf("call records with a store_error of rule %s: %q, want 1 naming the deadline", rule, recs)
		}
	}
	after := redisErrors(t, p)
	if after["timeout"] < before["timeout"]+2 {
		t.Errorf("stirgate_state_redis_errors_total{kind=\"timeout\"} %v -> %v, want +2 (one per paused call)", before["timeout"], after["timeout"])
	}

	// redis-cli's PING is held until the pause ends: then the closed rule
	// counts again and lets the trunk's calls through.
	if got := redis.Do("PING"); got != "PONG" {
		t.Fatalf("PING after the pause: %q", got)
	}
	call("after-closed", "127.0.0.3", nil)
	if recs := recordsWith(p, "action=store_error"); len(recs) != 2 {
		t.Errorf("%d call records with a store_error, want the 2 paused calls only: %q", len(recs), recs)
	}
}

// TestRedisDownAtStart: a node started while its Redis is down serves at
// once instead of exiting: it answers OPTIONS, a call from the trunk whose
// rule fails closed is refused with 503 and a store_error record, and
// once redis-server is started (same port) the node connects by itself,
// as its log says, and the shared probe limit holds, same process.
func TestRedisDownAtStart(t *testing.T) {
	redis := redistest.Start(t)
	redis.Stop()
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(polFile, []byte(outagePolicy("closed")), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := newProxyConfig(t)
	cfg.DrainTimeout = 2 * time.Second
	cfg.Extra = fmt.Sprintf("policy:\n  files: [%q]\n", polFile) +
		fmt.Sprintf("state:\n  backend: redis\n  redis:\n    addrs: [%q]\n    timeout: %s\n    dial_timeout: 200ms\n", redis.Addr, storeTimeout)
	p := startProxy(t, cfg)
	pid := p.PID()
	if !strings.Contains(p.Log(), "redis unreachable at start") {
		t.Errorf("no log line says Redis was unreachable at start:\n%s", tail(p.Log(), 20))
	}
	got := sendUDP(t, cfg.OutsideAddr(), inviteFrom(cfg.OutsideAddr(), "+15551230001", "+15559870002", 1), answerWait)
	if !strings.HasPrefix(got, "SIP/2.0 503 ") {
		t.Fatalf("call while Redis is down, rule on_store_error closed: %q, want 503", got)
	}
	if recs := waitRecordsWith(t, p, "action=store_error", 1); len(recs) != 1 || !strings.Contains(recs[0], "on_store_error=closed") {
		t.Fatalf("call records with a store_error hit: %q, want the one refused call's", recs)
	}

	redis.Restart()
	for i := 0; !strings.Contains(p.Log(), "redis connected"); i++ {
		if i >= 300 {
			t.Fatalf("no 'redis connected' log line 15 s after redis-server started:\n%s", tail(p.Log(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	requireLimitResumed(t, cfg)
	if p.PID() != pid {
		t.Fatalf("stirgate PID %d, was %d", p.PID(), pid)
	}
}
