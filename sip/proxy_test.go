package sip

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testConfig is a config on loopback port 0: sockets are bound but no test
// traffic crosses them; forwarding goes to siptest recorders.
func testConfig() Config {
	realm := func(nextHop string) RealmConfig {
		return RealmConfig{
			Listen:  []ListenConfig{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "tcp", Addr: "127.0.0.1:0"}},
			NextHop: nextHop,
			Trusted: []string{"127.0.0.0/8"},
		}
	}
	return Config{Realms: Realms{
		Inside:  realm("sip:127.0.0.1:15090"),
		Outside: realm("sip:127.0.0.1:15100;transport=udp"),
	}}
}

// downstream answers forwarded requests like a callee would and records them.
type downstream struct {
	mu       sync.Mutex
	requests []*sip.Request
	answer   func(req *sip.Request) *sip.Response
	// script, when set, drives the client transaction instead of answer.
	script func(req *sip.Request, tx *sip.ClientTx)
}

func (d *downstream) Request(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	d.mu.Lock()
	d.requests = append(d.requests, req)
	d.mu.Unlock()
	key, err := sip.ClientTxKeyMake(req)
	if err != nil {
		return nil, err
	}
	tx := sip.NewClientTx(key, req, nopConn{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := tx.Init(); err != nil {
		return nil, err
	}
	if d.script != nil {
		go d.script(req, tx)
		return tx, nil
	}
	if d.answer != nil {
		if res := d.answer(req); res != nil {
			go tx.Receive(res)
		}
	}
	return tx, nil
}

func (d *downstream) sent() []*sip.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*sip.Request(nil), d.requests...)
}

// nopConn is the downstream connection of a recorded client transaction.
type nopConn struct{}

func (nopConn) LocalAddr() net.Addr        { return nil }
func (nopConn) WriteMsg(sip.Message) error { return nil }
func (nopConn) Ref(int) int                { return 1 }
func (nopConn) TryClose() (int, error)     { return 0, nil }
func (nopConn) Close() error               { return nil }

func newTestEdge(t testing.TB, cfg Config, chains Chains) (*Edge, *downstream) {
	t.Helper()
	return newTestEdgeWith(t, cfg, chains, Options{})
}

// newTestEdgeWith is newTestEdge with opt (a nil Logger discards).
func newTestEdgeWith(t testing.TB, cfg Config, chains Chains, opt Options) (*Edge, *downstream) {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e, err := New(cfg, chains, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	e.serving.Store(true)
	d := &downstream{answer: func(req *sip.Request) *sip.Response {
		if req.Method == sip.ACK {
			return nil
		}
		return sip.NewResponseFromRequest(req, 200, "OK", nil)
	}}
	for _, r := range e.realms {
		r.client.TxRequester = d
	}
	e.request = func(ctx context.Context, _ *realm, req *sip.Request) (clientTx, error) { return d.Request(ctx, req) }
	e.send = func(_ *realm, req *sip.Request) error { _, err := d.Request(context.Background(), req); return err }
	return e, d
}

const testInvite = "INVITE sip:+1-202-555-0100@127.0.0.1:5070 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-test-1\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: <sip:+12025550199@pbx.example>;tag=abc\r\n" +
	"To: <sip:+12025550100@example.net>\r\n" +
	"Call-ID: call-1@test\r\n" +
	"CSeq: 1 INVITE\r\n" +
	"Contact: <sip:alice@127.0.0.1:5090>\r\n" +
	"Content-Length: 0\r\n\r\n"

func parseReq(t *testing.T, raw, source string) *sip.Request {
	t.Helper()
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	req := msg.(*sip.Request)
	req.SetSource(source)
	req.SetTransport("UDP")
	return req
}

// run hands req to realm idx and returns what went upstream and downstream.
func run(t *testing.T, e *Edge, d *downstream, idx int, req *sip.Request) ([]*sip.Response, []*sip.Request) {
	t.Helper()
	tx := siptest.NewServerTxRecorder(req)
	e.serve(e.realms[idx], req, tx)
	return tx.Result(), d.sent()
}

func finalOf(res []*sip.Response) *sip.Response {
	for _, r := range res {
		if r.StatusCode >= 200 {
			return r
		}
	}
	return nil
}

func TestEdgeRefusesBeforeForwarding(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		source   string
		draining bool
		want     int
		reason   string
	}{
		{"untrusted source", testInvite, "192.0.2.7:5060", false, 403, "not trusted"},
		{"max-forwards 0", strings.Replace(testInvite, "Max-Forwards: 70", "Max-Forwards: 0", 1), "127.0.0.1:5090", false, 483, "Max-Forwards"},
		{"draining", testInvite, "127.0.0.1:5090", true, 503, "draining"},
		{"cseq method mismatch", strings.Replace(testInvite, "CSeq: 1 INVITE", "CSeq: 1 BYE", 1), "127.0.0.1:5090", false, 400, "CSeq"},
		{"sip version", strings.Replace(testInvite, "@127.0.0.1:5070 SIP/2.0", "@127.0.0.1:5070 SIP/7.0", 1), "127.0.0.1:5090", false, 505, ""},
		{"uri scheme", strings.Replace(testInvite, "INVITE sip:+1-202-555-0100@127.0.0.1:5070", "INVITE im:user@example.com", 1), "127.0.0.1:5090", false, 416, ""},
		{"proxy-require", strings.Replace(testInvite, "Content-Length: 0", "Proxy-Require: nothingweknow\r\nContent-Length: 0", 1), "127.0.0.1:5090", false, 420, ""},
		{"stray cancel", strings.NewReplacer("INVITE sip", "CANCEL sip", "CSeq: 1 INVITE", "CSeq: 1 CANCEL").Replace(testInvite), "127.0.0.1:5090", false, 481, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, d := newTestEdge(t, testConfig(), Chains{})
			e.draining.Store(tt.draining)
			up, down := run(t, e, d, inside, parseReq(t, tt.raw, tt.source))
			if len(down) != 0 {
				t.Fatalf("forwarded %d requests, want none", len(down))
			}
			f := finalOf(up)
			if f == nil || f.StatusCode != tt.want {
				t.Fatalf("final = %v, want %d", f, tt.want)
			}
			if tt.reason != "" {
				if r := f.GetHeader("Reason"); r == nil || !strings.Contains(r.Value(), tt.reason) {
					t.Errorf("Reason = %v, want it to mention %q", r, tt.reason)
				}
			}
		})
	}
}

