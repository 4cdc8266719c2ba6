package main

// A SIP caller and callee written in Go, for the transport comparison:
// Debian's SIPp is built without TLS. The same code drives UDP and TLS, so
// that the two results differ by the transport only. Messages are the
// ones of integration/sipp/uac.xml and uas.xml: INVITE with SDP, 180 and
// 200 with SDP, ACK and BYE through stirgate's Record-Route set.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stirgate/stirgate/integration/internal/sipwire"
)

// sipWire is one transport endpoint: a UDP socket or a TLS connection.
// send is safe for concurrent use.
type sipWire interface {
	send(msg []byte, to *net.UDPAddr) error
	// read returns the next message and, over UDP, where it came from.
	read() ([]byte, *net.UDPAddr, error)
	local() string
	close() error
}

// udpWire is a UDP socket; read is called from one goroutine.
type udpWire struct {
	c   *net.UDPConn
	buf []byte
}

func newUDPWire(c *net.UDPConn) *udpWire {
	_ = c.SetReadBuffer(4 << 20)
	return &udpWire{c: c, buf: make([]byte, 65535)}
}

func (w *udpWire) send(msg []byte, to *net.UDPAddr) error {
	_, err := w.c.WriteToUDP(msg, to)
	return err
}

func (w *udpWire) read() ([]byte, *net.UDPAddr, error) {
	n, from, err := w.c.ReadFromUDP(w.buf)
	return bytes.Clone(w.buf[:n]), from, err
}

func (w *udpWire) local() string { return w.c.LocalAddr().String() }
func (w *udpWire) close() error  { return w.c.Close() }

type tlsWire struct {
	c  *tls.Conn
	r  *bufio.Reader
	mu sync.Mutex // writes come from the sender and the reader
}

func newTLSWire(c *tls.Conn) *tlsWire { return &tlsWire{c: c, r: bufio.NewReaderSize(c, 64<<10)} }

func (w *tlsWire) send(msg []byte, _ *net.UDPAddr) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.c.Write(msg)
	return err
}

func (w *tlsWire) read() ([]byte, *net.UDPAddr, error) {
	raw, err := sipwire.ReadFrame(w.r)
	return raw, nil, err
}

func (w *tlsWire) local() string { return w.c.LocalAddr().String() }
func (w *tlsWire) close() error  { return w.c.Close() }

// ---------------------------------------------------------------------------
// The callee.

// goUAS answers every INVITE 180 then 200 (SDP), BYE and the rest 200,
// ACK nothing. With wantIdentity it answers an INVITE without Identity 428
// (the call fails) and keeps the Identity of the first INVITE and every
// 10th, for the secsipidx check. Over TLS it accepts any number of
// connections (stirgate keeps one).
type goUAS struct {
	transport    string
	wantIdentity bool
	addr         string
	udp          *net.UDPConn
	ln           net.Listener
	wg           sync.WaitGroup
	mu           sync.Mutex
	conns        []net.Conn
	invites      int
	ids          []string
	errs         []string
}

func startGoUAS(transport string, cfg *tls.Config, wantIdentity bool) (*goUAS, error) {
	u := &goUAS{transport: transport, wantIdentity: wantIdentity}
	switch transport {
	case "udp":
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(loopback)})
		if err != nil {
			return nil, err
		}
		u.udp, u.addr = c, c.LocalAddr().String()
		u.wg.Add(1)
		go u.serve(newUDPWire(c))
	case "tls":
		ln, err := tls.Listen("tcp", net.JoinHostPort(loopback, "0"), cfg)
		if err != nil {
			return nil, err
		}
		u.ln, u.addr = ln, ln.Addr().String()
		u.wg.Add(1)
		go u.accept()
	default:
		return nil, fmt.Errorf("transport %q", transport)
	}
	return u, nil
}

func (u *goUAS) port() int { return u.ln.Addr().(*net.TCPAddr).Port }

func (u *goUAS) accept() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns = append(u.conns, c)
		u.mu.Unlock()
		u.wg.Add(1)
		go u.serve(newTLSWire(c.(*tls.Conn)))
	}
}

func (u *goUAS) fail(format string, a ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.errs) < 20 {
		u.errs = append(u.errs, fmt.Sprintf(format, a...))
	}
}

