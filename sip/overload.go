package sip

import (
	"bytes"
	"hash/maphash"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Overload control: admission before the pipeline, driven by measured
// queue wait, so that load beyond capacity is refused cheaply instead of
// queued until every call is late.
//
// Two queue waits are measured from each datagram's arrival in the kernel
// (SO_TIMESTAMPNS on the UDP socket): every datagram's in the socket, and
// an initial INVITE's until the start of its pipeline (the socket plus
// the goroutine hand-off). Every interval the controller looks at the
// smallest wait of each (a standing queue, CoDel's signal): above
// target_wait in either, it admits fewer new INVITEs at the socket reader
// (multiplicative decrease), below it more (additive increase). The ones not admitted get a stateless 503 with a jittered
// Retry-After from the reader itself: parsed once, never a transaction or
// a goroutine. In overload, an INVITE that still waited more than twice
// target_wait when its pipeline starts is answered 503 there: it is late
// already.
//
// Never shed: requests other than INVITE (in-dialog requests, ACK,
// CANCEL, BYE), re-INVITEs (To tag), retransmissions of an admitted INVITE
// (its Call-ID), INVITEs from untrusted sources (they keep their 403) and
// calls to sip.overload.exempt_numbers (emergency).

// admission is the controller. It is shared by every socket reader of the
// edge (they share the CPU).
type admission struct {
	target, interval time.Duration
	retryAfter       time.Duration

	mu        sync.Mutex
	windowEnd time.Time
	// The smallest wait of the current interval, per signal.
	waits    [signals]window
	admit    float64 // fraction of new UDP INVITEs admitted at the reader
	off      bool    // sip.overload.mode off
	onChange func(admit float64)
}

// The two queues a message waits in, each a signal of its own (the
// smallest wait of one says nothing of the other's).
const (
	// inviteWait: an initial INVITE from its arrival in the kernel to the
	// start of its pipeline (socket, parsing, the goroutine hand-off).
	inviteWait = iota
	// socketWait: any UDP datagram (responses, ACKs and BYEs too) from its
	// arrival in the kernel to its read: under CPU saturation the socket
	// readers fall behind and every message queues here.
	socketWait
	signals
)

type window struct {
	min time.Duration
	saw bool
}

// minAdmit keeps some INVITEs coming through even in deep overload, so
// that their wait keeps being measured.
const minAdmit = 0.02

func newAdmission(p overloadPolicy, onChange func(float64)) *admission {
	return &admission{target: p.target, interval: p.interval, retryAfter: p.retryAfter, off: !p.on, admit: 1, onChange: onChange}
}

// observe records a wait of signal sig (inviteWait, socketWait) seen now.
func (a *admission) observe(sig int, wait time.Duration, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.off {
		return
	}
	a.roll(now)
	if w := &a.waits[sig]; !w.saw || wait < w.min {
		w.min, w.saw = wait, true
	}
}

// roll closes the window when its interval is over and adjusts admit by
// the worse of the signals' smallest waits: a standing queue in either.
func (a *admission) roll(now time.Time) {
	if now.Before(a.windowEnd) {
		return
	}
	old := a.admit
	var worst time.Duration
	saw := false
	for i := range a.waits {
		if w := &a.waits[i]; w.saw {
			worst, saw = max(worst, w.min), true
		}
		a.waits[i] = window{}
	}
	// Multiplicative decrease, additive increase (AIMD): fast away from a
	// standing queue, slowly back towards it, quickly only when there is
	// clearly none, so that admission settles instead of swinging between
	// all and too few.
	switch {
	case saw && worst > a.target:
		a.admit = max(a.admit*0.8, minAdmit)
	case saw && worst > a.target/4:
		a.admit = min(a.admit+0.02, 1)
	default:
		// Far below the target, or nothing at all in a whole interval.
		a.admit = min(a.admit+0.1, 1)
	}
	// Whole intervals since the window ended without any message rolled
	// nothing: nothing queued in them either. Without this, an edge that
	// went quiet after an overload kept its low admission until traffic
	// came back, and refused the first calls of a quiet network.
	if idle := now.Sub(a.windowEnd) / a.interval; idle > 0 && !a.windowEnd.IsZero() {
		a.admit = min(a.admit+0.1*float64(idle), 1)
	}
	a.windowEnd = now.Add(a.interval)
	if a.admit != old && a.onChange != nil {
		a.onChange(a.admit)
	}
}

// tick rolls the window every second until done, so that admission, and
// its gauge, recover while no message comes at all.
func (a *admission) tick(done <-chan struct{}) {
	every(time.Second, done, func(now time.Time) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if !a.off {
			a.roll(now)
		}
	})
}