func TestEdgeLoopDetected(t *testing.T) {
	e, d := newTestEdge(t, testConfig(), Chains{})
	ours := e.ListenAddrs("outside")["UDP"]
	raw := strings.Replace(testInvite, "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-test-1\r\n",
		"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-test-1\r\nVia: SIP/2.0/UDP "+ours+";branch=z9hG4bK-old\r\n", 1)
	up, down := run(t, e, d, inside, parseReq(t, raw, "127.0.0.1:5090"))
	if f := finalOf(up); f == nil || f.StatusCode != 482 || len(down) != 0 {
		t.Fatalf("final = %v, forwarded %d; want 482 and nothing forwarded", f, len(down))
	}
}

func TestEdgeForwardsInitialInvite(t *testing.T) {
	e, d := newTestEdge(t, testConfig(), Chains{})
	up, down := run(t, e, d, inside, parseReq(t, testInvite, "127.0.0.1:5090"))
	if len(down) != 1 {
		t.Fatalf("forwarded %d requests, want 1", len(down))
	}
	fwd := down[0]
	outUDP := e.realms[outside].ep["UDP"]
	inUDP := e.realms[inside].ep["UDP"]

	if got, want := fwd.Destination(), "127.0.0.1:15100"; got != want {
		t.Errorf("destination = %s, want the outside next hop %s", got, want)
	}
	if fwd.Laddr.Port != outUDP.port {
		t.Errorf("leaves from port %d, want the outside listener %d", fwd.Laddr.Port, outUDP.port)
	}
	via := fwd.Via()
	if via.Host != outUDP.host || via.Port != outUDP.port || !strings.HasPrefix(via.Params.GetOr("branch", ""), "z9hG4bK") {
		t.Errorf("top Via = %s, want ours on the outside listener", via.Value())
	}
	if n := len(fwd.GetHeaders("Via")); n != 2 {
		t.Errorf("%d Via headers, want 2", n)
	}
	if mf := fwd.MaxForwards(); mf == nil || mf.Val() != 69 {
		t.Errorf("Max-Forwards = %v, want 69", mf)
	}
	rrs := fwd.GetHeaders("Record-Route")
	if len(rrs) != 2 {
		t.Fatalf("%d Record-Route headers, want 2 (double record-route)", len(rrs))
	}
	if rr := rrs[0].(*sip.RecordRouteHeader); rr.Address.Port != outUDP.port {
		t.Errorf("first Record-Route %s, want the outside address", rr.Value())
	}
	if rr := rrs[1].(*sip.RecordRouteHeader); rr.Address.Port != inUDP.port || !rr.Address.UriParams.Has("lr") {
		t.Errorf("second Record-Route %s, want the inside address with lr", rr.Value())
	}

	if len(up) < 2 || up[0].StatusCode != 100 {
		t.Fatalf("upstream got %v, want 100 then 200", up)
	}
	final := finalOf(up)
	if final == nil || final.StatusCode != 200 {
		t.Fatalf("final = %v, want 200", final)
	}
	if v := final.Via(); v == nil || v.Port != 5090 || len(final.GetHeaders("Via")) != 1 {
		t.Errorf("relayed 200 Via = %v, want only the caller's", final.GetHeaders("Via"))
	}
	if e.dialogs.count() != 1 {
		t.Errorf("dialogs = %d, want 1 after a 2xx", e.dialogs.count())
	}
}