// serve answers the requests of one wire until it is closed.
func (u *goUAS) serve(w sipWire) {
	defer u.wg.Done()
	defer w.close()
	contact := fmt.Sprintf("<sip:uas@%s;transport=%s>", u.addr, u.transport)
	for {
		raw, from, err := w.read()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") {
				u.fail("read: %v", err)
			}
			return
		}
		m, err := sipwire.Parse(raw)
		if err != nil {
			u.fail("parse: %v", err)
			continue
		}
		var out [][]byte
		switch m.Method() {
		case "", "ACK":
			continue
		case "INVITE":
			out = u.answerInvite(m, contact)
		default:
			out = [][]byte{response(m, 200, "OK", "", "", "")}
		}
		for _, msg := range out {
			if err := w.send(msg, from); err != nil {
				u.fail("send: %v", err)
				return
			}
		}
	}
}

func (u *goUAS) answerInvite(m sipwire.Message, contact string) [][]byte {
	id := m.Get("Identity")
	u.mu.Lock()
	u.invites++
	if u.wantIdentity && id != "" && (u.invites == 1 || u.invites%10 == 0) {
		u.ids = append(u.ids, id)
	}
	u.mu.Unlock()
	if u.wantIdentity && id == "" {
		return [][]byte{response(m, 428, "Use Identity Header", "", "", "")}
	}
	// The same tag for a retransmitted INVITE.
	h := fnv.New32a()
	h.Write([]byte(m.Get("Call-ID")))
	tag := fmt.Sprintf("uas%08x", h.Sum32())
	return [][]byte{
		response(m, 180, "Ringing", tag, contact, ""),
		response(m, 200, "OK", tag, contact, uasSDP),
	}
}

// take returns the Identity sample and the errors since the last take and
// starts afresh.
func (u *goUAS) take() (ids, errs []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	ids, errs = u.ids, u.errs
	u.ids, u.errs, u.invites = nil, nil, 0
	return ids, errs
}

func (u *goUAS) stop() {
	if u.udp != nil {
		u.udp.Close()
	}
	if u.ln != nil {
		u.ln.Close()
		u.mu.Lock()
		for _, c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
	}
	u.wg.Wait()
}

const (
	uasSDP = "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 31000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	uacSDP = "v=0\r\no=alice 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)

// response builds a response to req as RFC 3261 8.2.6 says: Via, From,
// To (with tag unless it has one), Call-ID and CSeq copied; Record-Route
// too on a 18x/2xx to an INVITE; Contact and an SDP body when given.
func response(req sipwire.Message, code int, reason, tag, contact, sdp string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range req.All("Via") {
		b.WriteString("Via: " + v + "\r\n")
	}
	if req.Method() == "INVITE" && code > 100 && code < 300 {
		for _, rr := range req.All("Record-Route") {
			b.WriteString("Record-Route: " + rr + "\r\n")
		}
	}
	to := req.Get("To")
	if tag != "" && !strings.Contains(to, ";tag=") {
		to += ";tag=" + tag
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\n", req.Get("From"), to, req.Get("Call-ID"), req.Get("CSeq"))
	if contact != "" {
		b.WriteString("Contact: " + contact + "\r\n")
	}
	if sdp != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(sdp), sdp)
	return []byte(b.String())
}

// ---------------------------------------------------------------------------
// The caller.

// goUAC places calls at a rate over one wire to stirgate: INVITE, ACK,
// BYE after hold. Over UDP it retransmits an INVITE until the first
// response and a BYE until its final one (500 ms doubling to 4 s), as a
// phone does; over TLS it never retransmits (RFC 3261 17.1.1.2).
type goUAC struct {
	w         sipWire
	transport string // udp | tls, for Via and the Request-URI
	target    *net.UDPAddr
	targetStr string
	hold      time.Duration
	prefix    string // Call-ID prefix, unique per step

	mu       sync.Mutex
	calls    map[string]*goCall
	waits    []time.Duration // INVITE -> final, per call with one
	first    time.Time       // first INVITE sent
	last     time.Time       // last final response received
	ok, fail int
	retrans  int
	errs     []string
	done     chan struct{} // closed when ok+fail reaches want
	want     int
	closed   atomic.Bool
}

