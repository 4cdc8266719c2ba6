package sip

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The UDP transaction layer (udptx.go) against real sockets: a caller and a
// callee are plain UDP sockets on loopback, stirgate sits between them with
// T1 shortened so the RFC 3261 17 timers fire within a test.

const testT1 = 20 * time.Millisecond

// udpEdge serves chains on loopback with the inside realm's next hop at
// callee; calls come from the outside realm.
func udpEdge(t *testing.T, callee *udpPeer, chains Chains, records ...func(CallRecord)) (*Edge, string) {
	t.Helper()
	cfg := testConfig()
	cfg.Realms.Inside.NextHop = "sip:" + callee.addr()
	opt := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if len(records) > 0 {
		opt.Records = records[0]
	}
	e, err := New(cfg, chains, opt)
	if err != nil {
		t.Fatal(err)
	}
	e.udpTx.setTimers(testT1, 8*testT1, 10*testT1)
	serveEdge(t, e)
	return e, e.ListenAddrs("outside")["UDP"]
}

// udpPeer is a SIP phone reduced to a UDP socket.
type udpPeer struct {
	t *testing.T
	c *net.UDPConn
}

func newUDPPeer(t *testing.T) *udpPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &udpPeer{t: t, c: c}
}

func (p *udpPeer) addr() string { return p.c.LocalAddr().String() }

// send writes raw (LOCAL replaced by our address) to addr.
func (p *udpPeer) send(addr, raw string) {
	p.t.Helper()
	dst, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.c.WriteToUDP([]byte(strings.ReplaceAll(raw, "LOCAL", p.addr())), dst); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next message that arrives within wait, or nil.
func (p *udpPeer) next(wait time.Duration) (sip.Message, string) {
	p.t.Helper()
	buf := make([]byte, 65535)
	_ = p.c.SetReadDeadline(time.Now().Add(wait))
	n, from, err := p.c.ReadFromUDP(buf)
	if err != nil {
		return nil, ""
	}
	m, err := sip.NewParser().ParseSIP(buf[:n])
	if err != nil {
		p.t.Fatalf("unparsable datagram: %v", err)
	}
	return m, from.String()
}

// expect returns the next message, which must start with want (skipping
// any 100 Trying unless want is one).
func (p *udpPeer) expect(want string) (sip.Message, string) {
	p.t.Helper()
	for range 10 {
		m, from := p.next(2 * time.Second)
		if m == nil {
			p.t.Fatalf("%s: nothing within 2 s, want %q", p.addr(), want)
		}
		line := startLine(m)
		if strings.HasPrefix(line, "SIP/2.0 100 ") && !strings.HasPrefix(want, "SIP/2.0 100") {
			continue
		}
		if !strings.HasPrefix(line, want) {
			p.t.Fatalf("%s: got %q, want %q", p.addr(), line, want)
		}
		return m, from
	}
	p.t.Fatalf("%s: only 100 Trying, want %q", p.addr(), want)
	return nil, ""
}

// count reads for d and counts the messages starting with want.
func (p *udpPeer) count(d time.Duration, want string) int {
	p.t.Helper()
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		m, _ := p.next(time.Until(end))
		if m == nil {
			break
		}
		if strings.HasPrefix(startLine(m), want) {
			n++
		}
	}
	return n
}

func callerInvite(callID string) string {
	return "INVITE sip:+12025550100@example.net SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-" + callID + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:+12025550199@trunk.example>;tag=caller\r\n" +
		"To: <sip:+12025550100@example.net>\r\nCall-ID: " + callID + "\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:caller@LOCAL>\r\nContent-Length: 0\r\n\r\n"
}

// answer builds the callee's response to req.
func answer(req sip.Message, code int, reason string) string {
	res := sip.NewResponseFromRequest(req.(*sip.Request), code, reason, nil)
	if code > 100 {
		res.To().Params.Add("tag", "callee")
	}
	return res.String()
}

