package media

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pion/rtp"
)

// Ptime is the audio in one RTP packet: 20 ms, 160 G.711 samples.
const (
	Ptime            = 20 * time.Millisecond
	samplesPerPacket = SampleRate * int(Ptime/time.Millisecond) / 1000
)

// LateAfter is the pacing error beyond which a packet counts as late.
const LateAfter = 5 * time.Millisecond

// tick is the scheduler's grid: every stream starts on a tick and Ptime is
// a multiple of it, so every packet is due on a tick and the streams fall
// into Ptime/tick slots. The scheduler wakes only on ticks whose slot
// holds streams, and Play fills the slots in use, up to slotFull streams
// each, before it opens another. A wake-up costs as much CPU as ten or
// more packets (on a 2-core VM, 40 to 90 µs against 3 to 5 µs), so 200
// streams cost 100 wake-ups a second, not 1,000, and a tick's burst stays
// short (slotFull packets, under a millisecond). The price: a stream's
// first packet goes out up to one Ptime after Play; the spacing of its
// packets is not affected.
const (
	tick     = time.Millisecond
	slots    = int(Ptime / tick)
	slotFull = 100
)

// Scheduler paces every announcement stream of the node from one
// goroutine: it sleeps until the next tick with packets due, sends them
// (one sendto each: every stream has its own socket, so there is nothing
// for sendmmsg to batch), and sleeps again. No goroutine per stream, no
// busy loop; a stream's packet times follow from its start and its packet
// count, not from when the previous one went out, so a late wake-up never
// drifts. Pacing reports how late the packets went out.
type Scheduler struct {
	epoch time.Time // times are durations since it (the monotonic clock)
	mu    sync.Mutex
	// slot[i] holds the playing streams whose packets are due on the ticks
	// t with t/tick = i modulo slots, in the order Play added them: each
	// keeps its place in the tick's burst.
	slot    [slots][]*Stream
	playing int
	next    time.Duration // the first tick not yet served
	wakeAt  time.Duration // when the scheduler will next look; -1: it is not asleep
	pacing  Pacing
	closed  bool
	waker   waker
	stopped chan struct{}
	buf     [1500]byte // the packet being sent: one goroutine uses it
}

// NewScheduler starts a scheduler; Close stops it and every stream.
func NewScheduler() *Scheduler {
	s := &Scheduler{epoch: time.Now(), wakeAt: -1, stopped: make(chan struct{})}
	s.waker.init()
	go s.run()
	return s
}

// now is the time since s.epoch.
func (s *Scheduler) now() time.Duration { return time.Since(s.epoch) }

// slotOf is the slot of the streams due at t (a tick).
func slotOf(t time.Duration) int { return int(t/tick) % slots }

// Stream is one announcement being played to one caller.
type Stream struct {
	s      *Scheduler
	conn   *net.UDPConn
	dst    netip.AddrPort // guarded by s.mu
	audio  []byte         // G.711, a multiple of nothing in particular: the last packet may be short
	pkt    rtp.Packet
	start  time.Duration // since s.epoch, on a tick
	at     time.Duration // the next packet's time: start + sent*Ptime
	sent   int           // packets sent
	total  int
	ended  bool
	done   chan struct{}
	result Result
}

// Result is how a stream went.
type Result struct {
	Packets  int           // packets sent
	Late     int           // sent more than LateAfter after their time
	MaxLate  time.Duration // the largest pacing error
	Stopped  bool          // ended by Stop (a CANCEL) before the audio ran out
	SendErrs int           // packets the socket refused
}

// ErrClosed: the scheduler is closed.
var ErrClosed = errors.New("media: scheduler closed")

// Play sends audio (G.711 bytes of codec) from conn to dst as RTP, one
// packet every Ptime from a tick within one Ptime, with a random SSRC,
// first sequence number and timestamp, and the marker bit on the first
// packet (RFC 3551: the start of a talkspurt).
func (s *Scheduler) Play(conn *net.UDPConn, dst netip.AddrPort, codec Codec, audio []byte) (*Stream, error) {
	st := &Stream{
		s: s, conn: conn, dst: dst, audio: audio,
		total: (len(audio) + samplesPerPacket - 1) / samplesPerPacket,
		done:  make(chan struct{}),
	}
	st.pkt.Header = rtp.Header{Version: 2, PayloadType: codec.PayloadType, Marker: true,
		SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32(), SSRC: rand.Uint32()}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if st.total == 0 {
		s.mu.Unlock()
		st.ended = true
		close(st.done)
		return st, nil
	}
	first := (s.now() + tick - 1) / tick * tick
	if s.playing == 0 {
		s.next = first // idle since s.next: the ticks between need no serving
	}
	// Ticks not yet served only: a slot holds streams due on its next turn.
	st.start = s.startTick(max(first, s.next))
	st.at = st.start
	k := slotOf(st.start)
	s.slot[k] = append(s.slot[k], st)
	s.playing++
	wake := s.wakeAt < 0 || st.start < s.wakeAt
	s.mu.Unlock()
	if wake {
		s.waker.wake()
	}
	return st, nil
}