func TestEdgeRelaysFinalStatus(t *testing.T) {
	for _, code := range []int{486, 404, 503, 607} {
		e, d := newTestEdge(t, testConfig(), Chains{})
		d.answer = func(req *sip.Request) *sip.Response { return sip.NewResponseFromRequest(req, code, "X", nil) }
		up, _ := run(t, e, d, outside, parseReq(t, testInvite, "127.0.0.1:15100"))
		if f := finalOf(up); f == nil || f.StatusCode != code {
			t.Errorf("final = %v, want %d relayed", f, code)
		}
	}
}

func TestEdgePipelineRejects(t *testing.T) {
	var seen *Call
	chains := Chains{Outside: Chain{
		HandlerFunc{"seen", func(_ context.Context, c *Call) error { seen = c; return nil }},
		HandlerFunc{"dnc", func(context.Context, *Call) error { return Reject(603, "Decline", errors.New("callee on DNC list")) }},
		HandlerFunc{"never", func(context.Context, *Call) error { t.Error("stage after a rejection ran"); return nil }},
	}}
	e, d := newTestEdge(t, testConfig(), chains)
	up, down := run(t, e, d, outside, parseReq(t, testInvite, "127.0.0.1:15100"))
	if len(down) != 0 {
		t.Fatal("a rejected call was forwarded")
	}
	f := finalOf(up)
	if f == nil || f.StatusCode != 603 {
		t.Fatalf("final = %v, want 603", f)
	}
	if r := f.GetHeader("Reason"); r == nil || !strings.Contains(r.Value(), "cause=603") || !strings.Contains(r.Value(), "dnc: callee on DNC list") {
		t.Errorf("Reason = %v", r)
	}
	if seen == nil || seen.Orig != "12025550199" || seen.Dest != "12025550100" || seen.Dir != Inbound || seen.Realm != "outside" {
		t.Errorf("call seen by stages = %+v", seen)
	}
}

func TestEdgeAppliesStageOutputsSafely(t *testing.T) {
	tests := []struct {
		name     string
		tag      string
		wantCode int
	}{
		{"tag added", "spam", 200},
		{"CRLF refused", "x\r\nInjected: yes", 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chains := Chains{Inside: Chain{HandlerFunc{"tagger", func(_ context.Context, c *Call) error {
				c.Tag("X-Label", tt.tag)
				c.AddIdentity = "a.b.c;info=<https://cr.example/sp.pem>;alg=ES256;ppt=shaken"
				return nil
			}}}}
			e, d := newTestEdge(t, testConfig(), chains)
			req := parseReq(t, strings.Replace(testInvite, "Content-Length: 0", "Identity: forged\r\nContent-Length: 0", 1), "127.0.0.1:5090")
			up, down := run(t, e, d, inside, req)
			if f := finalOf(up); f == nil || f.StatusCode != tt.wantCode {
				t.Fatalf("final = %v, want %d", f, tt.wantCode)
			}
			if tt.wantCode != 200 {
				if len(down) != 0 {
					t.Fatal("forwarded a request with an unsafe header")
				}
				return
			}
			ids := headerValues(down[0], "Identity")
			if len(ids) != 1 || !strings.HasPrefix(ids[0], "a.b.c;") {
				t.Errorf("Identity headers = %q, want only ours", ids)
			}
			if h := down[0].GetHeader("X-Label"); h == nil || h.Value() != "spam" {
				t.Errorf("X-Label = %v", h)
			}
		})
	}
}

func TestEdgeUDPSizePolicy(t *testing.T) {
	pad := "X-Pad: " + strings.Repeat("p", 1800) + "\r\n"
	big := strings.Replace(testInvite, "Content-Length: 0", pad+"Content-Length: 0", 1)
	tests := []struct {
		oversize  string
		wantCode  int
		transport string
	}{
		{"tcp", 200, "TCP"},
		{"reject", 513, ""},
	}
	for _, tt := range tests {
		t.Run(tt.oversize, func(t *testing.T) {
			cfg := testConfig()
			cfg.Realms.Outside.UDP = UDPConfig{MaxSize: 1300, Oversize: tt.oversize}
			e, d := newTestEdge(t, cfg, Chains{})
			up, down := run(t, e, d, inside, parseReq(t, big, "127.0.0.1:5090"))
			if f := finalOf(up); f == nil || f.StatusCode != tt.wantCode {
				t.Fatalf("final = %v, want %d", f, tt.wantCode)
			}
			if tt.transport != "" && (len(down) != 1 || down[0].Transport() != tt.transport || down[0].Via().Transport != tt.transport) {
				t.Fatalf("forwarded %v, want one request over %s", down, tt.transport)
			}
		})
	}
}