// TestUDPServerTxRetransmitsFinalUntilAck: a call refused by a stage gets
// its final response again at T1, 2*T1... (timer G) until the caller's
// ACK, which is absorbed, not forwarded; a retransmitted INVITE gets the
// final again, not a second pipeline run.
func TestUDPServerTxRetransmitsFinalUntilAck(t *testing.T) {
	callee, caller := newUDPPeer(t), newUDPPeer(t)
	runs := 0
	reject := HandlerFunc{StageName: "dnc", Fn: func(context.Context, *Call) error { runs++; return Reject(603, "Decline", nil) }}
	e, addr := udpEdge(t, callee, Chains{Outside: Chain{reject}})
	caller.send(addr, callerInvite("g-1"))
	first, _ := caller.expect("SIP/2.0 603 ")
	// No ACK: the 603 comes again (timer G, doubling from T1).
	if n := caller.count(8*testT1, "SIP/2.0 603 "); n < 2 {
		t.Fatalf("%d retransmissions of the 603 within 8*T1 without an ACK, want at least 2", n)
	}
	caller.send(addr, callerInvite("g-1")) // the INVITE again: the 603 again
	caller.expect("SIP/2.0 603 ")
	caller.send(addr, ackOf(callerInvite("g-1"), first))
	time.Sleep(testT1 / 4)
	if n := e.udpTx.servers[outside].len(); n == 0 {
		t.Errorf("the INVITE transaction is gone right after its ACK, want it to absorb ACKs for T4")
	}
	time.Sleep(2 * testT1) // a retransmission already on its way may still land
	if n := caller.count(16*testT1, "SIP/2.0 603 "); n != 0 {
		t.Errorf("%d retransmissions of the 603 after the ACK, want 0", n)
	}
	if m, _ := callee.next(50 * time.Millisecond); m != nil {
		t.Errorf("the callee got %q: a refused call's ACK is hop by hop", startLine(m))
	}
	if runs != 1 {
		t.Errorf("the pipeline ran %d times for one INVITE and its retransmission", runs)
	}
}

// TestUDPClientTxInvite: a forwarded INVITE is retransmitted (timer A)
// until the callee answers; a non-2xx final is ACKed by stirgate on the
// INVITE's branch (hop by hop) and relayed once, its retransmission ACKed
// again and not relayed.
func TestUDPClientTxInvite(t *testing.T) {
	callee, caller := newUDPPeer(t), newUDPPeer(t)
	_, addr := udpEdge(t, callee, Chains{})
	caller.send(addr, callerInvite("a-1"))
	caller.expect("SIP/2.0 100 ")
	inv, edgeAddr := callee.expect("INVITE ")
	if n := callee.count(5*testT1, "INVITE "); n < 2 {
		t.Fatalf("%d INVITE retransmissions within 5*T1 of silence, want at least 2 (timer A)", n)
	}
	callee.send(edgeAddr, answer(inv, 486, "Busy Here"))
	ack, _ := callee.expect("ACK ")
	if got, want := branchOf(ack), branchOf(inv); got != want {
		t.Errorf("ACK of the 486 on branch %s, want the INVITE's %s", got, want)
	}
	busy, _ := caller.expect("SIP/2.0 486 ")
	caller.send(addr, ackOf(callerInvite("a-1"), busy))
	callee.send(edgeAddr, answer(inv, 486, "Busy Here")) // the 486 again: ACK again
	callee.expect("ACK ")
	if n := caller.count(100*time.Millisecond, "SIP/2.0 486 "); n != 0 {
		t.Errorf("the retransmitted 486 reached the caller %d times, want 0", n)
	}
}

// TestUDPClientTxTimeout: a callee that never answers gets the INVITE
// until timer B (64*T1); the caller gets 408 and the transaction is gone.
func TestUDPClientTxTimeout(t *testing.T) {
	callee, caller := newUDPPeer(t), newUDPPeer(t)
	e, addr := udpEdge(t, callee, Chains{})
	caller.send(addr, callerInvite("b-1"))
	caller.expect("SIP/2.0 100 ")
	start := time.Now()
	caller.expect("SIP/2.0 408 ")
	if took := time.Since(start); took < 60*testT1 {
		t.Errorf("408 after %v, want timer B (64*T1 = %v)", took, 64*testT1)
	}
	if n := e.udpTx.clients.len(); n != 0 {
		t.Errorf("%d client transactions left after timer B", n)
	}
}

// TestUDPCancel: a CANCEL of a ringing call gets 200 (and again 200 when
// it is retransmitted), the caller 487, and the callee its own CANCEL.
func TestUDPCancel(t *testing.T) {
	callee, caller := newUDPPeer(t), newUDPPeer(t)
	_, addr := udpEdge(t, callee, Chains{})
	caller.send(addr, callerInvite("c-1"))
	inv, edgeAddr := callee.expect("INVITE ")
	callee.send(edgeAddr, answer(inv, 180, "Ringing"))
	caller.expect("SIP/2.0 180 ")
	cancel := sendCancel(t, caller, addr, "c-1")
	caller.send(addr, cancel)
	if m, _ := caller.expect("SIP/2.0 200 "); m.(*sip.Response).CSeq().MethodName != sip.CANCEL {
		t.Errorf("retransmitted CANCEL answered %q", startLine(m))
	}
	c, _ := callee.expect("CANCEL ")
	if branchOf(c) != branchOf(inv) {
		t.Errorf("the callee's CANCEL is not on the INVITE's branch")
	}
}

