package sip

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/stirgate/stirgate/sip/media"
)

// Announcements (policy announce:): a rejected caller hears why before the
// final response. The edge answers 183 Session Progress with an SDP answer
// (RFC 3264, send-only), plays the announcement as RTP early media from a
// port of the realm's media range, then sends the rejection with the 183's
// To tag. A CANCEL stops the stream at once (the caller gets its 487 as
// for any call). When an announcement cannot be played (no offer it can
// answer, no media address, no free port, the node's cap) the caller gets
// the plain rejection and the refusal is counted by reason.

// mediaRealm is a realm's media: where its streams come from.
type mediaRealm struct {
	addr      netip.Addr // bound
	advertise netip.Addr // in the SDP answer
	ports     *media.Ports
	symmetric bool
}

// mediaPorts returns the port range of addr lo-hi, the same one for every
// generation that keeps it, so a reload neither resets its round robin nor
// forgets the ports in use.
func (e *Edge) mediaPorts(addr netip.Addr, lo, hi uint16) (*media.Ports, error) {
	e.portsMu.Lock()
	defer e.portsMu.Unlock()
	key := fmt.Sprintf("%s %d-%d", addr, lo, hi)
	if p, ok := e.ports[key]; ok {
		return p, nil
	}
	p, err := media.NewPorts(addr, lo, hi)
	if err != nil {
		return nil, err
	}
	if e.ports == nil {
		e.ports = map[string]*media.Ports{}
	}
	e.ports[key] = p
	return p, nil
}

// buildMedia is rc's media for a generation (nil: no address to play from).
func (e *Edge) buildMedia(rc MediaConfig) (*mediaRealm, error) {
	if rc.Addr == "" {
		return nil, nil
	}
	addr, err := netip.ParseAddr(rc.Addr)
	if err != nil {
		return nil, fmt.Errorf("media.addr: %w", err)
	}
	lo, hi, err := rc.PortRange()
	if err != nil {
		return nil, fmt.Errorf("media.ports: %w", err)
	}
	ports, err := e.mediaPorts(addr, lo, hi)
	if err != nil {
		return nil, err
	}
	m := &mediaRealm{addr: addr, advertise: addr, ports: ports, symmetric: rc.SymmetricRTP}
	if rc.Advertise != "" {
		if m.advertise, err = netip.ParseAddr(rc.Advertise); err != nil {
			return nil, fmt.Errorf("media.advertise: %w", err)
		}
	}
	return m, nil
}

// Why an announcement was not played (stirgate_announcements_refused_total).
const (
	refusedNoMedia  = "no_media"  // the realm has no media address
	refusedCap      = "cap"       // sip.max_announcements are playing
	refusedPorts    = "ports"     // every port of the range is in use
	refusedNoOffer  = "no_offer"  // no SDP in the INVITE (a late offer)
	refusedBadOffer = "bad_offer" // SDP that does not parse
	refusedNoAudio  = "no_audio"  // no RTP/AVP audio stream
	refusedNoCodec  = "no_codec"  // neither PCMU nor PCMA offered
	refusedHold     = "hold"      // the caller does not receive (0.0.0.0, sendonly, inactive)
	refused100rel   = "100rel"    // Require: 100rel: a reliable 183 (RFC 3262) stirgate does not send
)

// requires100rel reports whether req demands reliable provisional
// responses, which the announcement's plain 183 is not.
func requires100rel(req *sip.Request) bool {
	for _, v := range headerValues(req, "Require") {
		for _, opt := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(opt), "100rel") {
				return true
			}
		}
	}
	return false
}

func offerRefusal(err error) string {
	switch {
	case errors.Is(err, media.ErrNoOffer):
		return refusedNoOffer
	case errors.Is(err, media.ErrNoAudio):
		return refusedNoAudio
	case errors.Is(err, media.ErrNoCodec):
		return refusedNoCodec
	case errors.Is(err, media.ErrHold):
		return refusedHold
	}
	return refusedBadOffer
}

// announcementResult is how a played announcement ended.
type announcementResult struct {
	status    int    // the final response the caller got: the rejection's, or 487
	cancelled bool   // by the caller's CANCEL
	note      string // for the call record
}