func TestEdgeRoutesInDialogByRoute(t *testing.T) {
	e, d := newTestEdge(t, testConfig(), Chains{})
	in, out := e.ListenAddrs("inside")["UDP"], e.ListenAddrs("outside")["UDP"]
	bye := "BYE sip:callee@127.0.0.1:15555 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-bye-1\r\n" +
		"Route: <sip:" + in + ";transport=udp;lr>\r\n" +
		"Route: <sip:" + out + ";transport=udp;lr>\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:+12025550199@pbx.example>;tag=abc\r\n" +
		"To: <sip:+12025550100@example.net>;tag=xyz\r\n" +
		"Call-ID: call-1@test\r\n" +
		"CSeq: 2 BYE\r\n" +
		"Content-Length: 0\r\n\r\n"
	e.dialogs.add("call-1@test", inviteID{fromTag: "tag", seq: 1, branch: "z9hG4bK-1"}, nil)
	up, down := run(t, e, d, inside, parseReq(t, bye, "127.0.0.1:5090"))
	if len(down) != 1 {
		t.Fatalf("forwarded %d, want 1", len(down))
	}
	if got := down[0].Destination(); got != "127.0.0.1:15555" {
		t.Errorf("BYE sent to %s, want the Request-URI 127.0.0.1:15555", got)
	}
	if r := down[0].GetHeaders("Route"); len(r) != 0 {
		t.Errorf("our Route entries left in the BYE: %v", r)
	}
	if len(down[0].GetHeaders("Record-Route")) != 0 {
		t.Error("in-dialog request was record-routed")
	}
	if f := finalOf(up); f == nil || f.StatusCode != 200 {
		t.Fatalf("final = %v", f)
	}
	if e.dialogs.count() != 0 {
		t.Error("dialog still counted after BYE 200")
	}
}

func TestEdgeAnswersOptions(t *testing.T) {
	e, d := newTestEdge(t, testConfig(), Chains{})
	addr := e.ListenAddrs("outside")["UDP"]
	opt := "OPTIONS sip:" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:15100;branch=z9hG4bK-opt-1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:trunk@127.0.0.1>;tag=1\r\nTo: <sip:" + addr + ">\r\n" +
		"Call-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	up, down := run(t, e, d, outside, parseReq(t, opt, "127.0.0.1:15100"))
	if f := finalOf(up); f == nil || f.StatusCode != 200 || len(down) != 0 {
		t.Fatalf("final = %v, forwarded %d; want a local 200", f, len(down))
	}
}

func TestEdgeDownstreamTimeout(t *testing.T) {
	old := sip.Timer_B
	sip.Timer_B = 50 * time.Millisecond
	defer func() { sip.Timer_B = old }()
	e, d := newTestEdge(t, testConfig(), Chains{})
	d.answer = func(*sip.Request) *sip.Response { return nil }
	up, _ := run(t, e, d, inside, parseReq(t, testInvite, "127.0.0.1:5090"))
	if f := finalOf(up); f == nil || f.StatusCode != 408 {
		t.Fatalf("final = %v, want 408", f)
	}
}

func methods(reqs []*sip.Request) string {
	var m []string
	for _, r := range reqs {
		m = append(m, string(r.Method))
	}
	return strings.Join(m, ",")
}

