package media

import (
	"container/heap"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
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

// earlySlack: a packet due within this much is sent with those due now, so
// streams whose times are close share one wake-up (with 200 streams spread
// over a ptime, one wake-up per packet cost more than the packets).
const earlySlack = time.Millisecond

// Scheduler paces every announcement stream of the node from one
// goroutine: it sleeps until the earliest packet is due, sends every packet
// that is due, and sleeps again. No goroutine per stream, no busy loop;
// a stream's packet times follow from its start and its packet count, not
// from when the previous one went out, so a late wake-up never drifts.
type Scheduler struct {
	mu      sync.Mutex
	due     streamHeap
	wake    chan struct{}
	closed  chan struct{}
	stopped chan struct{}
	buf     [1500]byte // the packet being sent: one goroutine uses it
}

// NewScheduler starts a scheduler; Close stops it and every stream.
func NewScheduler() *Scheduler {
	s := &Scheduler{wake: make(chan struct{}, 1), closed: make(chan struct{}), stopped: make(chan struct{})}
	go s.run()
	return s
}

// Stream is one announcement being played to one caller.
type Stream struct {
	s      *Scheduler
	conn   *net.UDPConn
	dst    netip.AddrPort
	audio  []byte // G.711, a multiple of nothing in particular: the last packet may be short
	pkt    rtp.Packet
	start  time.Time
	sent   int // packets sent
	total  int
	index  int // in the heap; -1 once the stream has ended
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
// packet every Ptime from now, with a random SSRC, first sequence number and
// timestamp, and the marker bit on the first packet (RFC 3551: the start of
// a talkspurt).
func (s *Scheduler) Play(conn *net.UDPConn, dst netip.AddrPort, codec Codec, audio []byte) (*Stream, error) {
	st := &Stream{
		s: s, conn: conn, index: -1, dst: dst, audio: audio, start: time.Now(),
		total: (len(audio) + samplesPerPacket - 1) / samplesPerPacket,
		done:  make(chan struct{}),
	}
	st.pkt.Header = rtp.Header{Version: 2, PayloadType: codec.PayloadType, Marker: true,
		SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32(), SSRC: rand.Uint32()}
	if st.total == 0 {
		close(st.done)
		return st, nil
	}
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		return nil, ErrClosed
	default:
	}
	heap.Push(&s.due, st)
	s.mu.Unlock()
	s.poke()
	return st, nil
}

// Stop ends the stream at once (the caller cancelled): no packet is sent
// after it returns. Stopping an ended stream does nothing.
func (st *Stream) Stop() {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	if st.index >= 0 {
		st.result.Stopped = true
		heap.Remove(&st.s.due, st.index)
		close(st.done)
	}
}

// next is when the stream's next packet is due.
func (st *Stream) next() time.Time { return st.start.Add(time.Duration(st.sent) * Ptime) }

// Done is closed when the stream has ended.
func (st *Stream) Done() <-chan struct{} { return st.done }

// Result is valid once Done is closed.
func (st *Stream) Result() Result { return st.result }

// SSRC is the stream's RTP SSRC.
func (st *Stream) SSRC() uint32 { return st.pkt.SSRC }

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close stops the scheduler and every stream.
func (s *Scheduler) Close() {
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		<-s.stopped
		return
	default:
	}
	close(s.closed)
	for len(s.due) > 0 {
		st := heap.Pop(&s.due).(*Stream)
		st.result.Stopped = true
		close(st.done)
	}
	s.mu.Unlock()
	<-s.stopped
}

func (s *Scheduler) run() {
	defer close(s.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		for len(s.due) > 0 {
			st := s.due[0]
			at := st.next()
			if at.After(now.Add(earlySlack)) {
				break
			}
			s.send(st, now.Sub(at)) // negative: sent early, within earlySlack
			if st.sent == st.total {
				heap.Pop(&s.due)
				close(st.done)
			} else {
				heap.Fix(&s.due, 0)
			}
		}
		wait := time.Hour
		if len(s.due) > 0 {
			wait = time.Until(s.due[0].next())
		}
		s.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-s.closed:
			return
		case <-s.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
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
	}
	st.result.Packets++
	if late > LateAfter {
		st.result.Late++
	}
	st.result.MaxLate = max(st.result.MaxLate, late)
	st.sent++
	st.pkt.Marker = false
	st.pkt.SequenceNumber++
	st.pkt.Timestamp += uint32(samplesPerPacket)
}

// streamHeap orders streams by when their next packet is due.
type streamHeap []*Stream

func (h streamHeap) Len() int           { return len(h) }
func (h streamHeap) Less(i, j int) bool { return h[i].next().Before(h[j].next()) }
func (h streamHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *streamHeap) Push(x any) {
	st := x.(*Stream)
	st.index = len(*h)
	*h = append(*h, st)
}
func (h *streamHeap) Pop() any {
	old := *h
	st := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	st.index = -1
	return st
}