// TestUDP2xxRetransmissionRelayed: a 2xx the callee sends again (its ACK
// lost) reaches the caller again (RFC 6026), and a retransmitted INVITE
// after the 2xx is absorbed.
func TestUDP2xxRetransmissionRelayed(t *testing.T) {
	callee, caller := newUDPPeer(t), newUDPPeer(t)
	_, addr := udpEdge(t, callee, Chains{})
	caller.send(addr, callerInvite("m-1"))
	inv, edgeAddr := callee.expect("INVITE ")
	callee.send(edgeAddr, answer(inv, 200, "OK"))
	caller.expect("SIP/2.0 200 ")
	callee.send(edgeAddr, answer(inv, 200, "OK"))
	caller.expect("SIP/2.0 200 ")
	caller.send(addr, callerInvite("m-1"))
	if m, _ := caller.next(100 * time.Millisecond); m != nil {
		t.Errorf("a retransmitted INVITE after the 2xx got %q, want nothing", startLine(m))
	}
	if m, _ := callee.next(50 * time.Millisecond); m != nil {
		t.Errorf("a retransmitted INVITE after the 2xx reached the callee: %q", startLine(m))
	}
}

func startLine(m sip.Message) string { return firstLine(m.String()) }

func branchOf(m sip.Message) string {
	b, _ := m.Via().Params.Get("branch")
	return b
}

// ackOf is the caller's ACK of a non-2xx final res to the INVITE raw.
func ackOf(raw string, res sip.Message) string {
	return strings.NewReplacer("INVITE sip", "ACK sip", "CSeq: 1 INVITE", "CSeq: 1 ACK",
		"To: <sip:+12025550100@example.net>", "To: "+res.(*sip.Response).To().Value()).Replace(raw)
}

// TestUDPCancelDuringPipeline: a CANCEL that arrives while the INVITE is
// still in its pipeline (a slow stage) gets 200, the INVITE 487, and the
// INVITE is never forwarded: the callee does not ring.
func TestUDPCancelDuringPipeline(t *testing.T) {
	callee, caller := newUDPPeer(t), newUDPPeer(t)
	release := make(chan struct{})
	slow := HandlerFunc{StageName: "slow", Fn: func(context.Context, *Call) error { <-release; return nil }}
	var recs []CallRecord
	var mu sync.Mutex
	_, addr := udpEdge(t, callee, Chains{Outside: Chain{slow}}, func(r CallRecord) { mu.Lock(); recs = append(recs, r); mu.Unlock() })
	caller.send(addr, callerInvite("p-1"))
	caller.expect("SIP/2.0 100 ")
	sendCancel(t, caller, addr, "p-1")
	close(release)
	if m, _ := callee.next(200 * time.Millisecond); m != nil {
		t.Fatalf("the callee got %q for a call cancelled in its pipeline", startLine(m))
	}
	if !waitFor(func() bool { mu.Lock(); defer mu.Unlock(); return len(recs) == 1 }) {
		t.Fatal("no call record")
	}
	mu.Lock()
	defer mu.Unlock()
	if recs[0].Status != 487 {
		t.Errorf("call record status %d, want 487", recs[0].Status)
	}
}

// sendCancel sends the CANCEL of callerInvite(callID) and requires a 200
// for it and a 487 for the INVITE; it returns the CANCEL.
func sendCancel(t *testing.T, caller *udpPeer, addr, callID string) string {
	t.Helper()
	cancel := strings.NewReplacer("INVITE sip", "CANCEL sip", "CSeq: 1 INVITE", "CSeq: 1 CANCEL").Replace(callerInvite(callID))
	caller.send(addr, cancel)
	got := map[string]int{}
	for range 2 {
		m, _ := caller.expect("SIP/2.0 ")
		got[startLine(m)[:11]+" "+string(m.(*sip.Response).CSeq().MethodName)]++
	}
	if got["SIP/2.0 200 CANCEL"] != 1 || got["SIP/2.0 487 INVITE"] != 1 {
		t.Fatalf("caller got %v, want a 200 for the CANCEL and a 487 for the INVITE", got)
	}
	return cancel
}

// len counts the transactions in t (tests only: it locks every shard).
func (t *txMap[T]) len() int {
	n := 0
	for i := range t.shards {
		t.shards[i].Lock()
		n += len(t.shards[i].m)
		t.shards[i].Unlock()
	}
	return n
}