// waitFor polls cond for up to 2 s (bounded) and reports whether it held.
func waitFor(cond func() bool) bool {
	for i := 0; i < 200; i++ {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func TestEdgeCancel(t *testing.T) {
	tests := []struct {
		name     string
		late2xx  bool   // the callee answers 200 after the CANCEL
		wantDown string // methods seen downstream
	}{
		{"callee answers 487", false, "INVITE,CANCEL"},
		{"2xx races the CANCEL", true, "INVITE,CANCEL,ACK,BYE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fin := &finisher{}
			e, d := newTestEdge(t, testConfig(), Chains{Inside: Chain{fin}})
			cancelled := make(chan struct{})
			d.script = func(req *sip.Request, tx *sip.ClientTx) {
				switch req.Method {
				case sip.INVITE:
					tx.Receive(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
					select {
					case <-cancelled:
					case <-time.After(2 * time.Second):
						return
					}
					code := 487
					if tt.late2xx {
						code = 200
					}
					res := sip.NewResponseFromRequest(req, code, "X", nil)
					res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 15666}})
					tx.Receive(res)
				case sip.CANCEL:
					tx.Receive(sip.NewResponseFromRequest(req, 200, "OK", nil))
					close(cancelled)
				case sip.BYE:
					tx.Receive(sip.NewResponseFromRequest(req, 200, "OK", nil))
				}
			}
			req := parseReq(t, testInvite, "127.0.0.1:5090")
			stx := siptest.NewServerTxRecorder(req)
			done := make(chan struct{})
			go func() { e.serve(e.realms[inside], req, stx); close(done) }()
			if !waitFor(func() bool { return len(stx.Result()) >= 2 }) {
				t.Fatalf("upstream got %v, want 100 and 180", stx.Result())
			}
			cancel := sip.NewRequest(sip.CANCEL, req.Recipient)
			for _, h := range []string{"Via", "From", "To", "Call-ID"} {
				cancel.AppendHeader(sip.HeaderClone(req.GetHeader(h)))
			}
			cancel.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.CANCEL})
			if err := stx.Receive(cancel); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				t.Fatal("handler did not return after the CANCEL")
			}
			if f := finalOf(stx.Result()); f == nil || f.StatusCode != 487 {
				t.Fatalf("upstream final = %v, want 487", f)
			}
			if !waitFor(func() bool { return methods(d.sent()) == tt.wantDown }) {
				t.Fatalf("downstream saw %s, want %s", methods(d.sent()), tt.wantDown)
			}
			// The chain's Finisher learns how the call ended: rang, then cancelled.
			rec, n := fin.last()
			if n != 1 || rec.Status != 487 || rec.RingAfter <= 0 || rec.CancelAfter < rec.RingAfter {
				t.Errorf("finisher got %d records, last %+v; want one 487 that rang, then was cancelled", n, rec)
			}
			if tt.late2xx {
				bye := d.sent()[3]
				if bye.Destination() != "127.0.0.1:15666" || bye.CSeq().SeqNo != 2 {
					t.Errorf("BYE to %s CSeq %d, want the callee's Contact and CSeq 2", bye.Destination(), bye.CSeq().SeqNo)
				}
			}
			// sipgo answered the CANCEL 200 upstream: the responses metric
			// (relayed or our own) counts it next to the 487.
			for status, want := range map[string]float64{"200": 1} {
				if got := testutil.ToFloat64(e.m.responses.WithLabelValues("inside", "CANCEL", status)); got != want {
					t.Errorf("responses{method=CANCEL,status=%s} = %v, want %v", status, got, want)
				}
			}
			if got := testutil.ToFloat64(e.m.responses.WithLabelValues("inside", "INVITE", "487")); got != 1 {
				t.Errorf("responses{method=INVITE,status=487} = %v, want 1", got)
			}
			// Requests stirgate originates name it in User-Agent.
			for _, r := range d.sent()[1:] {
				if h := r.GetHeader("User-Agent"); h == nil || h.Value() != "stirgate" {
					t.Errorf("%s sent downstream with User-Agent %v, want stirgate (sip.user_agent)", r.Method, h)
				}
			}
		})
	}
}

// finisher is a pass-through stage that keeps the records it is told.
type finisher struct {
	mu   sync.Mutex
	recs []CallRecord
}

func (*finisher) Name() string                            { return "finisher" }
func (*finisher) HandleCall(context.Context, *Call) error { return nil }
func (f *finisher) CallEnded(rec CallRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recs = append(f.recs, rec)
}

func (f *finisher) last() (CallRecord, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.recs) == 0 {
		return CallRecord{}, 0
	}
	return f.recs[len(f.recs)-1], len(f.recs)
}