// shedNext reports whether the next new INVITE at a reader should be
// refused.
func (a *admission) shedNext(now time.Time) bool {
	a.mu.Lock()
	if a.off {
		a.mu.Unlock()
		return false
	}
	a.roll(now)
	admit := a.admit
	a.mu.Unlock()
	return admit < 1 && rand.Float64() >= admit
}

// late reports whether an INVITE that waited wait is too late to serve:
// only in overload (admission below 1, after a whole interval of standing
// queue), so that a single stall in normal operation refuses nobody.
func (a *admission) late(wait time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.off && a.admit < 1 && wait > 2*a.target
}

// retryAfterHeader is Retry-After: retry_after ±50%, whole seconds, at
// least 1, so that refused callers do not all come back together.
func (a *admission) retryAfterHeader() sip.Header {
	a.mu.Lock()
	s := a.retryAfter.Seconds() * (0.5 + rand.Float64())
	a.mu.Unlock()
	return sip.NewHeader("Retry-After", strconv.Itoa(max(1, int(s+0.5))))
}

// callSet remembers Call-IDs (as 64-bit hashes) for between ttl and 2*ttl:
// two generations, rotated, no sweeper. Optionally with a time each.
type callSet struct {
	mu        sync.Mutex
	ttl       time.Duration
	rotated   time.Time
	cur, prev map[uint64]time.Time
}

var callIDSeed = maphash.MakeSeed()

func newCallSet(ttl time.Duration) *callSet {
	return &callSet{ttl: ttl, rotated: time.Now(), cur: map[uint64]time.Time{}, prev: map[uint64]time.Time{}}
}

func (s *callSet) rotate(now time.Time) {
	if now.Sub(s.rotated) >= s.ttl {
		s.prev, s.cur, s.rotated = s.cur, make(map[uint64]time.Time, len(s.cur)), now
	}
}

// put remembers h with t, unless it is there already (the first time
// stays: a retransmission does not restart the wait).
func (s *callSet) put(h uint64, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotate(time.Now())
	if _, ok := s.cur[h]; ok {
		return
	}
	if pt, ok := s.prev[h]; ok {
		t = pt
	}
	s.cur[h] = t
}

// get reports h's time and whether it is there.
func (s *callSet) get(h uint64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.cur[h]; ok {
		return t, true
	}
	t, ok := s.prev[h]
	return t, ok
}

// take is get, and forgets h.
func (s *callSet) take(h uint64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.cur[h]
	if !ok {
		t, ok = s.prev[h]
	}
	delete(s.cur, h)
	delete(s.prev, h)
	return t, ok
}

func hashCallID(b []byte) uint64       { return maphash.Bytes(callIDSeed, b) }
func hashCallIDString(s string) uint64 { return maphash.String(callIDSeed, s) }

var (
	invitePrefix = []byte("INVITE ")
	crlf         = []byte("\r\n")
)

