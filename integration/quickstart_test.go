package integration

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// defaultConfigOnPorts is the embedded default configuration
// (configs/stirgate.yaml) with its fixed ports moved to cfg's free ones.
// Every port must be found: a changed default fails here, not silently.
func defaultConfigOnPorts(t *testing.T, cfg proxyConfig) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "configs", "stirgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	raw := string(b)
	for from, to := range map[string]string{
		"127.0.0.1:5070": cfg.InsideAddr(),
		"127.0.0.1:5080": cfg.OutsideAddr(),
		"127.0.0.1:5090": hostPort(cfg.PBXPort),
		"127.0.0.1:5100": hostPort(cfg.TrunkPort),
		"9060":           strconv.Itoa(cfg.AdminPort), // admin.listen, attest.x5u, verify.x5u.ports
	} {
		if !strings.Contains(raw, from) {
			t.Fatalf("configs/stirgate.yaml no longer uses %s: update the README quick start and this test", from)
		}
		raw = strings.ReplaceAll(raw, from, to)
	}
	return raw
}

// identityHeader returns the value of the first Identity header in a SIPp
// message log ("" when there is none), as the README's command extracts it.
func identityHeader(log string) string {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Identity: "); ok {
			return strings.TrimRight(v, "\r")
		}
	}
	return ""
}

// callLine returns stirgate's call line for realm (the last one), failing
// the test when there is none.
func callLine(t *testing.T, p *proxy, realm string) string {
	t.Helper()
	var last string
	for _, l := range p.callLogLines() {
		if strings.Contains(l, " realm="+realm+" ") {
			last = l
		}
	}
	if last == "" {
		t.Fatalf("no call line for realm %s in stirgate's log:\n%s", realm, tail(p.Log(), 20))
	}
	return last
}

// TestQuickStart runs the README's SIPp quick start on the embedded default
// configuration: a call from the customer number leaves signed (attest=A),
// the signed INVITE looped back through the outside realm verifies
// (verstat=TN-Validation-Passed at the PBX), and the same PASSporT sent
// again is blocked as a replay (438, nothing reaches the PBX).
func TestQuickStart(t *testing.T) {
	requireSipp(t)
	cfg := newProxyConfig(t)
	cfg.Raw = defaultConfigOnPorts(t, cfg)
	p := startProxy(t, cfg)
	const callee = "+12025550199"

	// Step 1: the PBX calls from the customer number; the trunk gets it signed.
	trunk := startSipp(t, sippRun{Name: "trunk", Scenario: "uas.xml", Port: cfg.TrunkPort, Calls: 1, Timeout: 30 * time.Second})
	runSipp(t, sippRun{Name: "pbx-caller", Scenario: "uac_customer.xml", Remote: cfg.InsideAddr(), Service: callee, Calls: 1, Rate: 1, Timeout: 30 * time.Second}).require(t, 1)
	tr := trunk.Wait(t)
	tr.require(t, 1)
	id := identityHeader(readFile(filepath.Join(tr.Dir, "messages.log")))
	if !strings.HasSuffix(id, ";info=<http://"+hostPort(cfg.AdminPort)+"/certs/sp.pem>;alg=ES256;ppt=shaken") {
		t.Fatalf("the trunk did not receive stirgate's Identity header; got %q", id)
	}
	if l := callLine(t, p, "inside"); !strings.Contains(l, " attest=A ") || !strings.Contains(l, " customer=lab-pbx ") || !strings.Contains(l, " status=200 ") {
		t.Fatalf("call line of the outbound call, want attest=A customer=lab-pbx status=200:\n%s", l)
	}

	// Step 2: the trunk sends that INVITE's Identity back in; the PBX gets
	// the call verified.
	loop := sippRun{Name: "trunk-caller", Scenario: "uac_trunk_signed.xml", Remote: cfg.OutsideAddr(), Service: callee, Calls: 1, Rate: 1,
		Timeout: 30 * time.Second, Extra: []string{"-key", "identity", id}}
	pbx := startSipp(t, sippRun{Name: "pbx", Scenario: "uas.xml", Port: cfg.PBXPort, Calls: 1, Timeout: 30 * time.Second})
	runSipp(t, loop).require(t, 1)
	pr := pbx.Wait(t)
	pr.require(t, 1)
	if msgs := readFile(filepath.Join(pr.Dir, "messages.log")); !strings.Contains(msgs, "verstat=TN-Validation-Passed") {
		t.Fatalf("the PBX did not get verstat=TN-Validation-Passed:\n%s", tail(msgs, 30))
	}
	if l := callLine(t, p, "outside"); !strings.Contains(l, " verstat=TN-Validation-Passed ") || !strings.Contains(l, " attest=A ") {
		t.Fatalf("call line of the inbound call, want verstat=TN-Validation-Passed attest=A:\n%s", l)
	}

	// Step 3: the same PASSporT again is a replay: blocked with 438, and
	// nothing reaches the PBX.
	sink := startSink(t, cfg.PBXPort)
	loop.Name = "replay"
	res := runSipp(t, loop)
	if res.Successful != 0 || res.Failed != 1 {
		t.Fatalf("replayed PASSporT: %d successful, %d failed calls; want the call refused", res.Successful, res.Failed)
	}
	if msgs := readFile(filepath.Join(res.Dir, "messages.log")); !strings.Contains(msgs, "SIP/2.0 438 ") || !strings.Contains(msgs, "Reason: STIR;cause=438") {
		t.Fatalf("replayed PASSporT: want 438 with Reason: STIR;cause=438 at the trunk:\n%s", tail(msgs, 30))
	}
	if got := sink.Messages(); len(got) != 0 {
		t.Fatalf("the replayed call reached the PBX:\n%s", got[0])
	}
	if l := callLine(t, p, "outside"); !strings.Contains(l, " status=438 ") || !strings.Contains(l, " stage=verify ") {
		t.Fatalf("call line of the replay, want status=438 stage=verify:\n%s", l)
	}

	// Step 4: the traceback answer for the three calls, newest first.
	var recs []traceRecord
	cfgPath := p.cmd.Args[len(p.cmd.Args)-1]
	for i := 0; i < 50 && len(recs) < 3; i++ { // the writer stores within 100 ms
		out, _ := runTrace(t, "--config", cfgPath, "--dest", callee, "--json")
		recs = parseTraceJSON(t, out)
		if len(recs) < 3 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s %d %s %s", r.Direction, r.Status, r.Stage, r.Attest))
	}
	// The replay is attested to nothing (it failed), but its record keeps
	// the token's x5u and why it failed.
	if want := "inbound 438 verify ,inbound 200 downstream A,outbound 200 downstream A"; strings.Join(got, ",") != want {
		t.Fatalf("stirgate trace --dest %s:\n got %s\nwant %s", callee, strings.Join(got, ","), want)
	}
	if recs[1].OrigID != recs[2].OrigID || recs[2].Customer != "lab-pbx" || recs[0].X5U != recs[2].X5U || !strings.Contains(recs[0].VerifyReason, "replay") {
		t.Errorf("records: verified origid %q vs signed %q, customer %q, replay x5u %q vs %q, replay reason %q",
			recs[1].OrigID, recs[2].OrigID, recs[2].Customer, recs[0].X5U, recs[2].X5U, recs[0].VerifyReason)
	}
}