func TestEdgeTimerC(t *testing.T) {
	cfg := testConfig()
	cfg.InviteTimeout = time.Second
	e, d := newTestEdge(t, cfg, Chains{})
	d.script = func(req *sip.Request, tx *sip.ClientTx) {
		switch req.Method {
		case sip.INVITE:
			tx.Receive(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		case sip.CANCEL:
			tx.Receive(sip.NewResponseFromRequest(req, 200, "OK", nil))
		}
	}
	req := parseReq(t, testInvite, "127.0.0.1:5090")
	stx := siptest.NewServerTxRecorder(req)
	go e.serve(e.realms[inside], req, stx)
	if !waitFor(func() bool { f := finalOf(stx.Result()); return f != nil }) {
		t.Fatal("no final response upstream after timer C")
	}
	if f := finalOf(stx.Result()); f.StatusCode != 408 {
		t.Fatalf("final = %d, want 408", f.StatusCode)
	}
	if !waitFor(func() bool { return methods(d.sent()) == "INVITE,CANCEL" }) {
		t.Fatalf("downstream saw %s, want INVITE,CANCEL", methods(d.sent()))
	}
}

func TestEdgeAbsorbsAckOfNon2xx(t *testing.T) {
	e, d := newTestEdge(t, testConfig(), Chains{})
	d.answer = func(req *sip.Request) *sip.Response {
		if req.Method == sip.ACK {
			return nil
		}
		return sip.NewResponseFromRequest(req, 486, "Busy Here", nil)
	}
	inv := parseReq(t, testInvite, "127.0.0.1:5090")
	inv.SetTransport("TCP")
	run(t, e, d, inside, inv)
	ack := func(branch string) *sip.Request {
		raw := strings.NewReplacer("INVITE sip", "ACK sip", "CSeq: 1 INVITE", "CSeq: 1 ACK",
			"To: <sip:+12025550100@example.net>", "To: <sip:+12025550100@example.net>;tag=callee",
			"z9hG4bK-test-1", branch).Replace(testInvite)
		r := parseReq(t, raw, "127.0.0.1:5090")
		r.SetTransport("TCP")
		return r
	}
	e.serve(e.realms[inside], ack("z9hG4bK-test-1"), nil)
	if got := methods(d.sent()); got != "INVITE" {
		t.Fatalf("downstream saw %s: the ACK of the 486 was forwarded", got)
	}
	e.serve(e.realms[inside], ack("z9hG4bK-other"), nil)
	if got := methods(d.sent()); got != "INVITE,ACK" {
		t.Fatalf("downstream saw %s: an ACK for a 2xx (new branch) must be forwarded", got)
	}
}

func TestEdgeRetargetsAndMarksVia(t *testing.T) {
	e, d := newTestEdge(t, testConfig(), Chains{})
	ours := e.ListenAddrs("inside")["UDP"]
	raw := strings.NewReplacer(
		"INVITE sip:+1-202-555-0100@127.0.0.1:5070", "INVITE sip:+12025550100@"+ours,
		"127.0.0.1:5090;branch=z9hG4bK-test-1", "10.9.9.9:5090;rport;branch=z9hG4bK-test-1",
	).Replace(testInvite)
	_, down := run(t, e, d, inside, parseReq(t, raw, "127.0.0.1:40000"))
	if len(down) != 1 {
		t.Fatalf("forwarded %d", len(down))
	}
	if got := down[0].Recipient.String(); got != "sip:+12025550100@127.0.0.1:15100" {
		t.Errorf("Request-URI = %s, want it retargeted to the outside next hop", got)
	}
	up := down[0].GetHeaders("Via")[1].(*sip.ViaHeader)
	if up.Params.GetOr("rport", "") != "40000" || up.Params.GetOr("received", "") != "127.0.0.1" {
		t.Errorf("upstream Via = %s, want rport=40000;received=127.0.0.1", up.Value())
	}
}

// TestPipelineContextLivesWithTheTransaction: a stage's context is live
// while the stage runs (sipgo v1.7.3's ServerTransactionContext is done at
// once) and ends when the server transaction ends, e.g. the caller's
// transaction terminates while a stage waits. Each case counts that its
// stage ran: a chain that never runs must not pass.
func TestPipelineContextLivesWithTheTransaction(t *testing.T) {
	for _, tt := range []struct {
		name       string
		terminate  bool // the stage terminates the server transaction first
		wantCtxErr error
	}{
		{"live while the stage runs", false, nil},
		{"done once the transaction ended", true, context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := parseReq(t, testInvite, "127.0.0.1:5090")
			tx := siptest.NewServerTxRecorder(req)
			ran := 0
			var ctxErr error
			chains := Chains{Inside: Chain{HandlerFunc{"probe", func(ctx context.Context, _ *Call) error {
				ran++
				if tt.terminate {
					tx.Terminate() // runs OnTerminate synchronously
				}
				ctxErr = ctx.Err()
				return nil
			}}}}
			e, _ := newTestEdge(t, testConfig(), chains)
			e.serve(e.realms[inside], req, tx)
			if ran != 1 {
				t.Fatalf("the stage ran %d times, want 1", ran)
			}
			if !errors.Is(ctxErr, tt.wantCtxErr) {
				t.Fatalf("stage context error = %v, want %v", ctxErr, tt.wantCtxErr)
			}
		})
	}
}

func TestEdgeAddsResponseReasonUpstream(t *testing.T) {
	chains := Chains{Outside: Chain{HandlerFunc{"verify", func(_ context.Context, c *Call) error {
		c.Verstat = VerstatFailed
		c.ResponseReason = `STIR;cause=438;text="Invalid Identity Header: bad signature"`
		return nil
	}}}}
	e, d := newTestEdge(t, testConfig(), chains)
	up, down := run(t, e, d, outside, parseReq(t, testInvite, "127.0.0.1:15100"))
	f := finalOf(up)
	if f == nil || f.StatusCode != 200 {
		t.Fatalf("final = %v", f)
	}
	if r := f.GetHeader("Reason"); r == nil || !strings.HasPrefix(r.Value(), "STIR;cause=438") {
		t.Errorf("Reason on the relayed 200 = %v", r)
	}
	if !strings.Contains(down[0].From().Value(), "verstat=TN-Validation-Failed") {
		t.Errorf("forwarded From = %s, want verstat=TN-Validation-Failed", down[0].From().Value())
	}
}

