package integration

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/zaf/g711"
)

// The announcement tests play the caller: a UA on loopback that offers SDP,
// reads the 183's answer, receives the RTP on its offered port and checks
// it the way a phone and a call-progress analyser would.

// announcePolicy rejects calls to +15559870002 with 603 and an
// announcement: the intercept SIT, then prompt.wav twice.
const announcePolicy = `lists:
  - name: dnc
    numbers: ["+15559870002"]
rules:
  - name: dnc
    type: list
    match: {realm: inside}
    lists: [dnc]
    action: {type: reject, code: 603, announce: {prompt: prompt.wav, sit: intercept, repeat: 2}}
`

// promptBytes is the test prompt, 8 kHz mu-law: 0.5 s of a 440 Hz tone. A
// PCMU stream must carry these bytes unchanged.
func promptBytes() []byte {
	b := make([]byte, 4000)
	for i := range b {
		b[i] = g711.EncodeUlawFrame(int16(8000 * math.Sin(2*math.Pi*440*float64(i)/8000)))
	}
	return b
}

// writeMuLawWAV writes data as an 8 kHz mono mu-law WAV.
func writeMuLawWAV(t *testing.T, path string, data []byte) {
	t.Helper()
	le := binary.LittleEndian
	b := []byte("RIFF")
	b = le.AppendUint32(b, uint32(4+8+16+8+len(data)))
	b = append(b, "WAVEfmt "...)
	b = le.AppendUint32(b, 16)
	b = le.AppendUint16(b, 7) // mu-law
	b = le.AppendUint16(b, 1)
	b = le.AppendUint32(b, 8000)
	b = le.AppendUint32(b, 8000)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 8)
	b = append(b, "data"...)
	b = le.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// announceProxy starts stirgate with announcePolicy, its prompt and the
// sip: extra given, and a PBX sink that must receive nothing.
func announceProxy(t *testing.T, sipExtra string) (proxyConfig, *proxy, *sink) {
	t.Helper()
	return announceProxyWith(t, announcePolicy, func(c *proxyConfig) { c.SIPExtra = sipExtra })
}

// announceProxyWith starts stirgate with the policy pol (its prompt.wav is
// promptBytes) and the configuration changed by set, and a PBX sink that
// must receive nothing.
func announceProxyWith(t *testing.T, pol string, set func(*proxyConfig)) (proxyConfig, *proxy, *sink) {
	t.Helper()
	dir := t.TempDir()
	writeMuLawWAV(t, filepath.Join(dir, "prompt.wav"), promptBytes())
	polFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := newProxyConfig(t)
	cfg.DrainTimeout = 2 * time.Second
	cfg.Extra = fmt.Sprintf("policy:\n  files: [%q]\n", polFile)
	set(&cfg)
	pbx := startSink(t, cfg.PBXPort)
	return cfg, startProxy(t, cfg), pbx
}

// metricWant is a metric's expected sum over the series matching labels.
type metricWant struct {
	name   string
	labels map[string]string
	want   float64
}

// requireMetrics checks each want against m.
func requireMetrics(t *testing.T, m metrics, wants ...metricWant) {
	t.Helper()
	for _, w := range wants {
		if got, _ := m.Sum(w.name, w.labels); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
		}
	}
}

// ua is the calling phone: a SIP socket and an RTP socket.
type ua struct {
	t   *testing.T
	sip *net.UDPConn
	rtp *net.UDPConn
	to  *net.UDPAddr // stirgate's inside listener
	n   int
	// headers are added to the INVITEs (CRLF after each).
	headers string
}

func newUA(t *testing.T, proxyAddr string) *ua {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	to, err := net.ResolveUDPAddr("udp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	return &ua{t: t, sip: listen(), rtp: listen(), to: to}
}

func (u *ua) rtpPort() int { return u.rtp.LocalAddr().(*net.UDPAddr).Port }

// offer is an SDP offer receiving on u's RTP port, with the m= formats
// given, from addr, with extra attribute lines.
func (u *ua) offer(addr, formats string, attrs ...string) string {
	lines := []string{"v=0", "o=ua 1 1 IN IP4 " + addr, "s=-", "c=IN IP4 " + addr, "t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP %s", u.rtpPort(), formats)}
	lines = append(lines, attrs...)
	return strings.Join(lines, "\r\n") + "\r\n"
}

