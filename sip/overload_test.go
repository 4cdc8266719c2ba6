package sip

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCallIDOf(t *testing.T) {
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"long form", "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: abc@h\r\nCSeq: 1 INVITE\r\n\r\n", "abc@h"},
		{"compact form", "INVITE sip:a@b SIP/2.0\r\ni:  xyz \r\n\r\n", "xyz"},
		{"any case", "INVITE sip:a@b SIP/2.0\r\ncALL-iD:q1\r\n\r\n", "q1"},
		{"space before colon", "INVITE sip:a@b SIP/2.0\r\nCall-ID : sp\r\n\r\n", "sp"},
		{"last wins, as in sipgo's parser", "INVITE sip:a@b SIP/2.0\r\nCall-ID: one\r\nCall-ID: two\r\n\r\n", "two"},
		{"not a prefix of another name", "INVITE sip:a@b SIP/2.0\r\nCall-Info: <x>\r\nIdentity: y\r\n\r\n", ""},
		{"only in the body", "INVITE sip:a@b SIP/2.0\r\nContent-Length: 14\r\n\r\nCall-ID: body\r\n", ""},
		{"empty value", "INVITE sip:a@b SIP/2.0\r\nCall-ID:\r\n\r\n", ""},
		{"bare LF is not a line end (as in sipgo's parser)", "INVITE sip:a@b SIP/2.0\nCall-ID: lf\n\n", ""},
		{"no headers", "INVITE", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(callIDOf([]byte(tc.msg))); got != tc.want {
				t.Errorf("callIDOf = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAdmissionControl: a whole interval whose smallest wait is above the
// target admits fewer new INVITEs (down to minAdmit, never 0); late cuts
// apply only then; intervals well below the target admit more again, back
// to all; mode off admits everything at once.
func TestAdmissionControl(t *testing.T) {
	var changes []float64
	a := newAdmission(overloadPolicy{on: true, target: 20 * time.Millisecond, interval: 100 * time.Millisecond, retryAfter: 10 * time.Second},
		func(v float64) { changes = append(changes, v) })
	now := time.Unix(1000, 0)
	step := func(wait time.Duration) {
		for range 5 {
			a.observe(inviteWait, wait, now)
			now = now.Add(25 * time.Millisecond)
		}
	}
	step(5 * time.Millisecond)
	if a.admit != 1 || a.late(time.Second) {
		t.Fatalf("no queue: admit %v, late(1s) %v; want 1, false (a single stall refuses nobody)", a.admit, a.late(time.Second))
	}
	// One INVITE under the target in an interval means no standing queue.
	a.observe(inviteWait, 100*time.Millisecond, now)
	a.observe(inviteWait, time.Millisecond, now)
	now = now.Add(120 * time.Millisecond)
	a.observe(inviteWait, time.Millisecond, now)
	if a.admit != 1 {
		t.Fatalf("an interval with one short wait: admit %v, want 1", a.admit)
	}
	for i := range 20 {
		step(30 * time.Millisecond)
		// The first window still held the short wait.
		if i > 0 && (a.admit >= 1 || a.admit < minAdmit) {
			t.Fatalf("standing queue, interval %d: admit %v, want in [%v, 1)", i, a.admit, minAdmit)
		}
	}
	if a.admit != minAdmit {
		t.Errorf("after 20 intervals of standing queue admit is %v, want the floor %v", a.admit, minAdmit)
	}
	if !a.late(41*time.Millisecond) || a.late(39*time.Millisecond) {
		t.Errorf("in overload: late(41ms) %v, late(39ms) %v; want true, false (2 x target)", a.late(41*time.Millisecond), a.late(39*time.Millisecond))
	}
	shed := 0
	for range 1000 {
		if a.shedNext(now) {
			shed++
		}
	}
	if shed < 950 || shed == 1000 {
		t.Errorf("at admit %v, %d of 1000 shed; want about 980 and never all", a.admit, shed)
	}
	for i := 0; a.admit < 1; i++ {
		if i > 50 {
			t.Fatalf("admission did not recover: %v after 50 quiet intervals", a.admit)
		}
		step(2 * time.Millisecond)
	}
	if len(changes) == 0 || changes[len(changes)-1] != 1 {
		t.Errorf("gauge updates %v, want the last one 1", changes)
	}
	step(30 * time.Millisecond)
	step(30 * time.Millisecond)
	a.set(20*time.Millisecond, 100*time.Millisecond, 10*time.Second, false)
	if a.admit != 1 || a.shedNext(now) || a.late(time.Second) {
		t.Errorf("mode off: admit %v; want 1 and nothing shed or late", a.admit)
	}
}

// TestAdmissionRecoversWhileIdle: after an overload, an edge that got no
// message at all for a while admits every new INVITE again: the quiet
// intervals count as intervals without a queue, although nothing rolled
// them.
func TestAdmissionRecoversWhileIdle(t *testing.T) {
	a := newAdmission(overloadPolicy{on: true, target: 5 * time.Millisecond, interval: 20 * time.Millisecond, retryAfter: time.Second}, nil)
	now := time.Unix(1000, 0)
	for range 40 { // 10 intervals of standing queue
		a.observe(inviteWait, 50*time.Millisecond, now)
		now = now.Add(5 * time.Millisecond)
	}
	if a.admit > 0.5 {
		t.Fatalf("after 10 intervals of standing queue admit is %v, want at most 0.5", a.admit)
	}
	low := a.admit
	// Quiet for 4 intervals: not yet enough to climb all the way back.
	if a.shedNext(now.Add(80 * time.Millisecond)); a.admit >= 1 || a.admit <= low {
		t.Errorf("4 quiet intervals after admit %v: admit %v, want above it and below 1", low, a.admit)
	}
	// Quiet for a second: every new INVITE is admitted.
	now = now.Add(time.Second)
	shed := 0
	for range 100 {
		if a.shedNext(now) {
			shed++
		}
	}
	if a.admit != 1 || shed != 0 {
		t.Errorf("after a quiet second: admit %v, %d of 100 new INVITEs shed; want 1 and none", a.admit, shed)
	}
}

func TestRetryAfterJitter(t *testing.T) {
	a := newAdmission(overloadPolicy{on: true, target: time.Millisecond, interval: time.Second, retryAfter: 10 * time.Second}, nil)
	seen := map[int]bool{}
	for range 500 {
		v, err := strconv.Atoi(a.retryAfterHeader().Value())
		if err != nil || v < 5 || v > 15 {
			t.Fatalf("Retry-After %q, want whole seconds in 5..15", a.retryAfterHeader().Value())
		}
		seen[v] = true
	}
	if len(seen) < 5 {
		t.Errorf("Retry-After took %d values in 500 responses: not jittered", len(seen))
	}
}

func TestOverloadExempts(t *testing.T) {
	p := overloadPolicy{exempt: map[string]bool{"911": true, "112": true}}
	for _, tc := range []struct {
		ruri, to string
		want     bool
	}{
		{"sip:911@pbx", "sip:911@pbx", true},
		{"sip:+15551230002@pbx", "sip:112@pbx", true},
		{"tel:911", "sip:x@pbx", true},
		{"sip:911;phone-context=+1@pbx;user=phone", "sip:x@pbx", true},
		{"sip:+15551230002@pbx", "sip:+15551230002@pbx", false},
		{"sip:9110@pbx", "sip:9110@pbx", false},
	} {
		var ruri, to sip.Uri
		if err := sip.ParseUri(tc.ruri, &ruri); err != nil {
			t.Fatal(err)
		}
		if err := sip.ParseUri(tc.to, &to); err != nil {
			t.Fatal(err)
		}
		req := sip.NewRequest(sip.INVITE, ruri)
		req.AppendHeader(&sip.ToHeader{Address: to})
		if got := p.exempts(req); got != tc.want {
			t.Errorf("exempts(R-URI %s, To %s) = %v, want %v", tc.ruri, tc.to, got, tc.want)
		}
	}
}

// TestAdmissionSignals: a standing queue in either signal (INVITEs before
// their pipeline, any datagram in the socket) lowers admission; one
// signal's short waits do not hide the other's standing queue.
func TestAdmissionSignals(t *testing.T) {
	a := newAdmission(overloadPolicy{on: true, target: 10 * time.Millisecond, interval: 100 * time.Millisecond, retryAfter: time.Second}, nil)
	now := time.Unix(1000, 0)
	for range 3 {
		for range 5 {
			a.observe(inviteWait, time.Millisecond, now)
			a.observe(socketWait, 30*time.Millisecond, now)
			now = now.Add(25 * time.Millisecond)
		}
	}
	if a.admit >= 1 {
		t.Fatalf("socket waits of 30ms with INVITE waits of 1ms: admit %v, want below 1", a.admit)
	}
}

// TestReaderShedsOnlyNewTrustedInvites drives a serving edge whose
// admission is held at its floor (deep overload) with real datagrams: a
// new INVITE from a trusted source is refused 503 by the socket reader
// (Retry-After, Reason overload) nearly always, and its retransmission
// gets the 503 again without a second count; an INVITE from an untrusted
// source keeps its 403; a call to an emergency number and a re-INVITE
// (To tag) are never refused for overload.
func TestReaderShedsOnlyNewTrustedInvites(t *testing.T) {
	cfg := testConfig()
	cfg.Realms.Outside.Trusted = []string{"127.0.0.2/32"}
	reg := prometheus.NewRegistry()
	e := serveTestEdgeConfig(t, cfg, Options{Registry: reg})
	e.adm.mu.Lock()
	e.adm.admit, e.adm.windowEnd = minAdmit, time.Now().Add(time.Hour)
	e.adm.mu.Unlock()
	addr := e.ListenAddrs("outside")["UDP"]
	invite := func(callID, to, toTag string) string {
		if toTag != "" {
			toTag = ";tag=" + toTag
		}
		return "INVITE sip:" + to + "@" + addr + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-" + callID + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:+12025550199@trunk.example>;tag=abc\r\n" +
			"To: <sip:" + to + "@example.net>" + toTag + "\r\nCall-ID: " + callID + "\r\nCSeq: 1 INVITE\r\n" +
			"Contact: <sip:a@LOCAL>\r\nContent-Length: 0\r\n\r\n"
	}
	shedCount := func() float64 { return testutil.ToFloat64(e.m.shed.WithLabelValues("outside", "reader")) }

	if got := firstResponse(t, "127.0.0.1", addr, invite("untrusted-1", "+12025550100", "")); !strings.HasPrefix(got, "SIP/2.0 403 ") {
		t.Errorf("INVITE from an untrusted source in overload: %q, want 403", firstLine(got))
	}
	refused := ""
	for i := range 10 {
		raw := invite("new-"+strconv.Itoa(i), "+12025550100", "")
		if got := firstResponse(t, "127.0.0.2", addr, raw); strings.HasPrefix(got, "SIP/2.0 503 ") {
			if !strings.Contains(got, "Retry-After: ") || !strings.Contains(got, `text="overload"`) {
				t.Fatalf("503 without Retry-After or Reason overload:\n%s", got)
			}
			refused = raw
		}
	}
	if refused == "" {
		t.Fatalf("admission at %v: none of 10 new INVITEs was refused", minAdmit)
	}
	before := shedCount()
	if got := firstResponse(t, "127.0.0.2", addr, refused); !strings.HasPrefix(got, "SIP/2.0 503 ") {
		t.Errorf("retransmission of a refused INVITE: %q, want the 503 again", firstLine(got))
	}
	if shedCount() != before {
		t.Errorf("a retransmission counted as a second refusal")
	}
	for _, tc := range []struct{ what, raw string }{
		{"call to 911", invite("sos-1", "911", "")},
		{"re-INVITE", invite("dialog-1", "+12025550100", "xyz")},
	} {
		for i := range 5 {
			raw := strings.Replace(tc.raw, "Call-ID: ", "Call-ID: "+strconv.Itoa(i), 1)
			if got := firstResponse(t, "127.0.0.2", addr, raw); strings.Contains(got, `text="overload"`) {
				t.Fatalf("%s refused for overload: %q", tc.what, firstLine(got))
			}
		}
	}
}

// firstResponse sends raw from a fresh socket on local, its address in
// place of LOCAL (Via, Contact), to addr and returns the first datagram
// back (bounded).
func firstResponse(t *testing.T, local, addr, raw string) string {
	t.Helper()
	c, err := net.ListenPacket("udp", net.JoinHostPort(local, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw = strings.ReplaceAll(raw, "LOCAL", c.LocalAddr().String())
	if _, err := c.WriteTo([]byte(raw), dst); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 8192)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer from %s: %v", addr, err)
	}
	return string(buf[:n])
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\r\n"); return l }

// TestOverloadReload: a reload applies sip.overload: mode off admits every
// INVITE at once and cuts none late; a new target_wait and retry_after
// take effect; mode on again steers admission.
func TestOverloadReload(t *testing.T) {
	e, _ := newTestEdge(t, testConfig(), Chains{})
	e.adm.mu.Lock()
	e.adm.admit, e.adm.windowEnd = minAdmit, time.Now().Add(time.Hour)
	e.adm.mu.Unlock()
	reload := func(o OverloadConfig) {
		t.Helper()
		cfg := testConfig()
		cfg.Overload = o
		u, err := e.Prepare(cfg, Chains{})
		if err != nil {
			t.Fatal(err)
		}
		if len(u.NeedRestart) != 0 {
			t.Fatalf("overload change needs a restart: %v", u.NeedRestart)
		}
		u.Install()
	}
	reload(OverloadConfig{Mode: "off"})
	if e.adm.shedNext(time.Now()) || e.adm.late(time.Hour) || e.adm.admit != 1 {
		t.Fatalf("after a reload to mode off: admit %v, still shedding or cutting late", e.adm.admit)
	}
	reload(OverloadConfig{TargetWait: 50 * time.Millisecond, RetryAfter: 2 * time.Second})
	if e.adm.off || e.adm.target != 50*time.Millisecond {
		t.Fatalf("after a reload to mode on, target 50ms: off %v, target %v", e.adm.off, e.adm.target)
	}
	for range 50 {
		if v, _ := strconv.Atoi(e.adm.retryAfterHeader().Value()); v < 1 || v > 3 {
			t.Fatalf("Retry-After %d after a reload to retry_after 2s, want 1..3", v)
		}
	}
}