// TestCallOnEnd: what a stage registers with OnEnd runs once the call is
// over: at once for a rejected or failed call, at the end of the dialog for
// an answered one.
func TestCallOnEnd(t *testing.T) {
	for _, tt := range []struct {
		name   string
		code   int  // downstream answer; 0: a later stage rejects
		dialog bool // the call is answered: ends with its dialog
	}{{"rejected by a later stage", 0, false}, {"callee busy", 486, false}, {"answered", 200, true}} {
		t.Run(tt.name, func(t *testing.T) {
			var ended atomic.Int32
			chain := Chain{HandlerFunc{"holder", func(_ context.Context, c *Call) error { c.OnEnd(func() { ended.Add(1) }); return nil }}}
			if tt.code == 0 {
				chain = append(chain, HandlerFunc{"reject", func(context.Context, *Call) error { return Reject(503, "Busy", nil) }})
			}
			e, d := newTestEdge(t, testConfig(), Chains{Outside: chain})
			d.answer = func(req *sip.Request) *sip.Response {
				res := sip.NewResponseFromRequest(req, tt.code, "X", nil)
				res.To().Params.Add("tag", "callee")
				return res
			}
			req := parseReq(t, testInvite, "127.0.0.1:15100")
			run(t, e, d, outside, req)
			want := int32(1)
			if tt.dialog {
				want = 0
			}
			if got := ended.Load(); got != want {
				t.Fatalf("OnEnd ran %d times after the final response, want %d", got, want)
			}
			if tt.dialog {
				e.dialogs.remove(req.CallID().Value())
				if got := ended.Load(); got != 1 {
					t.Fatalf("OnEnd ran %d times after the dialog ended, want 1", got)
				}
			}
		})
	}
}

// optionsTo is an OPTIONS from the trunk addressed to addr (stirgate itself
// when addr is one of our listeners).
func optionsTo(addr string) string {
	return "OPTIONS sip:" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:15100;branch=z9hG4bK-opt-1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:trunk@127.0.0.1>;tag=1\r\nTo: <sip:" + addr + ">\r\n" +
		"Call-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

// TestEdgeDrainingAnswers503WithRetryAfter: while draining, every new
// request (INVITE, OPTIONS to stirgate, other out-of-dialog requests) gets
// 503 with Retry-After, as README and docs/DESIGN.md say.
func TestEdgeDrainingAnswers503WithRetryAfter(t *testing.T) {
	message := strings.NewReplacer("INVITE sip", "MESSAGE sip", "CSeq: 1 INVITE", "CSeq: 1 MESSAGE").Replace(testInvite)
	for _, tt := range []struct {
		name string
		raw  func(e *Edge) string
	}{
		{"INVITE", func(*Edge) string { return testInvite }},
		{"OPTIONS to stirgate", func(e *Edge) string { return optionsTo(e.ListenAddrs("outside")["UDP"]) }},
		{"OPTIONS to a user", func(*Edge) string { return optionsTo("bob@127.0.0.1:15090") }},
		{"out-of-dialog MESSAGE", func(*Edge) string { return message }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, d := newTestEdge(t, testConfig(), Chains{})
			e.draining.Store(true)
			up, down := run(t, e, d, outside, parseReq(t, tt.raw(e), "127.0.0.1:15100"))
			f := finalOf(up)
			if f == nil || f.StatusCode != 503 || len(down) != 0 {
				t.Fatalf("final = %v, forwarded %d; want 503 and nothing forwarded", f, len(down))
			}
			if ra := f.GetHeader("Retry-After"); ra == nil || ra.Value() != "30" {
				t.Errorf("Retry-After = %v, want 30", ra)
			}
		})
	}
}