// invite sends an INVITE to callee with body (no SDP when ""); it returns
// the Call-ID, the branch and the From tag, for the CANCEL.
func (u *ua) invite(callee, body string) (callID, inviteText string) {
	u.n++
	local := u.sip.LocalAddr().String()
	callID = fmt.Sprintf("announce-%d-%d@test", u.n, time.Now().UnixNano())
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\r\n"
	}
	inviteText = fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;rport;branch=z9hG4bK-ann-%d-%d\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:+15551230001@127.0.0.1>;tag=ua%d\r\nTo: <sip:%s@127.0.0.1>\r\n"+
		"Call-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:ua@%s>\r\n%s%sContent-Length: %d\r\n\r\n%s",
		callee, u.to, local, u.n, time.Now().UnixNano(), u.n, callee, callID, local, u.headers, ct, len(body), body)
	u.send(inviteText)
	return callID, inviteText
}

func (u *ua) send(msg string) {
	u.t.Helper()
	if _, err := u.sip.WriteToUDP([]byte(msg), u.to); err != nil {
		u.t.Fatal(err)
	}
}

// cancel sends the CANCEL of the INVITE text inv (RFC 3261 9.1: same
// Request-URI, Via, From, To, Call-ID and CSeq number).
func (u *ua) cancel(inv string) {
	head := strings.SplitN(inv, "\r\n\r\n", 2)[0]
	var out []string
	for i, l := range strings.Split(head, "\r\n") {
		switch {
		case i == 0:
			out = append(out, strings.Replace(l, "INVITE", "CANCEL", 1))
		case strings.HasPrefix(l, "CSeq:"):
			out = append(out, "CSeq: 1 CANCEL")
		case strings.HasPrefix(l, "Content-"), strings.HasPrefix(l, "Contact:"):
		default:
			out = append(out, l)
		}
	}
	u.send(strings.Join(out, "\r\n") + "\r\nContent-Length: 0\r\n\r\n")
}

// ack acknowledges a non-2xx final response to the INVITE text inv.
func (u *ua) ack(inv string, res *sip.Response) {
	head := strings.SplitN(inv, "\r\n\r\n", 2)[0]
	var out []string
	for i, l := range strings.Split(head, "\r\n") {
		switch {
		case i == 0:
			out = append(out, strings.Replace(l, "INVITE", "ACK", 1))
		case strings.HasPrefix(l, "CSeq:"):
			out = append(out, "CSeq: 1 ACK")
		case strings.HasPrefix(l, "To:"):
			out = append(out, "To: "+res.To().Value())
		case strings.HasPrefix(l, "Content-"), strings.HasPrefix(l, "Contact:"):
		default:
			out = append(out, l)
		}
	}
	u.send(strings.Join(out, "\r\n") + "\r\nContent-Length: 0\r\n\r\n")
}

// response reads the next SIP response for callID with a status other
// than 100, within wait.
func (u *ua) response(callID string, wait time.Duration) *sip.Response {
	u.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for range 50 {
		_ = u.sip.SetReadDeadline(deadline)
		n, _, err := u.sip.ReadFromUDP(buf)
		if err != nil {
			u.t.Fatalf("no response for %s within %s: %v", callID, wait, err)
		}
		msg, err := sip.NewParser().ParseSIP(buf[:n])
		if err != nil {
			u.t.Fatalf("unparsable message: %v\n%s", err, buf[:n])
		}
		res, ok := msg.(*sip.Response)
		if !ok || res.CallID().Value() != callID || res.StatusCode == 100 {
			continue
		}
		if res.CSeq().MethodName == sip.CANCEL {
			continue // the 200 to our CANCEL
		}
		return res
	}
	u.t.Fatalf("too many messages without the response for %s", callID)
	return nil
}

// rtpPacket is one RTP packet received, as a phone sees it.
type rtpPacket struct {
	at      time.Time
	from    *net.UDPAddr
	pt      uint8
	marker  bool
	seq     uint16
	ts      uint32
	ssrc    uint32
	payload []byte
}