// announce plays a to the caller of req and then sends res, the
// rejection. ok is false when it played nothing and sent nothing: the
// caller is then to get the plain rejection.
func (e *Edge) announce(r *realm, g *generation, req *sip.Request, tx serverTx, a *media.Announcement, res *sip.Response) (announcementResult, bool) {
	m := g.realms[r.idx].media
	refuse := func(reason string, err error) (announcementResult, bool) {
		e.m.announceRefused.WithLabelValues(r.name, reason).Inc()
		if err != nil {
			e.log.Debug("announcement not played", "realm", r.name, "call_id", req.CallID().Value(), "reason", reason, "err", err)
		}
		return announcementResult{note: "announcement=" + a.Name + " refused=" + reason}, false
	}
	if m == nil {
		return refuse(refusedNoMedia, nil)
	}
	if ct := req.ContentType(); ct == nil || !strings.EqualFold(strings.TrimSpace(strings.SplitN(ct.Value(), ";", 2)[0]), "application/sdp") {
		return refuse(refusedNoOffer, nil)
	}
	if requires100rel(req) {
		return refuse(refused100rel, nil)
	}
	if e.announcing.Add(1) > int64(g.maxAnnouncements) {
		e.announcing.Add(-1)
		return refuse(refusedCap, nil)
	}
	defer e.announcing.Add(-1)
	conn, err := m.ports.Open()
	if err != nil {
		return refuse(refusedPorts, err)
	}
	defer m.ports.Release(conn)
	local := netip.AddrPortFrom(m.advertise, conn.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	ans, err := media.AnswerOffer(req.Body(), local, rand.Uint64()>>1)
	if err != nil {
		return refuse(offerRefusal(err), err)
	}

	progress := e.newResponse(req, 183, "Session Progress")
	progress.AppendHeader(&sip.ContactHeader{Address: r.contactURI(req)})
	progress.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	progress.SetBody(ans.SDP)
	e.respond(r, req, tx, progress)
	// Every response to the INVITE carries the same To tag (RFC 3261
	// 8.2.6.2): the rejection ends the early dialog the 183 began.
	res.ReplaceHeader(sip.HeaderClone(progress.To()))

	ctx, cancel := txContext(tx)
	defer cancel()
	st, err := e.media.Play(conn, ans.Target, ans.Codec, a.Audio(ans.Codec))
	if err != nil { // the scheduler is closed: the edge is closing
		e.respond(r, req, tx, res)
		return announcementResult{status: res.StatusCode, note: "announcement=" + a.Name + " failed=closing"}, true
	}
	e.m.announceStarted.WithLabelValues(r.name).Inc()
	cancelled := make(chan struct{})
	var once sync.Once
	e.onCancel(r, tx, func() {
		st.Stop() // here, in the reader: no packet after the 487
		once.Do(func() { close(cancelled) })
	})
	if m.symmetric {
		go latch(conn, st, a.Duration+time.Second)
	}

	out := announcementResult{status: res.StatusCode}
	select {
	case <-st.Done():
	case <-cancelled:
		out.cancelled, out.status = true, 487
	case <-ctx.Done(): // the transaction ended under us (a closed connection)
		st.Stop()
	}
	<-st.Done()
	select {
	case <-cancelled: // a CANCEL that raced the stream's end: the caller has its 487
		out.cancelled, out.status = true, 487
	default:
	}
	rs := st.Result()
	result := "completed"
	switch {
	case out.cancelled:
		result = "cancelled"
		e.m.responses.WithLabelValues(r.name, "INVITE", "487").Inc()
	case rs.Stopped:
		result = "stopped"
	}
	e.m.announceEnded.WithLabelValues(r.name, result).Inc()
	e.m.rtpPackets.WithLabelValues(r.name).Add(float64(rs.Packets))
	e.m.rtpLate.WithLabelValues(r.name).Add(float64(rs.Late))
	if !out.cancelled {
		e.respond(r, req, tx, res)
	}
	out.note = fmt.Sprintf("announcement=%s codec=%s to=%s packets=%d result=%s", a.Name, ans.Codec.Name, st.Target(), rs.Packets, result)
	return out, true
}

// latch is symmetric RTP (RFC 4961's idea, as SBCs do for callers behind
// NAT): the first RTP packet that reaches the stream's port retargets the
// stream to where it came from. It gives up after wait, or when the port
// is closed at the stream's end.
func latch(conn *net.UDPConn, st *media.Stream, wait time.Duration) {
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var buf [1500]byte
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			return
		}
		if n >= 12 && buf[0]>>6 == 2 { // RTP version 2, at least a fixed header
			st.Retarget(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
			return
		}
	}
}

// contactURI is the listener req arrived on, for the Contact of the 183
// (the early dialog's remote target).
func (r *realm) contactURI(req *sip.Request) sip.Uri {
	t := strings.ToUpper(req.Transport())
	ep, ok := r.ep[t]
	if !ok {
		ep, t = r.ep["UDP"], "UDP"
	}
	u := sip.Uri{Scheme: "sip", Host: ep.host, Port: ep.port, UriParams: sip.NewParams()}
	if t != "UDP" {
		u.UriParams.Add("transport", strings.ToLower(t))
	}
	return u
}