// callIDOf finds the Call-ID value in a raw message without parsing it:
// the last "Call-ID:" or compact "i:" header line of the header section
// (case-insensitive name; the last, as sipgo's parser keeps it), trimmed.
// nil when there is none. It is only a key for the overload bookkeeping:
// sipgo's parser still decides what the message is.
func callIDOf(msg []byte) []byte {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	var found []byte
	// Lines end with CRLF only, as sipgo's parser splits them (a bare LF
	// is part of a value there).
	for rest := msg[:end]; len(rest) > 0; {
		i := bytes.Index(rest, crlf)
		if i < 0 {
			break
		}
		rest = rest[i+2:]
		line := rest
		if j := bytes.Index(line, crlf); j >= 0 {
			line = line[:j]
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimRight(name, " \t")
		if bytes.EqualFold(name, []byte("call-id")) || bytes.EqualFold(name, []byte("i")) {
			found = bytes.TrimSpace(value)
			if next := rest[len(line):]; bytes.HasPrefix(next, []byte("\r\n ")) || bytes.HasPrefix(next, []byte("\r\n\t")) {
				found = nil // folded onto the next line: not worth a key
			}
		}
	}
	if len(found) == 0 {
		return nil
	}
	return found
}

// set applies sip.overload (a reload); off admits everything.
func (a *admission) set(target, interval, retryAfter time.Duration, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.target, a.interval, a.retryAfter, a.off = target, interval, retryAfter, !on
	if !on && a.admit != 1 {
		a.admit = 1
		if a.onChange != nil {
			a.onChange(1)
		}
	}
}

// verdict is what a socket reader does with a new INVITE.
type verdict int

const (
	admitted verdict = iota
	shed
)

// admitInvite runs in realm r's socket reader for a datagram that starts
// with "INVITE ", before it is parsed. It notes when the INVITE
// arrived (for its queue wait) and, when the controller sheds, answers a
// new INVITE 503 statelessly: parsed here once, no transaction, no
// goroutine. Anything it cannot key or parse goes on to the normal path.
func (e *Edge) admitInvite(r *realm, sc *stampedConn, from net.Addr, data []byte) verdict {
	now := time.Now()
	arrived := now
	if !sc.arrived.IsZero() && sc.arrived.Before(now) {
		arrived = sc.arrived
	}
	cid := callIDOf(data)
	if cid == nil {
		return admitted
	}
	h := hashCallID(cid)
	if _, ok := e.refused.get(h); ok {
		// A retransmission of an INVITE refused here: the same answer
		// again, as a transaction would, but no second refusal.
		e.refuseAgain(r, sc, from, data)
		return shed
	}
	if !e.adm.shedNext(now) {
		e.arrivals.put(h, arrived)
		e.admitted.put(h, now)
		return admitted
	}
	if _, ok := e.admitted.get(h); ok {
		return admitted // a retransmission: its transaction absorbs it
	}
	msg, err := e.parser.ParseSIP(data)
	if err != nil {
		return admitted // the reader answers or drops it, and counts it
	}
	req, ok := msg.(*sip.Request)
	if !ok || !req.IsInvite() || req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil || hasToTag(req) {
		return admitted // not an initial INVITE, or broken: the normal path
	}
	g := e.gen.Load()
	if !g.realms[r.idx].trusts(parseSource(from.String()).Addr()) {
		return admitted // the normal path answers 403
	}
	if g.overload.exempts(req) {
		e.arrivals.put(h, arrived)
		e.admitted.put(h, now)
		return admitted
	}
	req.SetTransport("UDP")
	req.SetSource(from.String())
	// Counted before the 503 leaves: whoever reads it sees the count.
	e.m.requests.WithLabelValues(r.name, "INVITE").Inc()
	e.acks.add(ackKey(req)) // its ACK is hop-by-hop: absorbed
	e.refused.put(h, now)
	e.m.responses.WithLabelValues(r.name, "INVITE", "503").Inc()
	e.m.shed.WithLabelValues(r.name, "reader").Inc()
	if _, err := sc.WriteTo([]byte(e.overloadResponse(req).String()), from); err != nil {
		e.m.dropped.WithLabelValues(r.name, "overload_send_failed").Inc()
	}
	e.record(r, req, nil, 503, StageEdge, "overload: not admitted", arrived)
	return shed
}

// socketWait feeds the controller the socket wait of the datagram the
// reader of sc just read.
func (e *Edge) socketWait(sc *stampedConn) {
	if sc.arrived.IsZero() {
		return
	}
	now := time.Now()
	e.adm.observe(socketWait, max(now.Sub(sc.arrived), 0), now)
}

// refuseAgain answers a retransmitted INVITE that was refused 503 at the
// reader with a 503 again (the first may have been lost).
func (e *Edge) refuseAgain(r *realm, sc *stampedConn, from net.Addr, data []byte) {
	e.m.dropped.WithLabelValues(r.name, "retransmission").Inc()
	msg, err := e.parser.ParseSIP(data)
	req, ok := msg.(*sip.Request)
	if err != nil || !ok || req.Via() == nil || req.To() == nil || req.From() == nil || req.CallID() == nil || req.CSeq() == nil {
		return
	}
	if _, err := sc.WriteTo([]byte(e.overloadResponse(req).String()), from); err != nil {
		e.m.dropped.WithLabelValues(r.name, "overload_send_failed").Inc()
	}
}

// overloadResponse is the 503 of an INVITE refused for overload.
func (e *Edge) overloadResponse(req *sip.Request) *sip.Response {
	res := e.newResponse(req, 503, "Service Unavailable")
	res.AppendHeader(e.adm.retryAfterHeader())
	res.AppendHeader(reasonHeader(503, "overload"))
	return res
}

// startInvite is the overload check at the start of an initial INVITE's
// pipeline: it measures the INVITE's queue wait (UDP: since the kernel
// received it) and reports whether it is too late to serve.
func (e *Edge) startInvite(r *realm, g *generation, req *sip.Request, now time.Time) (late bool) {
	arrived, ok := e.arrivals.take(hashCallIDString(req.CallID().Value()))
	if !ok {
		return false // TCP, or a key the reader could not find
	}
	wait := now.Sub(arrived)
	e.m.queueWait.WithLabelValues(r.name).Observe(wait.Seconds())
	e.adm.observe(inviteWait, wait, now)
	return e.adm.late(wait) && !g.overload.exempts(req)
}

// exempts reports whether req calls an exempt (emergency) number: the user
// part of its Request-URI or To URI, or the number of a tel: URI.
func (o *overloadPolicy) exempts(req *sip.Request) bool {
	if len(o.exempt) == 0 {
		return false
	}
	uris := []*sip.Uri{&req.Recipient}
	if to := req.To(); to != nil {
		uris = append(uris, &to.Address)
	}
	for _, u := range uris {
		if o.exempt[userNumber(u)] {
			return true
		}
	}
	return false
}