// receiveRTP collects the RTP packets arriving on u's RTP port until idle
// passes without one, at most limit long.
func (u *ua) receiveRTP(idle, limit time.Duration) []rtpPacket {
	var out []rtpPacket
	end := time.Now().Add(limit)
	buf := make([]byte, 1500)
	for time.Now().Before(end) {
		_ = u.rtp.SetReadDeadline(time.Now().Add(idle))
		n, from, err := u.rtp.ReadFromUDP(buf)
		if err != nil {
			break
		}
		if n < 12 || buf[0]>>6 != 2 {
			u.t.Errorf("not an RTP packet: % x", buf[:min(n, 16)])
			continue
		}
		out = append(out, rtpPacket{
			at: time.Now(), from: from, pt: buf[1] & 0x7f, marker: buf[1]&0x80 != 0,
			seq: binary.BigEndian.Uint16(buf[2:]), ts: binary.BigEndian.Uint32(buf[4:]), ssrc: binary.BigEndian.Uint32(buf[8:]),
			payload: slices.Clone(buf[12:n]),
		})
	}
	return out
}

// sdpAnswer is what the test reads from the 183's body.
type sdpAnswer struct {
	addr     string
	port, pt int
	sendonly bool
}

func parseAnswer(t *testing.T, body string) sdpAnswer {
	t.Helper()
	var a sdpAnswer
	for _, l := range strings.Split(body, "\r\n") {
		switch {
		case strings.HasPrefix(l, "c=IN IP4 "):
			a.addr = strings.TrimPrefix(l, "c=IN IP4 ")
		case strings.HasPrefix(l, "m=audio "):
			f := strings.Fields(l)
			if len(f) != 4 {
				t.Fatalf("answer offers more than one format: %q", l)
			}
			a.port, _ = strconv.Atoi(f[1])
			a.pt, _ = strconv.Atoi(f[3])
		case l == "a=sendonly":
			a.sendonly = true
		}
	}
	if a.addr == "" || a.port == 0 {
		t.Fatalf("no c= or m=audio in the answer:\n%s", body)
	}
	return a
}