type goCall struct {
	n         int
	callID    string
	sent      time.Time
	answered  bool   // final response to the INVITE received
	msg       []byte // what a retransmission resends (INVITE, then BYE)
	nextRetx  time.Time
	interval  time.Duration
	ack       []byte // the ACK of a 2xx, resent on a retransmitted 200
	inviteVia string
}

// goLoad is what one run of the caller measured.
type goLoad struct {
	ok, fail, retrans int
	lat               latency
	errs              []string
}

func newGoUAC(w sipWire, transport, target string, hold time.Duration, prefix string) (*goUAC, error) {
	addr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	return &goUAC{w: w, transport: transport, target: addr, targetStr: target, hold: hold, prefix: prefix, calls: map[string]*goCall{}, done: make(chan struct{})}, nil
}

// run places calls at rate and waits (at most bound) until every call
// has ended.
func (u *goUAC) run(ctx context.Context, calls, rate int, bound time.Duration) goLoad {
	u.want = calls
	go u.reader()
	if u.transport == "udp" {
		stop := make(chan struct{})
		defer close(stop)
		go u.retransmitter(stop)
	}
	start := time.Now()
	deadline := start.Add(bound)
	for i := 0; i < calls && ctx.Err() == nil; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
			time.Sleep(wait)
		}
		u.invite(i)
	}
	select {
	case <-u.done:
	case <-ctx.Done():
	case <-time.After(time.Until(deadline)):
	}
	u.closed.Store(true)
	u.w.close()
	u.mu.Lock()
	defer u.mu.Unlock()
	res := goLoad{ok: u.ok, fail: calls - u.ok, retrans: u.retrans, errs: u.errs}
	if len(u.waits) > 0 {
		ds := slices.Clone(u.waits)
		slices.Sort(ds)
		res.lat = latency{N: len(ds), P50: percentile(ds, 0.50), P99: percentile(ds, 0.99), Span: u.last.Sub(u.first)}
	}
	return res
}

func (u *goUAC) via(branch string) string {
	return fmt.Sprintf("Via: SIP/2.0/%s %s;branch=z9hG4bK-%s;rport\r\n", strings.ToUpper(u.transport), u.w.local(), branch)
}

func (u *goUAC) invite(n int) {
	c := &goCall{n: n, callID: fmt.Sprintf("%s-%d@bench", u.prefix, n), interval: 500 * time.Millisecond}
	c.inviteVia = u.via(c.callID + "-1")
	ruri := "sip:" + callee + "@" + u.targetStr
	if u.transport == "tls" {
		ruri += ";transport=tls"
	}
	c.msg = []byte(fmt.Sprintf("INVITE %s SIP/2.0\r\n%sMax-Forwards: 70\r\n"+
		"From: \"Alice\" <sip:+%s@%s>;tag=c%d\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:+%s@%s;transport=%s>\r\nUser-Agent: stirgate-bench-go\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		ruri, c.inviteVia, benchCaller, u.w.local(), n, callee, u.targetStr, c.callID,
		benchCaller, u.w.local(), u.transport, len(uacSDP), uacSDP))
	u.mu.Lock()
	c.sent = time.Now()
	c.nextRetx = c.sent.Add(c.interval)
	if n == 0 {
		u.first = c.sent
	}
	u.calls[c.callID] = c
	u.mu.Unlock()
	if err := u.w.send(c.msg, u.target); err != nil {
		u.end(c, false, "send INVITE: "+err.Error())
	}
}

// end finishes c (under no lock).
func (u *goUAC) end(c *goCall, ok bool, why string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, live := u.calls[c.callID]; !live {
		return
	}
	delete(u.calls, c.callID)
	if ok {
		u.ok++
	} else {
		u.fail++
		if len(u.errs) < 5 && why != "" {
			u.errs = append(u.errs, c.callID+": "+why)
		}
	}
	if u.ok+u.fail == u.want {
		close(u.done)
	}
}

func (u *goUAC) reader() {
	for {
		raw, _, err := u.w.read()
		if err != nil {
			if !u.closed.Load() {
				u.mu.Lock()
				u.errs = append(u.errs, "read: "+err.Error())
				u.mu.Unlock()
			}
			return
		}
		m, err := sipwire.Parse(raw)
		if err != nil || m.StatusCode() == 0 {
			continue // CRLF pings are skipped by ReadFrame; no requests come to a caller
		}
		u.onResponse(m)
	}
}