// TestEdgeRecordsEveryRefusedInitialInvite: every initial INVITE ends in
// one call record, also those the edge refuses as unsupported (416, 420,
// 505), with stage edge. In-dialog requests and other methods get none.
func TestEdgeRecordsEveryRefusedInitialInvite(t *testing.T) {
	for _, tt := range []struct {
		name   string
		raw    string
		status int // 0: no record expected
	}{
		{"sip version", strings.Replace(testInvite, "@127.0.0.1:5070 SIP/2.0", "@127.0.0.1:5070 SIP/7.0", 1), 505},
		{"uri scheme", strings.Replace(testInvite, "INVITE sip:+1-202-555-0100@127.0.0.1:5070", "INVITE im:user@example.com", 1), 416},
		{"proxy-require", strings.Replace(testInvite, "Content-Length: 0", "Proxy-Require: nothingweknow\r\nContent-Length: 0", 1), 420},
		{"max-forwards 0", strings.Replace(testInvite, "Max-Forwards: 70", "Max-Forwards: 0", 1), 483},
		{"re-INVITE proxy-require", strings.NewReplacer("To: <sip:+12025550100@example.net>", "To: <sip:+12025550100@example.net>;tag=x",
			"Content-Length: 0", "Proxy-Require: nothingweknow\r\nContent-Length: 0").Replace(testInvite), 0},
		{"MESSAGE proxy-require", strings.NewReplacer("INVITE sip", "MESSAGE sip", "CSeq: 1 INVITE", "CSeq: 1 MESSAGE",
			"Content-Length: 0", "Proxy-Require: nothingweknow\r\nContent-Length: 0").Replace(testInvite), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var recs []CallRecord
			e, d := newTestEdgeWith(t, testConfig(), Chains{}, Options{Records: func(r CallRecord) { recs = append(recs, r) }})
			up, _ := run(t, e, d, inside, parseReq(t, tt.raw, "127.0.0.1:5090"))
			if f := finalOf(up); f == nil || f.StatusCode < 400 {
				t.Fatalf("final = %v, want a refusal", f)
			}
			if tt.status == 0 {
				if len(recs) != 0 {
					t.Fatalf("records = %+v, want none for a request that is no initial INVITE", recs)
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			if r := recs[0]; r.Status != tt.status || r.Stage != StageEdge || r.CallID != "call-1@test" || r.Realm != "inside" {
				t.Errorf("record = %+v, want status %d, stage edge, call-1@test in inside", r, tt.status)
			}
		})
	}
}

// TestEdgeNamesItselfInServer: the responses stirgate makes itself carry
// Server: <sip.user_agent>; relayed ones keep the callee's headers.
func TestEdgeNamesItselfInServer(t *testing.T) {
	const ua = "stirgate-test/1.0"
	cfg := testConfig()
	cfg.UserAgent = ua
	reject := Chains{Outside: Chain{HandlerFunc{"dnc", func(context.Context, *Call) error { return Reject(603, "Decline", nil) }}}}
	for _, tt := range []struct {
		name   string
		raw    func(e *Edge) string
		chains Chains
		want   []int // statuses that must carry Server, in order
	}{
		{"OPTIONS 200", func(e *Edge) string { return optionsTo(e.ListenAddrs("outside")["UDP"]) }, Chains{}, []int{200}},
		{"pipeline rejection", func(*Edge) string { return testInvite }, reject, []int{100, 603}},
		{"edge refusal", func(*Edge) string { return strings.Replace(testInvite, "Max-Forwards: 70", "Max-Forwards: 0", 1) }, Chains{}, []int{483}},
		{"unsupported", func(*Edge) string {
			return strings.Replace(testInvite, "Content-Length: 0", "Proxy-Require: x\r\nContent-Length: 0", 1)
		}, Chains{}, []int{420}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, d := newTestEdge(t, cfg, tt.chains)
			up, _ := run(t, e, d, outside, parseReq(t, tt.raw(e), "127.0.0.1:15100"))
			if len(up) != len(tt.want) {
				t.Fatalf("upstream got %v, want %v", up, tt.want)
			}
			for i, res := range up {
				if res.StatusCode != tt.want[i] {
					t.Fatalf("response %d = %d, want %d", i, res.StatusCode, tt.want[i])
				}
				if h := res.GetHeader("Server"); h == nil || h.Value() != ua {
					t.Errorf("%d Server = %v, want %q", res.StatusCode, h, ua)
				}
			}
		})
	}
	t.Run("relayed 200 keeps the callee's", func(t *testing.T) {
		e, d := newTestEdge(t, cfg, Chains{})
		up, _ := run(t, e, d, outside, parseReq(t, testInvite, "127.0.0.1:15100"))
		if f := finalOf(up); f == nil || f.StatusCode != 200 || f.GetHeader("Server") != nil {
			t.Fatalf("relayed final = %v, want the callee's 200 without our Server", f)
		}
	})
}

// TestEdgeGivesUpCancelledInviteWithoutFinal: a callee that rang, got our
// CANCEL (timer C or the caller's) and never answers the INVITE finally does
// not hold the call forever (RFC 3261 9.1: after 64*T1 the INVITE is
// considered cancelled): the handler returns, the call gets its record and
// no longer counts as in flight, so a drain can end.
func TestEdgeGivesUpCancelledInviteWithoutFinal(t *testing.T) {
	cfg := testConfig()
	cfg.InviteTimeout = time.Second
	fin := &finisher{}
	e, d := newTestEdge(t, cfg, Chains{Inside: Chain{fin}})
	e.cancelWait = 50 * time.Millisecond // 64*T1 (32 s) by the book
	d.script = func(req *sip.Request, tx *sip.ClientTx) {
		switch req.Method {
		case sip.INVITE:
			tx.Receive(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		case sip.CANCEL:
			tx.Receive(sip.NewResponseFromRequest(req, 200, "OK", nil)) // and never a 487
		}
	}
	req := parseReq(t, testInvite, "127.0.0.1:5090")
	stx := siptest.NewServerTxRecorder(req)
	done := make(chan struct{})
	go func() { e.serve(e.realms[inside], req, stx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // a bound, not a measurement: timer C is 1 s
		t.Fatalf("the call is still held (downstream saw %s, in flight %d)", methods(d.sent()), e.inflight.Load())
	}
	if f := finalOf(stx.Result()); f == nil || f.StatusCode != 408 {
		t.Fatalf("upstream final = %v, want 408 (timer C)", f)
	}
	if rec, n := fin.last(); n != 1 || rec.Status != 408 || rec.Stage != StageEdge {
		t.Errorf("finisher got %d records, last %+v; want one 408 by the edge", n, rec)
	}
	if n := e.inflight.Load(); n != 0 {
		t.Errorf("in flight = %d after the call was given up, want 0", n)
	}
	if got := testutil.ToFloat64(e.m.inProgress.WithLabelValues("inside")); got != 0 {
		t.Errorf("calls in progress = %v, want 0", got)
	}
}