// goertzelPower is the power of hz in samples: the tone detector of
// call-progress analysers.
func goertzelPower(samples []int16, hz float64) float64 {
	coeff := 2 * math.Cos(2*math.Pi*hz/8000)
	var s1, s2 float64
	for _, x := range samples {
		s0 := float64(x) + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	return s1*s1 + s2*s2 - coeff*s1*s2
}

// sitAt reports which of the SIT candidate frequencies dominates samples.
func sitAt(samples []int16) float64 {
	best, bestP := 0.0, 0.0
	for _, hz := range []float64{913.8, 985.2, 1370.6, 1428.5, 1776.7, 440} {
		if p := goertzelPower(samples, hz); p > bestP {
			best, bestP = hz, p
		}
	}
	return best
}

// pacing is the spread of the packets' arrival from the 20 ms grid that
// starts at the first one: p99 and max of |arrival - (first + i*20ms)|,
// for the log (speed is a benchmark's job, not a test's).
func pacing(pkts []rtpPacket) (p99, worst time.Duration) {
	errs := make([]time.Duration, len(pkts))
	for i, p := range pkts {
		d := p.at.Sub(pkts[0].at) - time.Duration(i)*20*time.Millisecond
		errs[i] = max(d, -d)
	}
	slices.Sort(errs)
	return errs[len(errs)*99/100], errs[len(errs)-1]
}

// TestAnnouncementPlays: a call to a DNC number gets 183 with an SDP
// answer, then the intercept SIT and the prompt twice as RTP on the
// offered port, then 603 with the 183's To tag. The stream is what a phone
// needs: the answer's payload type, one SSRC, sequence +1 and timestamp
// +160 per packet, the marker on the first, the three SIT frequencies in
// order, the prompt's bytes unchanged, and never faster than real time.
func TestAnnouncementPlays(t *testing.T) {
	cfg, p, pbx := announceProxy(t, "")
	for _, tc := range []struct {
		name    string
		formats string
		pt      int
	}{
		{"PCMU preferred", "0 8 101", 0},
		{"PCMA preferred", "8 0", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUA(t, cfg.InsideAddr())
			callID, inv := u.invite("+15559870002", u.offer("127.0.0.1", tc.formats, "a=rtpmap:101 telephone-event/8000"))
			progress := u.response(callID, answerWait)
			if progress.StatusCode != 183 {
				t.Fatalf("first response %d %s, want 183 Session Progress", progress.StatusCode, progress.Reason)
			}
			if ct := progress.ContentType(); ct == nil || ct.Value() != "application/sdp" {
				t.Fatalf("183 Content-Type %v, want application/sdp", ct)
			}
			if progress.Contact() == nil {
				t.Error("183 without Contact (RFC 3261 12.1.1)")
			}
			ans := parseAnswer(t, string(progress.Body()))
			if ans.pt != tc.pt || !ans.sendonly || ans.addr != "127.0.0.1" {
				t.Fatalf("answer %+v, want payload type %d, a=sendonly, c=127.0.0.1:\n%s", ans, tc.pt, progress.Body())
			}
			pkts := u.receiveRTP(time.Second, 30*time.Second)
			final := u.response(callID, answerWait)
			u.ack(inv, final)
			if final.StatusCode != 603 {
				t.Fatalf("final %d, want 603", final.StatusCode)
			}
			tag183, _ := progress.To().Params.Get("tag")
			tagFinal, _ := final.To().Params.Get("tag")
			if tag183 == "" || tag183 != tagFinal {
				t.Errorf("To tags: 183 %q, 603 %q: want one tag for every response", tag183, tagFinal)
			}

			// 928 ms of SIT, then 2 x 500 ms of prompt: 15,424 samples.
			const sitSamples, total = 7424, 7424 + 2*4000
			var payload []byte
			for i, pk := range pkts {
				if pk.from.Port != ans.port || !pk.from.IP.IsLoopback() {
					t.Fatalf("packet %d from %s, the answer names port %d", i, pk.from, ans.port)
				}
				if int(pk.pt) != ans.pt || pk.ssrc != pkts[0].ssrc || pk.marker != (i == 0) {
					t.Fatalf("packet %d: pt %d ssrc %x marker %v; want pt %d, one SSRC, marker on the first only", i, pk.pt, pk.ssrc, pk.marker, ans.pt)
				}
				if i > 0 && (pk.seq != pkts[i-1].seq+1 || pk.ts != pkts[i-1].ts+160) {
					t.Fatalf("packet %d: seq %d ts %d after %d %d: want +1 and +160", i, pk.seq, pk.ts, pkts[i-1].seq, pkts[i-1].ts)
				}
				if i < len(pkts)-1 && len(pk.payload) != 160 {
					t.Fatalf("packet %d carries %d bytes, want 160 (20 ms)", i, len(pk.payload))
				}
				payload = append(payload, pk.payload...)
			}
			if len(payload) != total {
				t.Fatalf("%d samples in %d packets, want %d (SIT 928 ms + 2 x 500 ms prompt)", len(payload), len(pkts), total)
			}
			decode := g711.DecodeUlawFrame
			if tc.pt == 8 {
				decode = g711.DecodeAlawFrame
			}
			pcm := make([]int16, len(payload))
			for i, b := range payload {
				pcm[i] = decode(b)
			}
			// The SIT: 274 ms at 913.8 Hz, 274 ms at 1370.6, 380 ms at 1776.7,
			// each checked in its middle.
			at := 0
			for _, seg := range []struct {
				hz float64
				n  int
			}{{913.8, 2192}, {1370.6, 2192}, {1776.7, 3040}} {
				if got := sitAt(pcm[at+seg.n/8 : at+seg.n-seg.n/8]); got != seg.hz {
					t.Errorf("SIT segment at sample %d: %.1f Hz dominates, want %.1f", at, got, seg.hz)
				}
				at += seg.n
			}
			if tc.pt == 0 {
				want := append(promptBytes(), promptBytes()...)
				if !slices.Equal(payload[sitSamples:], want) {
					t.Error("after the SIT the stream is not the prompt's mu-law bytes twice")
				}
			} else if got := sitAt(pcm[sitSamples:]); got != 440 {
				t.Errorf("prompt: %.1f Hz dominates, want the prompt's 440", got)
			}
			// Paced, not burst: a stream can arrive late on a loaded
			// machine, never early, so the span from first to last packet
			// is at least its audio less one packet and a small slack.
			span := pkts[len(pkts)-1].at.Sub(pkts[0].at)
			audio := time.Duration(len(pkts)-1) * 20 * time.Millisecond
			if span < audio*95/100 {
				t.Errorf("%d packets arrived within %s: faster than the %s of audio they carry", len(pkts), span, audio)
			}
			p99, worst := pacing(pkts)
			t.Logf("%d packets, %s from first to last (%s on the 20 ms grid), arrival pacing error p99 %s, max %s", len(pkts), span, audio, p99, worst)
		})
	}
	if msgs := pbx.Messages(); len(msgs) != 0 {
		t.Errorf("the PBX received %d messages: a rejected call must not reach it", len(msgs))
	}
	requireMetrics(t, p.Metrics(t),
		metricWant{"stirgate_announcements_started_total", map[string]string{"realm": "inside"}, 2},
		metricWant{"stirgate_announcements_ended_total", map[string]string{"realm": "inside", "result": "completed"}, 2},
		metricWant{"stirgate_rtp_packets_sent_total", map[string]string{"realm": "inside"}, 2 * 97})
	if !waitLogCount(t, p, "announcement=intercept+prompt.wav x2 codec=PCMA", 1) {
		t.Errorf("no call line names the announcement:\n%s", tail(p.Log(), 5))
	}
}

