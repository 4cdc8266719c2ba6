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

// The announcement as SIPp hears it: sipp/uac_announce.xml (the 183 is
// required) and sipp/uac_announce_or_plain.xml (the 183 is optional, for
// calls beyond sip.max_announcements). SIPp holds its media port (-mp) with
// -rtp_echo off and never reads it; the RTP is counted by stirgate's
// metrics and seen arriving in SIPp's socket queue.

// sippMediaPort is a loopback port for SIPp's -mp: SIPp binds it for audio
// and the port 2 above for video, so both must be free.
func sippMediaPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := freePort(t)
		portMu.Lock()
		free := !usedPorts[p+2] && !portBusy("udp", p+2)
		if free {
			usedPorts[p+2] = true // no other test of this process gets it
		}
		portMu.Unlock()
		if free {
			return p
		}
	}
	t.Fatal("no free loopback port p with p+2 free for SIPp's media")
	return 0
}

// udpQueued reports the bytes waiting in the receive queue of the UDP
// socket bound to 127.0.0.1:port (/proc/net/udp); ok is false when no such
// socket exists or the table cannot be read.
func udpQueued(port int) (queued int64, ok bool) {
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	local := fmt.Sprintf("0100007F:%04X", port) // 127.0.0.1, little-endian address as the kernel prints it
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue ...
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[1] != local {
			continue
		}
		_, rx, found := strings.Cut(f[4], ":")
		if !found {
			return 0, false
		}
		n, err := strconv.ParseInt(rx, 16, 64)
		return n, err == nil
	}
	return 0, false
}

// sippLogLines counts the lines of a SIPp -trace_logs file holding s.
func sippLogLines(t *testing.T, res sippResult, file, s string) int {
	t.Helper()
	return strings.Count(readFile(filepath.Join(res.Dir, file)), s)
}

// TestAnnouncementSIPp: one SIPp call to the DNC number of announcePolicy
// with sipp/uac_announce.xml: SIPp gets the 183 with a send-only PCMU
// answer and then the 603 with the 183's To tag (the scenario fails the
// call otherwise), the RTP arrives on SIPp's media port, and stirgate
// counts one completed announcement of 97 packets (928 ms of SIT and
// 2 x 500 ms of prompt, 20 ms each) sent to that port.
// It runs over UDP and over TCP (sipgo's transactions).
func TestAnnouncementSIPp(t *testing.T) {
	requireSipp(t)
	for _, transport := range []string{"u1", "t1"} {
		t.Run(transport, func(t *testing.T) { announceSIPp(t, transport) })
	}
}

func announceSIPp(t *testing.T, transport string) {
	cfg, p, pbx := announceProxy(t, "")
	mp := sippMediaPort(t)
	sp := startSipp(t, sippRun{
		Name: "announce-" + transport, Scenario: "uac_announce.xml", Remote: cfg.InsideAddr(), Transport: transport,
		Calls: 1, Timeout: 30 * time.Second,
		Extra: []string{"-mi", loopback, "-mp", strconv.Itoa(mp), "-trace_logs", "-log_file", "logs.log"},
	})
	// SIPp never reads its media socket (-rtp_echo off): what stirgate sent
	// stays queued there until SIPp exits, after the 603.
	var queued int64
poll:
	for range 600 {
		select {
		case <-sp.done:
			break poll
		case <-time.After(20 * time.Millisecond):
			if queued, _ = udpQueued(mp); queued > 0 {
				break poll
			}
		}
	}
	res := sp.Wait(t)
	res.require(t, 1)
	if _, err := os.Stat("/proc/net/udp"); err != nil {
		t.Logf("SIPp's socket queue not checked: %v", err)
	} else if queued == 0 {
		t.Errorf("no RTP queued on SIPp's media port %d while the call lasted", mp)
	}
	if n := sippLogLines(t, res, "logs.log", "early media: PCMU from 127.0.0.1:"); n != 1 {
		t.Errorf("SIPp logged %d early-media lines, want 1:\n%s", n, readFile(filepath.Join(res.Dir, "logs.log")))
	}

	m := p.Metrics(t)
	inside := map[string]string{"realm": "inside"}
	requireMetrics(t, m,
		metricWant{"stirgate_announcements_started_total", inside, 1},
		metricWant{"stirgate_announcements_ended_total", map[string]string{"realm": "inside", "result": "completed"}, 1},
		metricWant{"stirgate_announcements_refused_total", nil, 0},
		metricWant{"stirgate_rtp_packets_sent_total", inside, 97},
		metricWant{"stirgate_announcements_active", nil, 0})
	// The call line says what the caller got and where the stream went.
	target := fmt.Sprintf("announcement=intercept+prompt.wav x2 codec=PCMU to=%s packets=97 result=completed", hostPort(mp))
	waitLogCount(t, p, target, 1)
	found := false
	for _, l := range p.callLogLines() {
		found = found || strings.Contains(l, target) && strings.Contains(l, " status=603 ")
	}
	if !found {
		t.Errorf("no call line with status=603 and %q:\n%s", target, tail(p.Log(), 5))
	}
	if msgs := pbx.Messages(); len(msgs) != 0 {
		t.Errorf("the PBX received %d messages: a rejected call must not reach it", len(msgs))
	}
	sent, _ := m.Sum("stirgate_rtp_packets_sent_total", inside)
	late, _ := m.Sum("stirgate_rtp_late_packets_total", inside)
	t.Logf("%v RTP packets sent to SIPp's port %d (%d bytes queued there), %v late (> 5 ms)", sent, mp, queued, late)
}