func (u *goUAC) onResponse(m sipwire.Message) {
	code := m.StatusCode()
	_, method := m.CSeq()
	now := time.Now()
	u.mu.Lock()
	c := u.calls[m.Get("Call-ID")]
	if c == nil {
		u.mu.Unlock()
		return // a retransmission after the call ended
	}
	switch {
	case method == "INVITE" && code < 200:
		c.nextRetx = time.Time{} // a provisional stops INVITE retransmissions
		u.mu.Unlock()
	case method == "INVITE" && c.answered:
		ack := c.ack // a retransmitted 200: its ACK again
		u.mu.Unlock()
		if ack != nil {
			_ = u.w.send(ack, u.target)
		}
	case method == "INVITE":
		c.answered = true
		c.nextRetx = time.Time{}
		u.waits = append(u.waits, now.Sub(c.sent))
		u.last = now
		to := m.Get("To")
		if code >= 300 {
			// The ACK of a non-2xx is hop by hop: the INVITE's branch
			// and Request-URI (RFC 3261 17.1.1.3).
			ruri, _, _ := strings.Cut(string(c.msg), " SIP/2.0")
			ack := fmt.Sprintf("ACK %s SIP/2.0\r\n%sMax-Forwards: 70\r\nFrom: \"Alice\" <sip:+%s@%s>;tag=c%d\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
				strings.TrimPrefix(ruri, "INVITE "), c.inviteVia, benchCaller, u.w.local(), c.n, to, c.callID)
			u.mu.Unlock()
			_ = u.w.send([]byte(ack), u.target)
			u.end(c, false, fmt.Sprintf("INVITE answered %d", code))
			return
		}
		// The route set is the Record-Route of the 2xx, reversed.
		var route strings.Builder
		rrs := m.All("Record-Route")
		for i := len(rrs) - 1; i >= 0; i-- {
			for _, r := range slices.Backward(strings.Split(rrs[i], ",")) {
				route.WriteString("Route: " + strings.TrimSpace(r) + "\r\n")
			}
		}
		next := sipwire.URI(m.Get("Contact"))
		inDialog := func(method string, cseq int, branch string) []byte {
			return []byte(fmt.Sprintf("%s %s SIP/2.0\r\n%s%sMax-Forwards: 70\r\nFrom: \"Alice\" <sip:+%s@%s>;tag=c%d\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
				method, next, u.via(branch), route.String(), benchCaller, u.w.local(), c.n, to, c.callID, cseq, method))
		}
		c.ack = inDialog("ACK", 1, c.callID+"-ack")
		bye := inDialog("BYE", 2, c.callID+"-2")
		ack := c.ack
		u.mu.Unlock()
		_ = u.w.send(ack, u.target)
		time.AfterFunc(u.hold, func() {
			u.mu.Lock()
			if u.calls[c.callID] == nil || u.closed.Load() {
				u.mu.Unlock()
				return
			}
			c.msg, c.interval = bye, 500*time.Millisecond
			c.nextRetx = time.Now().Add(c.interval)
			u.mu.Unlock()
			if err := u.w.send(bye, u.target); err != nil {
				u.end(c, false, "send BYE: "+err.Error())
			}
		})
	case method == "BYE" && code >= 200:
		u.mu.Unlock()
		u.end(c, code < 300, fmt.Sprintf("BYE answered %d", code))
	default:
		u.mu.Unlock()
	}
}

// retransmitter resends INVITEs without any response and BYEs without a
// final one, every 50 ms at most, until stop.
func (u *goUAC) retransmitter(stop <-chan struct{}) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			var resend [][]byte
			u.mu.Lock()
			for _, c := range u.calls {
				if c.nextRetx.IsZero() || now.Before(c.nextRetx) {
					continue
				}
				resend = append(resend, c.msg)
				u.retrans++
				c.interval = min(2*c.interval, 4*time.Second)
				c.nextRetx = now.Add(c.interval)
			}
			u.mu.Unlock()
			for _, m := range resend {
				_ = u.w.send(m, u.target)
			}
		}
	}
}