// TestAnnouncementCancel: a CANCEL 300 ms into the announcement stops the
// RTP and the INVITE gets 487, with the 183's To tag.
func TestAnnouncementCancel(t *testing.T) {
	cfg, p, _ := announceProxy(t, "")
	u := newUA(t, cfg.InsideAddr())
	callID, inv := u.invite("+15559870002", u.offer("127.0.0.1", "0"))
	progress := u.response(callID, answerWait)
	if progress.StatusCode != 183 {
		t.Fatalf("first response %d, want 183", progress.StatusCode)
	}
	first := u.receiveRTP(time.Second, 300*time.Millisecond)
	if len(first) == 0 {
		t.Fatal("no RTP within 300 ms of the 183")
	}
	cancelAt := time.Now()
	u.cancel(inv)
	final := u.response(callID, answerWait)
	u.ack(inv, final)
	if final.StatusCode != 487 {
		t.Fatalf("INVITE answered %d after CANCEL, want 487", final.StatusCode)
	}
	tag183, _ := progress.To().Params.Get("tag")
	tag487, _ := final.To().Params.Get("tag")
	if tag183 == "" || tag183 != tag487 {
		t.Errorf("To tags: 183 %q, 487 %q: want one tag for every response", tag183, tag487)
	}
	rest := u.receiveRTP(500*time.Millisecond, 5*time.Second)
	if len(first)+len(rest) >= 97 {
		t.Fatalf("%d packets: the whole announcement played despite the CANCEL", len(first)+len(rest))
	}
	if late := u.receiveRTP(500*time.Millisecond, time.Second); len(late) != 0 {
		t.Fatalf("%d RTP packets more than 500 ms after the 487", len(late))
	}
	last := first[len(first)-1].at
	if len(rest) > 0 {
		last = rest[len(rest)-1].at
	}
	t.Logf("CANCEL sent %s after the first packet; last packet %s after the CANCEL, %d after it", cancelAt.Sub(first[0].at), last.Sub(cancelAt), len(rest))
	m := p.Metrics(t)
	if got, _ := m.Sum("stirgate_announcements_ended_total", map[string]string{"result": "cancelled"}); got != 1 {
		t.Errorf("announcements cancelled = %v, want 1", got)
	}
	if got, _ := m.Sum("stirgate_sip_responses_total", map[string]string{"method": "INVITE", "status": "487"}); got != 1 {
		t.Errorf("487 responses counted %v, want 1", got)
	}
	if !waitLogCount(t, p, "result=cancelled", 1) || !waitLogCount(t, p, "status=487", 1) {
		t.Errorf("the call line does not show the cancelled announcement:\n%s", tail(p.Log(), 5))
	}
}

