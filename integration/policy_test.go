package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	pp "github.com/stirgate/stirgate/attest/passport"
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

// dncInvite is an INVITE from +15551230001 (the caller of the SIPp scenarios).
func dncInvite(addr, callee string, n int) []byte {
	return inviteFrom(addr, "+15551230001", callee, n)
}

// inviteFrom is a bare INVITE from caller to callee; n keeps it unique.
func inviteFrom(addr, caller, callee string, n int) []byte {
	return []byte(fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK-dnc-%d-%d\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:%s@127.0.0.1>;tag=d%d\r\nTo: <sip:%s@%s>\r\n"+
		"Call-ID: dnc-%d-%d@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", callee, addr, n, time.Now().UnixNano(), caller, n, callee, addr, n, time.Now().UnixNano()))
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
func startPolicyProxy(t *testing.T, pol string) (proxyConfig, *sink) {
	t.Helper()
	cfg, _, _ := policyProxy(t, pol)
	return cfg, startSink(t, cfg.PBXPort)
}

// policyProxy starts stirgate with one policy file holding pol and returns
// the file, to edit; the test provides the peers.
func policyProxy(t *testing.T, pol string) (proxyConfig, *proxy, string) {
	t.Helper()
	cfg := newProxyConfig(t)
	cfg.DrainTimeout = 2 * time.Second
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(polFile, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Extra = fmt.Sprintf("policy:\n  files: [%q]\n", polFile)
	return cfg, startProxy(t, cfg), polFile
}

// TestPolicyRateLimitsOneSource: a flood of INVITEs from one trunk source
// is limited (503 with Retry-After) while another source keeps its calls.
func TestPolicyRateLimitsOneSource(t *testing.T) {
	cfg, pbx := startPolicyProxy(t, "rules:\n  - name: flood\n    type: rate\n    match: {realm: outside}\n    key: source\n    limit: 5\n    window: 30s\n    action: {type: reject}\n")

	// The first 5 reach the PBX; the 3 above the limit get 503 (awaited for
	// answerWait: a slow machine delays the answer, it does not change it).
	for i := 0; i < 8; i++ {
		inv := dncInvite(cfg.OutsideAddr(), "+15559870002", 100+i)
		if i < 5 {
			requireForwarded(t, pbx, "127.0.0.1", cfg.OutsideAddr(), inv, fmt.Sprintf("call %d of 5 allowed", i+1))
			continue
		}
		if got := sendUDPFrom(t, "127.0.0.1", cfg.OutsideAddr(), inv, answerWait); !strings.HasPrefix(got, "SIP/2.0 503 ") {
			t.Fatalf("call %d from one source, above the limit of 5: %q, want 503", i+1, got)
		}
	}
	requireForwarded(t, pbx, "127.0.0.2", cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870002", 200), "another source")
}

// TestPolicyCallBombing: 20 calls from one caller to one callee trip the
// bombing rule after its threshold; another callee is unaffected.
func TestPolicyCallBombing(t *testing.T) {
	cfg, pbx := startPolicyProxy(t, "rules:\n  - name: bombing\n    type: bombing\n    match: {realm: outside}\n    thresholds: [{limit: 5, window: 15m}]\n    action: {type: reject, code: 486}\n")
	// The first 5 reach the PBX; the 15 above the threshold get 486.
	for i := 0; i < 20; i++ {
		inv := dncInvite(cfg.OutsideAddr(), "+15559870002", 300+i)
		if i < 5 {
			requireForwarded(t, pbx, "127.0.0.1", cfg.OutsideAddr(), inv, fmt.Sprintf("call %d of 5 below the threshold", i+1))
			continue
		}
		if got := sendUDP(t, cfg.OutsideAddr(), inv, answerWait); !strings.HasPrefix(got, "SIP/2.0 486 ") {
			t.Fatalf("call %d to one callee, above the threshold of 5: %q, want 486", i+1, got)
		}
	}
	requireForwarded(t, pbx, "127.0.0.1", cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870009", 400), "another callee")
}

// TestPolicyOneRing: the Wangiri pattern (INVITE, 180, CANCEL at once) from
// one caller to 3 distinct callees, driven by SIPp through stirgate to a
// SIPp PBX, flags the caller: its next call gets 608, our PBX's call back
// to it is refused by the callback shield, and other callers keep calling.
// wangiriRule is a one_ring rule: a caller who rings 3 callees briefly in
// 10 minutes (80% of its calls cancelled within 2 s) is flagged for an hour.
const wangiriRule = `  - name: wangiri
    type: one_ring
    callees: 3
    percent: 80
    ring_max: 2s
    window: 10m
    flag_for: 1h
    action: {type: reject, code: 608}
`

func TestPolicyOneRing(t *testing.T) {
	requireSipp(t)
	cfg, p, _ := policyProxy(t, "rules:\n"+wangiriRule+`  - name: callback-shield
    type: callback
    action: {type: reject, code: 603, reason: Decline}
`)
	for i := 0; i < 3; i++ {
		if strings.Contains(p.Log(), "one-ring caller flagged") {
			t.Fatalf("flagged after %d callees, want 3", i)
		}
		callee := fmt.Sprintf("+1555987010%d", i)
		uas := startSipp(t, sippRun{Name: fmt.Sprintf("ring%d-uas", i), Scenario: "uas_cancel.xml", Port: cfg.PBXPort, Calls: 1, Timeout: 20 * time.Second})
		runSipp(t, sippRun{Name: fmt.Sprintf("ring%d-uac", i), Scenario: "uac_cancel.xml", Remote: cfg.OutsideAddr(), Service: callee, Calls: 1, Rate: 1, Timeout: 20 * time.Second}).require(t, 1)
		uas.Wait(t).require(t, 1)
	}
	if !waitLogCount(t, p, "one-ring caller flagged", 1) {
		t.Fatalf("caller not flagged after 3 one-ring calls:\n%s", tail(p.Log(), 10))
	}
	if v, _ := p.Metrics(t).Sum("stirgate_policy_one_ring_flagged_total", map[string]string{"rule": "wangiri"}); v != 1 {
		t.Errorf("stirgate_policy_one_ring_flagged_total = %v, want 1", v)
	}
	if got := sendUDP(t, cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870200", 1), 3*time.Second); !strings.HasPrefix(got, "SIP/2.0 608 ") {
		t.Fatalf("next call of the flagged caller: %q, want 608", got)
	}
	if got := sendUDP(t, cfg.InsideAddr(), inviteFrom(cfg.InsideAddr(), "+15559870100", "+15551230001", 2), 3*time.Second); !strings.HasPrefix(got, "SIP/2.0 603 ") {
		t.Fatalf("call back to the flagged number: %q, want 603 from the callback shield", got)
	}
	requireForwarded(t, startSink(t, cfg.PBXPort), "127.0.0.1", cfg.OutsideAddr(), inviteFrom(cfg.OutsideAddr(), "+15551230002", "+15559870200", 3), "another caller")
}

// requireForwarded sends an INVITE from local and fails unless the next hop
// (a sink) receives it, found by its Call-ID: the call was let through.
func requireForwarded(t *testing.T, next *sink, local, addr string, invite []byte, what string) {
	t.Helper()
	m := regexp.MustCompile(`Call-ID: (\S+)`).FindSubmatch(invite)
	if m == nil {
		t.Fatalf("%s: the INVITE has no Call-ID", what)
	}
	callID := string(m[1])
	if got := sendUDPFrom(t, local, addr, invite, 500*time.Millisecond); got != "" {
		t.Fatalf("%s: stirgate answered %q, want the call forwarded", what, got)
	}
	for i := 0; i < 40; i++ {
		for _, msg := range next.Messages() {
			if strings.Contains(msg, callID) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: the call never reached the next hop", what)
}

// TestPolicyCallingWindow: a telemarketing-style call outside its calling
// window (today is a holiday, in every time zone) gets 603 with the rule in
// the call record; with the window open all day the call goes through.
func TestPolicyCallingWindow(t *testing.T) {
	requireSipp(t)
	now := time.Now().UTC()
	var days []string
	for d := -1; d <= 1; d++ {
		days = append(days, fmt.Sprintf("%q", now.AddDate(0, 0, d).Format(time.DateOnly)))
	}
	pol := fmt.Sprintf("rules:\n  - name: hours\n    type: window\n    match: {realm: inside}\n    hours: \"08:00-21:00\"\n    holidays: [%s]\n    action: {type: reject}\n", strings.Join(days, ", "))
	cfg, p, polFile := policyProxy(t, pol)
	sink := startSink(t, cfg.TrunkPort)
	got := sendUDP(t, cfg.InsideAddr(), dncInvite(cfg.InsideAddr(), "+12125550100", 1), 3*time.Second)
	if !strings.HasPrefix(got, "SIP/2.0 603 ") {
		t.Fatalf("call on a holiday: %q, want 603", got)
	}
	if len(sink.Messages()) != 0 {
		t.Fatal("the trunk received a call outside the window")
	}
	waitLogCount(t, p, "status=603", 1)
	if lines := p.callLogLines(); len(lines) != 1 || !strings.Contains(lines[0], "rule=hours") || !strings.Contains(lines[0], "zone=America/New_York") {
		t.Errorf("call record: %q, want the rule and the callee's zone", lines)
	}
	sink.close()

	open := strings.Replace(strings.Replace(pol, "08:00-21:00", "00:00-24:00", 1), "holidays: ["+strings.Join(days, ", ")+"]", "holidays: []", 1)
	if err := os.WriteFile(polFile, []byte(open), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitLogCount(t, p, "config reloaded", 1) {
		t.Fatalf("open window not reloaded:\n%s", tail(p.Log(), 5))
	}
	uas := startSipp(t, sippRun{Name: "window-uas", Scenario: "uas.xml", Port: cfg.TrunkPort, Calls: 2, Timeout: 20 * time.Second})
	runSipp(t, sippRun{Name: "window-uac", Scenario: "uac.xml", Remote: cfg.InsideAddr(), Service: "+12125550100", Calls: 2, Rate: 10, Timeout: 20 * time.Second}).require(t, 2)
	uas.Wait(t).require(t, 2)
}

// TestPolicyEditDuringLoad: 1,000 SIPp calls while the policy file is
// edited twice: a good edit (a tag rule) changes the decisions of the calls
// after it, a broken edit changes nothing, and not a single call fails.
func TestPolicyEditDuringLoad(t *testing.T) {
	requireSipp(t)
	const calls = 1000
	base := "rules:\n  - name: busy-callee\n    type: rate\n    match: {realm: inside}\n    key: callee\n    limit: 100000\n    window: 1m\n    action: {type: reject}\n"
	tagged := base + "  - name: label\n    type: list\n    match: {realm: inside}\n    lists: [callees]\n    action: {type: tag, header: X-Stirgate-Label, value: edited}\nlists:\n  - name: callees\n    numbers: [\"+1555987*\"]\n"
	broken := strings.Replace(tagged, "type: list\n", "type: lists\n", 1)
	cfg, p, polFile := policyProxy(t, base)

	uas := startSipp(t, sippRun{Name: "edit-uas", Scenario: "uas.xml", Port: cfg.TrunkPort, Calls: calls, Timeout: 90 * time.Second})
	uac := startSipp(t, sippRun{Name: "edit-uac", Scenario: "uac.xml", Remote: cfg.InsideAddr(), Calls: calls, Rate: 100, Timeout: 90 * time.Second})
	edit := func(content, want string, n int) {
		t.Helper()
		if err := os.WriteFile(polFile, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := p.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if !waitLogCount(t, p, want, n) {
			t.Errorf("edit not taken (%s):\n%s", want, tail(p.Log(), 5))
		}
	}
	time.Sleep(3 * time.Second) // about 300 calls under the first policy
	edit(tagged, "config reloaded", 1)
	time.Sleep(2 * time.Second)
	edit(broken, "config reload failed", 1)
	uac.Wait(t).require(t, calls)
	uas.Wait(t).require(t, calls)

	var before, labelled int
	for _, l := range p.callLogLines() {
		if strings.Contains(l, "rule=label") {
			labelled++
		} else {
			before++
		}
	}
	if before < 100 || labelled < 100 || before+labelled != calls {
		t.Fatalf("%d calls decided without the tag rule, %d with it, want both (total %d)", before, labelled, calls)
	}
	if !strings.Contains(p.Log(), `type: \"lists\" is not one of`) {
		t.Errorf("the broken edit's error does not name the key:\n%s", tail(p.Log(), 5))
	}
}

// TestPolicyComplaints: 607 Unwanted answered by the PBX (SIPp) to inbound
// calls records complaints; these calls are not verified, so they count
// against the source trunk, and the reputation rule refuses the trunk's
// next call with 608 and a redress Call-Info while another trunk passes.
func TestPolicyComplaints(t *testing.T) {
	requireSipp(t)
	cfg, p, _ := policyProxy(t, `rules:
  - name: trunk-reputation
    type: reputation
    subject: source
    limit: 2
    window: 1h
    action: {type: reject, code: 608, call_info: "https://redress.example.net/"}
`)
	uas := startSipp(t, sippRun{Name: "unwanted-uas", Scenario: "uas_unwanted.xml", Port: cfg.PBXPort, Calls: 2, Timeout: 20 * time.Second})
	runSipp(t, sippRun{Name: "unwanted-uac", Scenario: "uac_unwanted.xml", Remote: cfg.OutsideAddr(), Calls: 2, Rate: 10, Timeout: 20 * time.Second}).require(t, 2)
	uas.Wait(t).require(t, 2)
	if !waitLogCount(t, p, "complaint recorded", 2) || !strings.Contains(p.Log(), "subject=trunk:127.0.0.1") {
		t.Fatalf("complaints not recorded against the trunk:\n%s", tail(p.Log(), 6))
	}
	if v, _ := p.Metrics(t).Sum("stirgate_policy_complaints_total", map[string]string{"subject": "trunk"}); v != 2 {
		t.Errorf("stirgate_policy_complaints_total{subject=trunk} = %v, want 2", v)
	}
	if got := sendUDP(t, cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870002", 1), 3*time.Second); !strings.HasPrefix(got, "SIP/2.0 608 ") {
		t.Fatalf("next call from the complained-about trunk: %q, want 608", got)
	}
	requireForwarded(t, startSink(t, cfg.PBXPort), "127.0.0.2", cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870002", 2), "another trunk")
	// The one 608 has a call record, decided by the policy.verified stage
	// (an absent record must fail, not skip the check).
	waitLogCount(t, p, "status=608", 1)
	refused := recordsWith(p, "status=608")
	if len(refused) != 1 || !strings.Contains(refused[0], "stage=policy.verified") {
		t.Errorf("call records of the 608: %q, want one decided by the policy.verified stage", refused)
	}
}

// waitRecordsWith waits (bounded: 5 s) until at least n call records
// contain s, and returns them all. A record is written after the final
// response is sent, so a test that has just read a response must wait.
func waitRecordsWith(t *testing.T, p *proxy, s string, n int) []string {
	t.Helper()
	recs := recordsWith(p, s)
	for i := 0; i < 100 && len(recs) < n; i++ {
		time.Sleep(50 * time.Millisecond)
		recs = recordsWith(p, s)
	}
	return recs
}

// recordsWith returns the call records (msg=call lines) containing s.
func recordsWith(p *proxy, s string) []string {
	var out []string
	for _, l := range p.callLogLines() {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// TestPolicyAfterVerification: the policy.verified stage sees the
// verification result. A minimum-attestation rule for the trunk refuses an
// unsigned and a C-attested call (forwarded by verify: on_missing forward)
// and lets an A-attested call through to the PBX.
func TestPolicyAfterVerification(t *testing.T) {
	cfg := newProxyConfig(t)
	cfg.DrainTimeout = 2 * time.Second // the PBX never answers the call it gets
	pki := testPKI(t, "http://127.0.0.1/")
	chain, err := os.ReadFile(filepath.Join(pki, "sp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startX5UServers(t, chain)
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	pol := "rules:\n  - name: trunk-needs-b\n    type: attestation\n    match: {sources: [\"127.0.0.0/8\"]}\n    min_attest: B\n    action: {type: reject}\n"
	if err := os.WriteFile(polFile, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Extra = verifyYAML(filepath.Join(pki, "root.pem"), srv.ports) + fmt.Sprintf("policy:\n  files: [%q]\n", polFile)
	p := startProxy(t, cfg)
	sink := startSink(t, cfg.PBXPort)

	sg := signerFor(t, pki, srv.good.URL+"/sp.pem")
	sign := func(level pp.Level) string {
		claims := passport("15551230001", time.Now())
		claims.Attest = level
		id, err := sg.Sign(claims)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for i, tc := range []struct {
		name string
		ids  []string
	}{{"unsigned", nil}, {"C-attested", []string{sign(pp.LevelC)}}} {
		if got := sendUDP(t, cfg.OutsideAddr(), signedInvite(cfg.OutsideAddr(), i, tc.ids...), 3*time.Second); !strings.HasPrefix(got, "SIP/2.0 608 ") {
			t.Fatalf("%s call from the trunk: %q, want 608", tc.name, got)
		}
	}
	if n := len(sink.Messages()); n != 0 {
		t.Fatalf("the PBX received %d refused calls", n)
	}
	requireForwarded(t, sink, "127.0.0.1", cfg.OutsideAddr(), signedInvite(cfg.OutsideAddr(), 3, sign(pp.LevelA)), "A-attested call")
	if msgs := sink.Messages(); !strings.Contains(msgs[0], "verstat=TN-Validation-Passed") {
		t.Fatalf("the A-attested call did not reach the PBX verified: %q", msgs)
	}
	// Both refused calls have a record naming the stage and the rule.
	waitLogCount(t, p, "status=608", 2)
	refused := recordsWith(p, "status=608")
	if len(refused) != 2 {
		t.Errorf("%d call records with status=608, want the 2 refused calls: %q", len(refused), refused)
	}
	for _, l := range refused {
		if !strings.Contains(l, "stage=policy.verified") || !strings.Contains(l, "rule=trunk-needs-b") {
			t.Errorf("call record: %q, want the policy.verified stage and the rule", l)
		}
	}
}

// TestPolicyConcurrentCalls: 3 SIPp calls held up for 3 s fill a trunk's
// limit of 3 calls in progress; a 4th call gets 503; once the SIPp calls
// have hung up (BYE), the slots are free and a call goes through.
func TestPolicyConcurrentCalls(t *testing.T) {
	requireSipp(t)
	cfg, p, _ := policyProxy(t, "rules:\n  - name: trunk-capacity\n    type: concurrent\n    match: {realm: outside}\n    key: source\n    limit: 3\n    action: {type: reject, code: 503}\n")
	uas := startSipp(t, sippRun{Name: "held-uas", Scenario: "uas.xml", Port: cfg.PBXPort, Calls: 3, Timeout: 30 * time.Second})
	uac := startSipp(t, sippRun{Name: "held-uac", Scenario: "uac.xml", Remote: cfg.OutsideAddr(), Calls: 3, Rate: 10, PauseMS: 3000, Timeout: 30 * time.Second})
	if !waitLogCount(t, p, "status=200", 3) {
		t.Fatalf("the 3 held calls were not answered:\n%s", tail(p.Log(), 5))
	}
	if got := sendUDP(t, cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870002", 1), 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 503 ") {
		t.Fatalf("4th call in progress from the trunk: %q, want 503", got)
	}
	uac.Wait(t).require(t, 3)
	uas.Wait(t).require(t, 3)
	requireForwarded(t, startSink(t, cfg.PBXPort), "127.0.0.1", cfg.OutsideAddr(), dncInvite(cfg.OutsideAddr(), "+15559870002", 2), "after the calls hung up")
}
