package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// policyYAML is a policy file: a DNC list holding the callee SIPp dials
// (+15559870002) with a consent for +15559870003, for the telemarketing
// class that the signing customer it-pbx belongs to.
const policyYAML = `lists:
  - name: dnc
    numbers: ["+1 555 987 0002", "+1 555 987 0003"]
  - name: consent
    numbers: ["+1 555 987 0003"]
classes:
  telemarketing: [it-pbx]
rules:
  - name: dnc
    type: dnc
    match: {realm: inside, class: telemarketing}
    lists: [dnc]
    consent: [consent]
    action: {type: reject, code: 603}
`

// TestPolicyDNCThroughStirgate: a telemarketing call to a DNC callee gets
// 603 and never reaches the trunk; a consented callee's call goes through
// (SIPp); a broken policy edit changes nothing, a good one takes effect, on
// SIGHUP and on a plain edit of the file.
func TestPolicyDNCThroughStirgate(t *testing.T) {
	requireSipp(t)
	cfg := newProxyConfig(t)
	base := fmt.Sprintf("http://%s/certs/", hostPort(cfg.AdminPort))
	pki := testPKI(t, base)
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(polFile, []byte(policyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Extra = attestYAML(pki, base+"sp.pem") + fmt.Sprintf("policy:\n  files: [%q]\n", polFile)
	p := startProxy(t, cfg)

	call := func(name, callee string, calls int) sippResult {
		uas := startSipp(t, sippRun{Name: name + "-uas", Scenario: "uas.xml", Port: cfg.TrunkPort, Calls: calls, Timeout: 30 * time.Second})
		uac := runSipp(t, sippRun{Name: name + "-uac", Scenario: "uac.xml", Remote: cfg.InsideAddr(), Service: callee, Calls: calls, Rate: 10, Timeout: 30 * time.Second})
		uac.require(t, calls)
		uas.Wait(t).require(t, calls)
		return uac
	}
	// Consented callee: through.
	call("consent", "+15559870003", 3)
	// DNC callee: 603, nothing forwarded.
	sink := startSink(t, cfg.TrunkPort)
	got := sendUDP(t, cfg.InsideAddr(), dncInvite(cfg.InsideAddr(), "+15559870002", 1), 3*time.Second)
	if !strings.HasPrefix(got, "SIP/2.0 603 ") {
		t.Fatalf("DNC callee: %q, want 603", got)
	}
	if len(sink.Messages()) != 0 {
		t.Fatalf("the trunk received a call to a DNC callee:\n%s", strings.Join(sink.Messages(), "\n"))
	}
	waitLogCount(t, p, "status=603", 1) // the record is written just after the response
	rec := ""
	for _, l := range p.callLogLines() {
		if strings.Contains(l, "status=603") {
			rec = l
		}
	}
	if !strings.Contains(rec, "stage=policy") || !strings.Contains(rec, "rule=dnc") || !strings.Contains(rec, "customer=it-pbx") {
		t.Errorf("call record of the DNC rejection: %q", rec)
	}

	// A broken edit: refused, the old policy keeps serving.
	if err := os.WriteFile(polFile, []byte(strings.Replace(policyYAML, "type: dnc\n", "type: dnc\n    colour: red\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitLogCount(t, p, "config reload failed", 1) || !strings.Contains(p.Log(), "unknown key \\\"colour\\\"") {
		t.Fatalf("broken policy not refused with its key:\n%s", tail(p.Log(), 5))
	}
	if got := sendUDP(t, cfg.InsideAddr(), dncInvite(cfg.InsideAddr(), "+15559870002", 2), 3*time.Second); !strings.HasPrefix(got, "SIP/2.0 603 ") {
		t.Fatalf("after a broken edit: %q, want the old policy's 603", got)
	}
	// A good edit (the rule in report mode): the call goes through.
	if err := os.WriteFile(polFile, []byte(strings.Replace(policyYAML, "type: dnc\n", "type: dnc\n    mode: report\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitLogCount(t, p, "config reloaded", 1) {
		t.Fatalf("good policy edit not reloaded:\n%s", tail(p.Log(), 5))
	}
	sink.close()
	call("report", "+15559870002", 2)

	// An edit without any signal: the file watcher reloads it (bounded wait).
	if err := os.WriteFile(polFile, []byte(policyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	reloaded := false
	for i := 0; i < 50 && !reloaded; i++ { // up to 10 s; the watcher looks every 2 s
		time.Sleep(200 * time.Millisecond)
		reloaded = strings.Contains(p.Log(), "configuration files changed") && waitLogCount(t, p, "config reloaded", 2)
	}
	if !reloaded {
		t.Fatalf("editing the policy file did not reload it:\n%s", tail(p.Log(), 5))
	}
	if got := sendUDP(t, cfg.InsideAddr(), dncInvite(cfg.InsideAddr(), "+15559870002", 3), 3*time.Second); !strings.HasPrefix(got, "SIP/2.0 603 ") {
		t.Fatalf("after the watched edit back to enforce: %q, want 603", got)
	}
}

func dncInvite(addr, callee string, n int) []byte {
	return []byte(fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK-dnc-%d-%d\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:+15551230001@127.0.0.1>;tag=d%d\r\nTo: <sip:%s@%s>\r\n"+
		"Call-ID: dnc-%d-%d@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", callee, addr, n, time.Now().UnixNano(), n, callee, addr, n, time.Now().UnixNano()))
}

// waitLogCount waits (bounded) until s appears at least n times in the log.
func waitLogCount(t *testing.T, p *proxy, s string, n int) bool {
	t.Helper()
	for i := 0; i < 100; i++ {
		if strings.Count(p.Log(), s) >= n {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// startPolicyProxy starts stirgate with one policy file holding pol, and a
// PBX that receives calls and never answers them (short drain: those calls
// stay unanswered).
func startPolicyProxy(t *testing.T, pol string) proxyConfig {
	t.Helper()
	cfg := newProxyConfig(t)
	cfg.DrainTimeout = 2 * time.Second
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(polFile, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Extra = fmt.Sprintf("policy:\n  files: [%q]\n", polFile)
	startSink(t, cfg.PBXPort)
	startProxy(t, cfg)
	return cfg
}

// TestPolicyRateLimitsOneSource: a flood of INVITEs from one trunk source
// is limited (503 with Retry-After) while another source keeps its calls.
func TestPolicyRateLimitsOneSource(t *testing.T) {
	cfg := startPolicyProxy(t, "rules:\n  - name: flood\n    type: rate\n    match: {realm: outside}\n    key: source\n    limit: 5\n    window: 30s\n    action: {type: reject}\n")

	limited := 0
	for i := 0; i < 8; i++ {
		got := sendUDPFrom(t, "127.0.0.1", cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870002", 100+i), 300*time.Millisecond)
		if strings.HasPrefix(got, "SIP/2.0 503 ") {
			limited++
		}
	}
	if limited != 3 {
		t.Fatalf("%d of 8 calls from one source limited, want the 3 above the limit of 5", limited)
	}
	if got := sendUDPFrom(t, "127.0.0.2", cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870002", 200), 300*time.Millisecond); strings.HasPrefix(got, "SIP/2.0 503 ") {
		t.Fatalf("another source was limited: %q", got)
	}
}

// TestPolicyCallBombing: 20 calls from one caller to one callee trip the
// bombing rule after its threshold; another callee is unaffected.
func TestPolicyCallBombing(t *testing.T) {
	cfg := startPolicyProxy(t, "rules:\n  - name: bombing\n    type: bombing\n    match: {realm: outside}\n    thresholds: [{limit: 5, window: 15m}]\n    action: {type: reject, code: 486}\n")
	busy := 0
	for i := 0; i < 20; i++ {
		got := sendUDP(t, cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870002", 300+i), 300*time.Millisecond)
		if strings.HasPrefix(got, "SIP/2.0 486 ") {
			busy++
		}
	}
	if busy != 15 {
		t.Fatalf("%d of 20 calls to one callee got 486, want the 15 above the threshold of 5", busy)
	}
	if got := sendUDP(t, cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870009", 400), 300*time.Millisecond); strings.HasPrefix(got, "SIP/2.0 486 ") {
		t.Fatalf("another callee was affected: %q", got)
	}
}
