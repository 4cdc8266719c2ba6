package media

import (
	"net"
	"net/netip"
	"slices"
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

// TestStreamRetarget: symmetric RTP. Retarget, called while the stream
// plays, moves it to another address: the packets before it arrive at the
// first, every later one at the second, one sequence without a gap or a
// repeat, to the end of the audio.
func TestStreamRetarget(t *testing.T) {
	s := NewScheduler()
	defer s.Close()
	rx1, rx2, tx := listen(t), listen(t), listen(t)
	dst1, dst2 := rx1.LocalAddr().(*net.UDPAddr).AddrPort(), rx2.LocalAddr().(*net.UDPAddr).AddrPort()
	const packets = 50
	st, err := s.Play(tx, dst1, PCMU, make([]byte, 160*packets))
	if err != nil {
		t.Fatal(err)
	}
	// The first packet at the first address, then move.
	_ = rx1.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := rx1.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(buf[:n]); err != nil {
		t.Fatal(err)
	}
	first := received{pkt: p}
	if got := st.Target(); got != dst1 {
		t.Errorf("Target %s before Retarget, want %s", got, dst1)
	}
	st.Retarget(dst2)
	if got := st.Target(); got != dst2 {
		t.Errorf("Target %s after Retarget, want %s", got, dst2)
	}
	<-st.Done()
	got1 := append([]received{first}, receive(t, rx1, 300*time.Millisecond)...)
	got2 := receive(t, rx2, 300*time.Millisecond)
	if len(got1)+len(got2) != packets || len(got2) == 0 || st.Result().Packets != packets {
		t.Fatalf("%d packets at the first address, %d at the second; result %+v; want %d in all", len(got1), len(got2), st.Result(), packets)
	}
	all := append(got1, got2...)
	for i := 1; i < len(all); i++ {
		if all[i].pkt.SequenceNumber != all[i-1].pkt.SequenceNumber+1 || all[i].pkt.SSRC != st.SSRC() {
			t.Errorf("packet %d: seq %d SSRC %x after seq %d", i, all[i].pkt.SequenceNumber, all[i].pkt.SSRC, all[i-1].pkt.SequenceNumber)
		}
	}
}

// TestPlayFillsSlots: streams share a tick's wake-up, slotFull at most per
// tick: 250 streams started one after the other take 3 ticks of the 20,
// holding 100, 100 and 50.
func TestPlayFillsSlots(t *testing.T) {
	s := NewScheduler()
	defer s.Close()
	rx := listen(t)
	dst := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	audio := make([]byte, 160*500) // 10 s: none ends during the test
	perSlot := map[int]int{}
	for range 250 {
		st, err := s.Play(listen(t), dst, PCMU, audio)
		if err != nil {
			t.Fatal(err)
		}
		perSlot[slotOf(st.start)]++
	}
	var sizes []int
	for _, n := range perSlot {
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	if !slices.Equal(sizes, []int{50, 100, 100}) {
		t.Errorf("streams per tick %v, want [50 100 100]", sizes)
	}
}

// TestSendNoAlloc: sending a tick's packets allocates nothing, to IPv4 or
// IPv6 (the steady state of every stream).
func TestSendNoAlloc(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ap := netip.MustParseAddrPort(addr)
			rx, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
			if err != nil {
				t.Skipf("no %s: %v", addr, err)
			}
			defer rx.Close()
			tx, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			// A scheduler without its goroutine: the test serves the ticks.
			s := &Scheduler{epoch: time.Now()}
			st := &Stream{s: s, conn: tx, dst: rx.LocalAddr().(*net.UDPAddr).AddrPort(),
				audio: make([]byte, 160*1000), total: 1000, done: make(chan struct{})}
			s.slot[0] = []*Stream{st}
			s.playing = 1
			allocs := testing.AllocsPerRun(500, func() {
				s.serve(st.at, s.now())
			})
			if allocs != 0 || st.result.SendErrs != 0 || st.sent < 500 {
				t.Errorf("%.1f allocations a packet, %d sent, %d refused", allocs, st.sent, st.result.SendErrs)
			}
		})
	}
}

// BenchmarkStreams is the CPU of pacing n concurrent streams (the issue's
// goal: at most 1% of a core per 50 streams: the process's CPU, sending
// only), the pacing error's 99th percentile and maximum, the share of late
// packets (over LateAfter) and the allocations (goal 0 per packet; those
// reported are the streams' setup, spread over the rounds): each
// iteration is one 20 ms round of n packets, each stream from its own
// socket as from Ports. The "+reader" runs add what the edge always has, a
// goroutine blocked reading a socket (the SIP listener): the runtime then
// waits in epoll, and over loopback every packet sent wakes it (the
// kernel frees the packet, the socket becomes writable), so these runs
// measure that too.
//
//	go test -run '^$' -bench Streams -benchmem -benchtime 100x ./sip/media/
func BenchmarkStreams(b *testing.B) {
	for _, n := range []int{200, 1000} {
		for _, reader := range []bool{false, true} {
			name := "streams=" + strconv.Itoa(n)
			if reader {
				name += "+reader"
			}
			b.Run(name, func(b *testing.B) { benchStreams(b, n, reader) })
		}
	}
}

func benchStreams(b *testing.B, n int, reader bool) {
	s := NewScheduler()
	defer s.Close()
	open := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	// The receiver's socket is never read: the kernel drops what overflows
	// it, so the CPU measured is the sender's (and the kernel's send path),
	// not a receiving goroutine's.
	dst := open().LocalAddr().(*net.UDPAddr).AddrPort()
	txs := make([]*net.UDPConn, n)
	for i := range txs {
		txs[i] = open()
	}
	if reader {
		sip := open()
		go func() { _, _ = sip.Read(make([]byte, 1500)) }() // until Cleanup closes it
	}
	audio := make([]byte, 160*(b.N+1))
	var streams []*Stream
	cpu0 := cpuTime(b)
	b.ResetTimer()
	// Calls start at random times: spread the starts over one ptime.
	for i := range n {
		st, err := s.Play(txs[i], dst, PCMU, audio)
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
	p := s.Pacing()
	b.ReportMetric(float64(p.Late)/float64(p.Total)*100, "late-%")
	b.ReportMetric(float64(p.Quantile(0.99).Microseconds()), "p99-pacing-µs")
	b.ReportMetric(float64(p.Max.Microseconds()), "max-pacing-µs")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