// TestAnnouncementRefusedOffers: an INVITE stirgate cannot play an
// announcement to (its offer, or Require: 100rel, which would need a
// reliable 183) gets the plain 603 at once: no 183, no RTP on the offered
// port; each refusal is counted by reason.
func TestAnnouncementRefusedOffers(t *testing.T) {
	cfg, p, _ := announceProxy(t, "")
	u := newUA(t, cfg.InsideAddr())
	for _, tc := range []struct {
		name, body, reason string
		headers            string
	}{
		{"G.722 and Opus only", u.offer("127.0.0.1", "9 111", "a=rtpmap:111 opus/48000/2"), "no_codec", ""},
		{"no SDP (late offer)", "", "no_offer", ""},
		{"hold address 0.0.0.0", u.offer("0.0.0.0", "0"), "hold", ""},
		{"a=sendonly", u.offer("127.0.0.1", "0", "a=sendonly"), "hold", ""},
		{"video only", strings.Replace(u.offer("127.0.0.1", "31"), "m=audio", "m=video", 1), "no_audio", ""},
		{"not SDP", "v=0\r\nthis is not sdp\r\n", "bad_offer", ""},
		{"Require: 100rel", u.offer("127.0.0.1", "0"), "100rel", "Require: 100rel\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.headers = tc.headers
			callID, inv := u.invite("+15559870002", tc.body)
			res := u.response(callID, answerWait)
			u.ack(inv, res)
			if res.StatusCode != 603 {
				t.Fatalf("first response %d, want the plain 603", res.StatusCode)
			}
			if pk := u.receiveRTP(300*time.Millisecond, time.Second); len(pk) != 0 {
				t.Fatalf("%d RTP packets for a refused offer", len(pk))
			}
			got, _ := p.Metrics(t).Sum("stirgate_announcements_refused_total", map[string]string{"reason": tc.reason})
			if got < 1 {
				t.Errorf("stirgate_announcements_refused_total{reason=%q} = %v, want at least 1", tc.reason, got)
			}
		})
	}
	m := p.Metrics(t)
	if got, _ := m.Sum("stirgate_rtp_packets_sent_total", nil); got != 0 {
		t.Errorf("%v RTP packets sent, want 0", got)
	}
	if got, _ := m.Sum("stirgate_announcements_started_total", nil); got != 0 {
		t.Errorf("%v announcements started, want 0", got)
	}
}

// TestAnnouncementSymmetricRTP: with media.symmetric_rtp, a caller behind
// NAT whose offer names an address it cannot be reached at hears the
// announcement at the address its own RTP comes from.
func TestAnnouncementSymmetricRTP(t *testing.T) {
	cfg, _, _ := announceProxyWith(t, announcePolicy, func(c *proxyConfig) {
		c.InsideExtra = "      media: {addr: 127.0.0.1, symmetric_rtp: true}\n"
	})
	u := newUA(t, cfg.InsideAddr())
	// The offer names a port nobody reads (the "private" address of the
	// NAT); the phone's RTP leaves from its real socket.
	unreachable, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	offered := unreachable.LocalAddr().(*net.UDPAddr).Port
	unreachable.Close()
	body := strings.Replace(u.offer("127.0.0.1", "0"), fmt.Sprintf("m=audio %d ", u.rtpPort()), fmt.Sprintf("m=audio %d ", offered), 1)
	callID, inv := u.invite("+15559870002", body)
	progress := u.response(callID, answerWait)
	if progress.StatusCode != 183 {
		t.Fatalf("first response %d, want 183", progress.StatusCode)
	}
	ans := parseAnswer(t, string(progress.Body()))
	if got := u.receiveRTP(300*time.Millisecond, time.Second); len(got) != 0 {
		t.Fatalf("%d packets on the phone's socket before it sent RTP: the offer's port was %d", len(got), offered)
	}
	// One RTP packet from the phone (PCMU silence) latches the stream.
	pkt := append([]byte{0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 1, 2, 3, 4}, make([]byte, 160)...)
	if _, err := u.rtp.WriteToUDP(pkt, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ans.port}); err != nil {
		t.Fatal(err)
	}
	got := u.receiveRTP(time.Second, 10*time.Second)
	final := u.response(callID, answerWait)
	u.ack(inv, final)
	if len(got) == 0 {
		t.Fatal("no RTP at the address the phone's RTP came from")
	}
	if final.StatusCode != 603 {
		t.Fatalf("final %d, want 603", final.StatusCode)
	}
	t.Logf("%d packets after latching (of 97)", len(got))
}