// capPolicy is announcePolicy with a longer announcement: the SIT then the
// 0.5 s prompt 10 times, 5.9 s, so that 200 calls at 200 a second overlap.
var capPolicy = strings.Replace(announcePolicy, "repeat: 2}", "repeat: 10}", 1)

// capPackets is one capPolicy stream: 928 ms of SIT (7,424 samples) and
// 10 x 4,000 samples of prompt in 160-sample packets, the last one short.
const capPackets = (7424 + 10*4000 + 159) / 160

// TestAnnouncementCap: 200 concurrent announcement calls from SIPp
// (sipp/uac_announce_or_plain.xml) with sip.max_announcements 100. Every
// call gets its 603; exactly 100 hear the announcement (183, then RTP)
// and play it to the end, the other 100 get the plain 603 at once,
// counted as refused by the cap. Late packets are logged, not asserted
// (speed is a benchmark's job).
func TestAnnouncementCap(t *testing.T) {
	requireSipp(t)
	cfg, p, pbx := announceProxyWith(t, capPolicy, func(c *proxyConfig) { c.SIPExtra = "  max_announcements: 100\n" })

	mp := sippMediaPort(t)
	start := time.Now()
	res := runSipp(t, sippRun{
		Name: "announce-cap", Scenario: "uac_announce_or_plain.xml", Remote: cfg.InsideAddr(),
		Calls: 200, Rate: 200, Limit: 200, Timeout: 60 * time.Second, NoTrace: true,
		Extra: []string{"-rp", "1000", "-mi", loopback, "-mp", strconv.Itoa(mp), "-trace_logs", "-log_file", "logs.log"},
	})
	elapsed := time.Since(start)
	res.require(t, 200)
	if n := sippLogLines(t, res, "logs.log", "early media: PCMU from 127.0.0.1:"); n != 100 {
		t.Errorf("%d calls got the 183 with early media, want 100 (the cap)", n)
	}

	// Every 603 left after its stream's counters: they are final once
	// SIPp has all 200.
	m := p.Metrics(t)
	inside := map[string]string{"realm": "inside"}
	requireMetrics(t, m,
		metricWant{"stirgate_announcements_started_total", inside, 100},
		metricWant{"stirgate_announcements_refused_total", map[string]string{"realm": "inside", "reason": "cap"}, 100},
		metricWant{"stirgate_announcements_refused_total", nil, 100},
		metricWant{"stirgate_announcements_ended_total", map[string]string{"realm": "inside", "result": "completed"}, 100},
		metricWant{"stirgate_announcements_ended_total", nil, 100},
		metricWant{"stirgate_announcements_active", nil, 0},
		metricWant{"stirgate_rtp_packets_sent_total", inside, 100 * capPackets})
	if !waitLogCount(t, p, "result=completed", 100) || !waitLogCount(t, p, "refused=cap", 100) {
		t.Errorf("call lines: %d with result=completed, %d with refused=cap; want 100 each",
			strings.Count(p.Log(), "result=completed"), strings.Count(p.Log(), "refused=cap"))
	}
	if msgs := pbx.Messages(); len(msgs) != 0 {
		t.Errorf("the PBX received %d messages: a rejected call must not reach it", len(msgs))
	}
	started, _ := m.Sum("stirgate_announcements_started_total", inside)
	sent, _ := m.Sum("stirgate_rtp_packets_sent_total", inside)
	late, _ := m.Sum("stirgate_rtp_late_packets_total", inside)
	t.Logf("200 calls in %s (SIPp start to exit); %v streams of %d packets: %v packets sent, %v late (> 5 ms, %.3f%%)",
		elapsed.Round(time.Millisecond), started, capPackets, sent, late, 100*late/max(sent, 1))
}