// startTick picks a new stream's first tick, from the Ptime starting at
// first: the soonest slot in use with room; else the soonest empty one;
// else (slotFull streams in every slot) the least full.
func (s *Scheduler) startTick(first time.Duration) time.Duration {
	empty, least := time.Duration(-1), first
	for t := first; t < first+Ptime; t += tick {
		n := len(s.slot[slotOf(t)])
		if n > 0 && n < slotFull {
			return t
		}
		if n == 0 && empty < 0 {
			empty = t
		}
		if n < len(s.slot[slotOf(least)]) {
			least = t
		}
	}
	if empty >= 0 {
		return empty
	}
	return least
}

// Stop ends the stream at once (the caller cancelled): no packet is sent
// after it returns. Stopping an ended stream does nothing.
func (st *Stream) Stop() {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.ended {
		return
	}
	st.result.Stopped = true
	k := slotOf(st.at)
	s.slot[k] = slices.DeleteFunc(s.slot[k], func(x *Stream) bool { return x == st })
	s.end(st)
}

// end marks st ended (with s.mu held; st no longer in a slot).
func (s *Scheduler) end(st *Stream) {
	st.ended = true
	s.playing--
	close(st.done)
}

// Retarget sends the stream's later packets to dst: symmetric RTP, once
// the caller's own RTP shows where it really listens (behind a NAT, not
// where its SDP said). Safe while the stream plays.
func (st *Stream) Retarget(dst netip.AddrPort) {
	st.s.mu.Lock()
	st.dst = dst
	st.s.mu.Unlock()
}

// Target is where the stream's packets go.
func (st *Stream) Target() netip.AddrPort {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	return st.dst
}

// Done is closed when the stream has ended.
func (st *Stream) Done() <-chan struct{} { return st.done }

// Result is valid once Done is closed.
func (st *Stream) Result() Result { return st.result }

// SSRC is the stream's RTP SSRC.
func (st *Stream) SSRC() uint32 { return st.pkt.SSRC }

// Close stops the scheduler and every stream.
func (s *Scheduler) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for k := range s.slot {
			for _, st := range s.slot[k] {
				st.result.Stopped = true
				s.end(st)
			}
			s.slot[k] = nil
		}
	}
	s.mu.Unlock()
	s.waker.wake()
	<-s.stopped
}

func (s *Scheduler) run() {
	defer close(s.stopped)
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		now := s.now()
		// Every tick that has come, in order: after a stall the streams
		// catch up, each packet at its own time.
		for s.playing > 0 && s.next <= now {
			now = s.serve(s.next, now)
			s.next += tick
		}
		wait := time.Duration(-1) // no stream: until Play
		s.wakeAt = -1
		if s.playing > 0 {
			s.wakeAt = s.next
			for s.wakeAt < s.next+Ptime && len(s.slot[slotOf(s.wakeAt)]) == 0 {
				s.wakeAt += tick
			}
			wait = max(s.wakeAt-now, 0)
		}
		s.mu.Unlock()
		s.waker.sleep(wait)
	}
}

// serve sends the packets due at tick t (with s.mu held); now is the time
// and serve returns it, read again after each packet, so a packet's error
// counts the sends before it.
func (s *Scheduler) serve(t, now time.Duration) time.Duration {
	k := slotOf(t)
	kept := s.slot[k][:0]
	for _, st := range s.slot[k] {
		if st.at > t { // started after a stall, on this slot's next turn
			kept = append(kept, st)
			continue
		}
		s.send(st, now-st.at)
		now = s.now()
		if st.sent == st.total {
			s.end(st)
			continue
		}
		kept = append(kept, st)
	}
	clear(s.slot[k][len(kept):]) // the ended streams' audio can go
	s.slot[k] = kept
	return now
}

// send sends st's next packet (with s.mu held); late is its pacing error.
func (s *Scheduler) send(st *Stream, late time.Duration) {
	from := st.sent * samplesPerPacket
	st.pkt.Payload = st.audio[from:min(from+samplesPerPacket, len(st.audio))]
	n, err := st.pkt.MarshalTo(s.buf[:])
	if err == nil {
		_, err = st.conn.WriteToUDPAddrPort(s.buf[:n], st.dst)
	}
	if err != nil {
		st.result.SendErrs++
		s.pacing.SendErrs++
	}
	s.pacing.add(late)
	st.result.Packets++
	if late > LateAfter {
		st.result.Late++
	}
	st.result.MaxLate = max(st.result.MaxLate, late)
	st.sent++
	st.at = st.start + time.Duration(st.sent)*Ptime
	st.pkt.Marker = false
	st.pkt.SequenceNumber++
	st.pkt.Timestamp += uint32(samplesPerPacket)
}
