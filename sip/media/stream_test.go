package media

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// listen opens a loopback UDP socket.
func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type received struct {
	pkt rtp.Packet
	at  time.Time
}

// receive reads RTP packets until none came for idle.
func receive(t *testing.T, c *net.UDPConn, idle time.Duration) []received {
	t.Helper()
	var out []received
	buf := make([]byte, 1500)
	for i := 0; i < 10000; i++ {
		_ = c.SetReadDeadline(time.Now().Add(idle))
		n, err := c.Read(buf)
		if err != nil {
			return out
		}
		var p rtp.Packet
		if err := p.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
			t.Fatalf("packet %d: %v", len(out), err)
		}
		out = append(out, received{p, time.Now()})
	}
	return out
}

// TestStreamPacketsFollowRTP: the intercept SIT (928 ms) arrives as 47
// packets of PCMA: payload type 8, sequence numbers +1, timestamps +160,
// the marker on the first packet only, one SSRC, and the audio as sent.
func TestStreamPacketsFollowRTP(t *testing.T) {
	s := NewScheduler()
	defer s.Close()
	pcm, err := SITIntercept.Samples()
	if err != nil {
		t.Fatal(err)
	}
	audio := PCMA.Encode(nil, pcm)
	rx, tx := listen(t), listen(t)
	st, err := s.Play(tx, rx.LocalAddr().(*net.UDPAddr).AddrPort(), PCMA, audio)
	if err != nil {
		t.Fatal(err)
	}
	got := receive(t, rx, 500*time.Millisecond)
	select {
	case <-st.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("stream not done")
	}
	want := (len(audio) + 159) / 160
	if len(got) != want || st.Result().Packets != want || st.Result().Stopped {
		t.Fatalf("%d packets received, %+v; want %d", len(got), st.Result(), want)
	}
	var payload []byte
	for i, r := range got {
		p := r.pkt
		if p.PayloadType != 8 || p.SSRC != st.SSRC() || p.Marker != (i == 0) {
			t.Errorf("packet %d: PT %d SSRC %x marker %v", i, p.PayloadType, p.SSRC, p.Marker)
		}
		if i > 0 {
			prev := got[i-1].pkt
			if p.SequenceNumber != prev.SequenceNumber+1 || p.Timestamp != prev.Timestamp+160 {
				t.Errorf("packet %d: seq %d ts %d after seq %d ts %d", i, p.SequenceNumber, p.Timestamp, prev.SequenceNumber, prev.Timestamp)
			}
		}
		payload = append(payload, p.Payload...)
	}
	if string(payload) != string(audio) {
		t.Error("the audio received is not the audio sent")
	}
	span := got[len(got)-1].at.Sub(got[0].at)
	t.Logf("%d packets over %s (%s expected), max pacing error %s, late %d", len(got), span, time.Duration(want-1)*Ptime, st.Result().MaxLate, st.Result().Late)
}

// TestStreamStop: Stop (the caller's CANCEL) ends a stream at once: no
// packet after it returns, Done closed, Result says stopped.
func TestStreamStop(t *testing.T) {
	s := NewScheduler()
	defer s.Close()
	rx, tx := listen(t), listen(t)
	audio := make([]byte, 160*500) // 10 s
	st, err := s.Play(tx, rx.LocalAddr().(*net.UDPAddr).AddrPort(), PCMU, audio)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	st.Stop()
	select {
	case <-st.Done():
	default:
		t.Fatal("Done not closed by Stop")
	}
	n := st.Result().Packets
	got := receive(t, rx, 300*time.Millisecond)
	if len(got) != n || !st.Result().Stopped || n == 0 || n >= 500 {
		t.Fatalf("%d packets sent before Stop, %d received; result %+v", n, len(got), st.Result())
	}
	st.Stop() // twice: nothing happens
}

// TestSchedulerClose ends every stream.
func TestSchedulerClose(t *testing.T) {
	s := NewScheduler()
	rx, tx := listen(t), listen(t)
	var streams []*Stream
	for range 3 {
		st, err := s.Play(tx, rx.LocalAddr().(*net.UDPAddr).AddrPort(), PCMU, make([]byte, 160*100))
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	s.Close()
	for i, st := range streams {
		select {
		case <-st.Done():
		default:
			t.Errorf("stream %d not done after Close", i)
		}
	}
	if _, err := s.Play(tx, rx.LocalAddr().(*net.UDPAddr).AddrPort(), PCMU, make([]byte, 160)); err != ErrClosed {
		t.Errorf("Play after Close: %v", err)
	}
}

// BenchmarkStreams is the CPU of pacing n concurrent streams (the issue's
// goal: at most 1% of a core per 50 streams: the process's CPU, sending
// only), the share of late packets (pacing error
// over LateAfter) and the allocations (goal 0 per packet; those reported
// are the streams' setup, spread over the rounds): each iteration is one
// 20 ms round of n packets.
//
//	go test -run '^$' -bench Streams -benchmem ./media/
func BenchmarkStreams(b *testing.B) {
	for _, n := range []int{200, 1000} {
		b.Run("streams="+strconv.Itoa(n), func(b *testing.B) {
			s := NewScheduler()
			defer s.Close()
			rx, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
			if err != nil {
				b.Fatal(err)
			}
			defer rx.Close()
			// The receiver's socket is never read: the kernel drops what
			// overflows it, so the CPU measured is the sender's (and the
			// kernel's send path), not a receiving goroutine's.
			tx, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Close()
			dst := rx.LocalAddr().(*net.UDPAddr).AddrPort()
			audio := make([]byte, 160*(b.N+1))
			var streams []*Stream
			cpu0 := cpuTime(b)
			b.ResetTimer()
			// Calls start at random times: spread the starts over one ptime.
			for i := range n {
				st, err := s.Play(tx, dst, PCMU, audio)
				if err != nil {
					b.Fatal(err)
				}
				streams = append(streams, st)
				if i%10 == 9 {
					time.Sleep(Ptime * 10 / time.Duration(n))
				}
			}
			for _, st := range streams {
				<-st.Done()
			}
			b.StopTimer()
			cpu := cpuTime(b) - cpu0
			b.ReportMetric(100*cpu.Seconds()/b.Elapsed().Seconds()/float64(n)*50, "core-%-per-50-streams")
			var late int
			var maxLate time.Duration
			for _, st := range streams {
				late += st.Result().Late
				maxLate = max(maxLate, st.Result().MaxLate)
			}
			b.ReportMetric(float64(late)/float64(n*(b.N+1))*100, "late-%")
			b.ReportMetric(float64(maxLate.Microseconds()), "max-late-µs")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
