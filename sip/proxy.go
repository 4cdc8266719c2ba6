package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// CallRecord is the one record every initial INVITE ends in: what traceback
// needs to follow a call back to its source.
type CallRecord struct {
	At        time.Time // when the INVITE arrived
	CallID    string
	Realm     string
	Dir       Direction
	Source    netip.AddrPort
	Transport string // UDP | TCP
	Orig      string
	Dest      string
	// The numbers Orig and Dest were chosen from, and the Request-URI's
	// user part as received.
	FromTN, PAITN, ToTN, RequestURI string
	// Identity is the Identity header sent on (outbound: the one signed)
	// or received (inbound), raw; X5U and IAT are from its PASSporT.
	Identity      string
	X5U           string
	IAT           int64
	Verstat       Verstat
	VerifyFailure string
	Attest        string
	OrigID        string
	Customer      string
	Notes         []string
	NextHop       string // where the INVITE was forwarded ("" when it was not)
	Status        int
	Stage         string // the stage that decided: a pipeline stage, "edge" or "downstream"
	Rule          string // the policy rule that rejected the call ("" for none)
	Reason        string
	Duration      time.Duration // INVITE to final response
	// RingAfter is the time from the INVITE to the first 18x relayed
	// upstream, 0 when it never rang; CancelAfter the time to the caller's
	// CANCEL, 0 when it did not cancel. One-ring detection reads them.
	RingAfter, CancelAfter time.Duration
}

// DialogEnd is the end of an answered call's dialog (BYE answered, or the
// dialog expired): traceback keeps the call's duration.
type DialogEnd struct {
	CallID   string
	At       time.Time // when the call's INVITE arrived (CallRecord.At)
	Answered time.Time // when its 2xx was relayed
	Ended    time.Time
}

// Stage names for decisions the edge takes itself.
const (
	StageEdge       = "edge"
	StageDownstream = "downstream"
)

const allowMethods = "INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY, MESSAGE, SUBSCRIBE, REGISTER"

// serve is the entry of every request that arrives in realm r.
func (e *Edge) serve(r *realm, req *sip.Request, tx serverTx) {
	e.m.requests.WithLabelValues(r.name, methodLabel(string(req.Method))).Inc()
	g := e.gen.Load()
	pol := &g.realms[r.idx]

	src := parseSource(req.Source())
	if !pol.trusts(src.Addr()) {
		if req.IsAck() {
			e.m.dropped.WithLabelValues(r.name, "untrusted").Inc()
			return
		}
		e.refuse(r, req, tx, 403, "Forbidden", "source not trusted in realm "+r.name)
		return
	}
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil {
		if !req.IsAck() {
			e.refuse(r, req, tx, 400, "Bad Request", "missing From, To, Call-ID or CSeq")
		}
		return
	}
	// sipgo upper-cases the request-line method but not CSeq's.
	if !strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)) {
		if !req.IsAck() {
			e.refuse(r, req, tx, 400, "Bad Request", "CSeq method does not match")
		}
		return
	}
	if code, reason, text := e.unsupported(req); code != 0 {
		if !req.IsAck() {
			res := e.newResponse(req, code, reason)
			res.AppendHeader(reasonHeader(code, text))
			if code == 420 {
				res.AppendHeader(sip.NewHeader("Unsupported", quotedText(strings.Join(headerValues(req, "Proxy-Require"), ", "))))
			}
			e.respond(r, req, tx, res)
			e.recordRefusal(r, req, code, text)
		}
		return
	}
	switch req.Method {
	case sip.ACK:
		e.forwardAck(r, req)
		return
	case sip.CANCEL:
		// A CANCEL that matched an INVITE transaction was handled by it.
		e.respondLocal(r, req, tx, 481, "Call/Transaction Does Not Exist", "")
		return
	}
	if e.isOurs(req.Recipient.Host, req.Recipient.Port) && req.Method == sip.OPTIONS && !hasForeignRoute(e, req) {
		e.answerOptions(r, req, tx)
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		e.refuse(r, req, tx, 483, "Too Many Hops", "Max-Forwards is 0")
		return
	}
	for _, h := range req.GetHeaders("Via") {
		if v, ok := h.(*sip.ViaHeader); ok && e.isOurs(v.Host, v.Port) {
			e.refuse(r, req, tx, 482, "Loop Detected", "our Via is in the request")
			return
		}
	}
	_, inDialog := req.To().Params.Get("tag")
	switch {
	case inDialog:
		e.forwardInDialog(r, req, tx)
	case req.IsInvite() && e.answeredBefore(req):
		// A retransmission of an INVITE already answered 2xx, after its
		// server transaction ended (sip.transaction_linger): RFC 6026
		// Accepted absorbs it, and so do we.
		e.m.dropped.WithLabelValues(r.name, "retransmission").Inc()
	case req.IsInvite():
		e.handleInitialInvite(r, g, req, tx)
	default:
		// Out-of-dialog non-INVITE (REGISTER, MESSAGE, OPTIONS to a user,
		// SUBSCRIBE...): forwarded to the peer's next hop without the chain.
		if e.draining.Load() {
			e.respondDraining(r, req, tx)
			return
		}
		out := e.peer(r)
		e.relay(r, out, g, req, tx, toNextHop(g.realms[out.idx].nextHop, false), nil)
	}
}

// route says where and how a request is forwarded.
type route struct {
	dest        string // host:port
	transport   string // UDP | TCP
	recordRoute bool   // initial INVITE: add our two Record-Routes
	// retarget, for out-of-dialog requests, is the next hop that replaces a
	// Request-URI host addressed to stirgate itself (a PBX that uses
	// stirgate as its trunk sends INVITE sip:number@stirgate).
	retarget *NextHop
}

func toNextHop(nh NextHop, recordRoute bool) route {
	return route{dest: nh.Addr(), transport: nh.Transport, recordRoute: recordRoute, retarget: &nh}
}

// unsupported returns the RFC 3261 answer for what this proxy cannot
// handle: another SIP version (505), a Request-URI scheme other than sip,
// sips and tel (416), an extension required of proxies (420, 16.3 step 3).
func (e *Edge) unsupported(req *sip.Request) (int, string, string) {
	if req.SipVersion != "SIP/2.0" {
		return 505, "Version Not Supported", "only SIP/2.0"
	}
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips", "tel":
	default:
		return 416, "Unsupported URI Scheme", "Request-URI scheme"
	}
	if len(headerValues(req, "Proxy-Require")) > 0 {
		return 420, "Bad Extension", "no extension is supported in Proxy-Require"
	}
	return 0, "", ""
}

func hasForeignRoute(e *Edge, req *sip.Request) bool {
	for _, h := range req.GetHeaders("Route") {
		if rh, ok := h.(*sip.RouteHeader); ok && !e.isOurs(rh.Address.Host, rh.Address.Port) {
			return true
		}
	}
	return false
}

func (e *Edge) answerOptions(r *realm, req *sip.Request, tx serverTx) {
	if e.draining.Load() {
		e.respondDraining(r, req, tx)
		return
	}
	res := e.newResponse(req, 200, "OK")
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	e.respond(r, req, tx, res)
}

// handleInitialInvite runs the realm's pipeline and forwards the call.
func (e *Edge) handleInitialInvite(r *realm, g *generation, req *sip.Request, tx serverTx) {
	start := time.Now()
	if e.draining.Load() {
		e.respondDraining(r, req, tx)
		e.record(r, req, nil, 503, StageEdge, "draining", start)
		return
	}
	if e.startInvite(r, g, req, start) {
		e.respond(r, req, tx, e.overloadResponse(req))
		e.m.shed.WithLabelValues(r.name, "late").Inc()
		e.record(r, req, nil, 503, StageEdge, "overload: waited too long", start)
		return
	}
	e.inflight.Add(1)
	defer e.inflight.Add(-1)
	e.m.inProgress.WithLabelValues(r.name).Inc()
	defer e.m.inProgress.WithLabelValues(r.name).Dec()

	// A stateful proxy answers 100 at once so the caller stops retransmitting.
	_ = tx.Respond(e.newResponse(req, 100, "Trying"))

	call := newCall(r.name, r.dir, req)
	call.Transport = req.Transport()
	if call.Transport == "TLS" {
		if id, ok := e.tlsPeers.Load(req.Source()); ok {
			call.TLS = id.(*TLSIdentity)
		}
	}
	ctx, cancel := txContext(tx)
	defer cancel()
	err := g.chains[r.idx].Run(ctx, call, func(stage, decision string, _ time.Duration) {
		e.m.stages.WithLabelValues(r.name, stage, decision).Inc()
	})
	if err != nil {
		var rej *Rejection
		if !errors.As(err, &rej) {
			rej = &Rejection{Code: 500, Reason: "Server Internal Error", Cause: err}
		}
		res := e.newResponse(req, rej.Code, safeReason(rej.Reason))
		text := call.DecidedBy
		if rej.Cause != nil {
			text += ": " + rej.Cause.Error()
		}
		res.AppendHeader(reasonHeaderProto(rej.Protocol, rej.Code, text))
		if rej.RetryAfter > 0 {
			res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(rej.RetryAfter)))
		}
		for name, value := range rej.Headers {
			if h, err := safeHeader(name, value); err == nil {
				res.AppendHeader(h)
			}
		}
		status := rej.Code
		if rej.Announce == nil {
			e.respond(r, req, tx, res)
		} else {
			played, ok := e.announce(r, g, req, tx, rej.Announce, res)
			if !ok {
				e.respond(r, req, tx, res)
			} else {
				status = played.status
				if played.cancelled {
					call.cancelAt = time.Now()
				}
			}
			call.Notes = append(call.Notes, played.note)
		}
		rec := e.record(r, req, call, status, call.DecidedBy, text, start)
		call.end()
		g.chains[r.idx].finish(rec)
		return
	}

	if c, ok := tx.(interface{ wasCancelled() bool }); ok && c.wasCancelled() {
		// The caller gave up while the pipeline ran (an x5u fetch, a slow
		// store): it has its 487; the callee must not ring.
		e.m.responses.WithLabelValues(r.name, "INVITE", "487").Inc()
		rec := e.record(r, req, call, 487, StageEdge, "cancelled before it was forwarded", start)
		call.end()
		g.chains[r.idx].finish(rec)
		return
	}
	out := e.peer(r)
	nh := g.realms[out.idx].nextHop
	call.nextHop, call.arrived = g.realms[out.idx].nextHopText, start
	status, stage := e.relay(r, out, g, req, tx, toNextHop(nh, true), call)
	rec := e.record(r, req, call, status, stage, "", start)
	if status < 200 || status >= 300 { // a 2xx: the dialog ends the call
		call.end()
	}
	g.chains[r.idx].finish(rec)
}

// newCall is the stages' view of an initial INVITE that arrived in realm.
func newCall(realm string, dir Direction, req *sip.Request) *Call {
	call := &Call{
		CallID:     req.CallID().Value(),
		Realm:      realm,
		Dir:        dir,
		Source:     parseSource(req.Source()),
		FromTN:     fromNumber(req),
		PAITN:      paiNumber(req),
		ToTN:       Number(&req.To().Address),
		Dest:       Number(&req.Recipient),
		Identities: headerValues(req, "Identity"),
	}
	call.Orig = call.PAITN
	if call.Orig == "" {
		call.Orig = call.FromTN
	}
	return call
}

// txContext is a context that ends with the server transaction (or when
// the caller is done). sipgo v1.7.3's ServerTransactionContext cancels at
// once: it inverts OnTerminate's result.
func txContext(tx serverTx) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	if !tx.OnTerminate(func(string, error) { cancel() }) {
		cancel() // already terminated
	}
	return ctx, cancel
}

// applyCall writes the pipeline's outputs into the forwarded INVITE. A
// verstat that did not come from this call's verification is removed.
func applyCall(fwd *sip.Request, c *Call) error {
	if c == nil {
		return nil
	}
	stripVerstat(fwd)
	if c.Verstat != VerstatNone {
		if err := setVerstat(fwd, c.Verstat); err != nil {
			return err
		}
	}
	if c.DropIdentity || c.AddIdentity != "" {
		removeHeaders(fwd, "Identity")
	}
	if c.AddIdentity != "" {
		h, err := safeHeader("Identity", c.AddIdentity)
		if err != nil {
			return err
		}
		fwd.AppendHeader(h)
	}
	for name, value := range c.Tags {
		h, err := safeHeader(name, value)
		if err != nil {
			return err
		}
		removeHeaders(fwd, name)
		fwd.AppendHeader(h)
	}
	return nil
}

// prepare builds the request we send: a clone (sipgo changes what it sends
// in place, and the server transaction keeps the original), with our Via,
// Max-Forwards decremented, and for initial INVITEs our two Record-Routes.
func (e *Edge) prepare(in, out *realm, req *sip.Request, rt route) (*sip.Request, error) {
	transport := rt.transport
	ep, ok := out.ep[transport]
	if !ok {
		return nil, fmt.Errorf("realm %s has no %s listener", out.name, transport)
	}
	fwd := forwardCopy(req)
	fwd.SetDestination(rt.dest)
	fwd.SetTransport(transport)
	fwd.Laddr = sip.Addr{}
	if transport == "UDP" {
		fwd.Laddr = ep.laddr // leave from the listener, not an ephemeral port
	}
	if rt.retarget != nil && e.isOurs(fwd.Recipient.Host, fwd.Recipient.Port) {
		fwd.Recipient.Host, fwd.Recipient.Port = rt.retarget.Host, rt.retarget.Port
	}
	markReceived(fwd.Via(), req)

	// Max-Forwards is shared by Clone: replace, never mutate.
	mf := sip.MaxForwardsHeader(70)
	if old := req.MaxForwards(); old != nil {
		mf = sip.MaxForwardsHeader(old.Val() - 1)
		fwd.ReplaceHeader(&mf)
	} else {
		fwd.AppendHeader(&mf)
	}
	if rt.recordRoute {
		inEp := in.ep[strings.ToUpper(req.Transport())]
		if inEp.host == "" {
			inEp = in.ep["UDP"]
		}
		rr := recordRouteHeader
		if strings.EqualFold(req.Recipient.Scheme, "sips") {
			rr = secureRecordRoute
		}
		fwd.PrependHeader(
			rr(ep, transport),
			rr(inEp, strings.ToUpper(req.Transport())),
		)
	}
	via := &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       transport,
		Host:            ep.host,
		Port:            ep.port,
		Params:          sip.NewParams(),
	}
	via.Params.Add("branch", sip.GenerateBranchN(16))
	fwd.PrependHeader(via)
	return fwd, nil
}

// markReceived records where the request really came from in the upstream
// Via (RFC 3261 18.2.1 received, RFC 3581 rport), so responses find their way
// back through NATs. via is the forwarded request's own copy.
func markReceived(via *sip.ViaHeader, req *sip.Request) {
	src := parseSource(req.Source())
	if via == nil || !src.IsValid() {
		return
	}
	if rport, ok := via.Params.Get("rport"); ok && rport == "" {
		via.Params.Add("rport", strconv.Itoa(int(src.Port())))
		via.Params.Add("received", src.Addr().String())
		return
	}
	if via.Host != src.Addr().String() {
		via.Params.Add("received", src.Addr().String())
	}
}

func recordRouteHeader(ep endpoint, transport string) *sip.RecordRouteHeader {
	params := sip.NewParams()
	params.Add("transport", strings.ToLower(transport))
	params.Add("lr", "")
	return &sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: ep.host, Port: ep.port, UriParams: params}}
}

// secureRecordRoute is recordRouteHeader for a sips: request (RFC 3261
// 16.6 step 4, 26.2: the route set of a sips: dialog is sips: URIs).
func secureRecordRoute(ep endpoint, transport string) *sip.RecordRouteHeader {
	rr := recordRouteHeader(ep, transport)
	rr.Address.Scheme = "sips"
	return rr
}

// build prepares the forwarded request and applies the realm's UDP size
// policy: a request larger than udp.max_size goes over TCP (RFC 3261
// 18.1.1) or is refused with errTooLarge.
func (e *Edge) build(in, out *realm, pol *realmPolicy, req *sip.Request, rt route, call *Call) (*sip.Request, error) {
	fwd, err := e.prepare(in, out, req, rt)
	if err == nil {
		err = applyCall(fwd, call)
	}
	if err != nil || rt.transport != "UDP" || wireSize(fwd) <= pol.udpMax {
		return fwd, err
	}
	if !pol.oversizeTCP {
		return nil, errTooLarge
	}
	rt.transport = "TCP"
	return e.build(in, out, pol, req, rt, call)
}

var errTooLarge = errors.New("request larger than udp.max_size")

// relay forwards req statefully to dest and relays every response back through
// tx until the final one. It returns the final status sent upstream and who
// decided it.
func (e *Edge) relay(in, out *realm, g *generation, req *sip.Request, tx serverTx, rt route, call *Call) (int, string) {
	if call == nil { // initial INVITEs are counted by handleInitialInvite
		e.inflight.Add(1)
		defer e.inflight.Add(-1)
	}
	fwd, err := e.build(in, out, &g.realms[out.idx], req, rt, call)
	if errors.Is(err, errTooLarge) {
		e.respondLocal(in, req, tx, 513, "Message Too Large", err.Error())
		return 513, StageEdge
	}
	if err != nil {
		e.log.Error("cannot build forwarded request", "call_id", req.CallID().Value(), "err", err)
		e.respondLocal(in, req, tx, 500, "Server Internal Error", "cannot build request")
		return 500, StageEdge
	}

	dialCtx, cancelDial := context.WithTimeout(context.Background(), 5*time.Second)
	ctx, err := e.request(dialCtx, out, fwd)
	cancelDial()
	if err != nil {
		e.log.Warn("forward failed", "call_id", req.CallID().Value(), "realm", out.name, "dest", rt.dest, "err", err)
		e.respondLocal(in, req, tx, 503, "Service Unavailable", "next hop unreachable")
		return 503, StageEdge
	}
	if !req.IsInvite() {
		return e.relayNonInvite(in, req, tx, ctx)
	}
	return e.relayInvite(in, out, g, req, fwd, tx, ctx, call)
}

// keepAsBuilt is a sipgo request option that sends the request exactly as
// prepare built it (sipgo would otherwise fill or replace headers).
func keepAsBuilt(*sipgo.Client, *sip.Request) error { return nil }

func (e *Edge) relayNonInvite(in *realm, req *sip.Request, tx serverTx, ctx clientTx) (int, string) {
	for {
		select {
		case res := <-ctx.Responses():
			if res.StatusCode == 100 {
				continue
			}
			e.respond(in, req, tx, e.upstream(req, res))
			if res.StatusCode >= 200 {
				if req.Method == sip.BYE {
					e.dialogs.remove(req.CallID().Value())
				}
				return res.StatusCode, StageDownstream
			}
		case <-ctx.Done():
			code, reason := txFailure(ctx.Err())
			e.respondLocal(in, req, tx, code, reason, "downstream: "+errString(ctx.Err()))
			if req.Method == sip.BYE {
				e.dialogs.remove(req.CallID().Value())
			}
			return code, StageEdge
		}
	}
}

func (e *Edge) relayInvite(in, out *realm, g *generation, req, fwd *sip.Request, tx serverTx, ctx clientTx, call *Call) (int, string) {
	initial := !hasToTag(req)
	cancelled := make(chan struct{})
	var once sync.Once
	e.onCancel(in, tx, func() { once.Do(func() { close(cancelled) }) })

	timerC := time.NewTimer(g.inviteTimeout)
	defer timerC.Stop()

	var (
		provisional  bool   // a 1xx arrived: a CANCEL may be sent now
		cancelWanted bool   // upstream cancelled, or timer C fired
		answered     int    // status already sent upstream (487/408), 0 if none
		answeredBy   string // who decided it
		// giveUp fires cancelWait after our CANCEL: a callee that never
		// answers the INVITE finally must not hold the call (its goroutine,
		// record and drain) forever. An INVITE client transaction has no
		// timer once a 1xx arrived (RFC 3261 17.1.1.2).
		giveUp <-chan time.Time
	)
	sendCancel := func() {
		if provisional {
			e.cancelDownstream(out, fwd)
			giveUp = time.After(e.cancelWait)
		}
	}
	for {
		select {
		case res := <-ctx.Responses():
			code := res.StatusCode
			if code < 200 {
				if !provisional {
					provisional = true
					if cancelWanted {
						sendCancel()
					}
				}
				if code > 100 && answered == 0 {
					if call != nil && call.ringAt.IsZero() {
						call.ringAt = time.Now()
					}
					timerC.Reset(g.inviteTimeout)
					e.respond(in, req, tx, e.upstream(req, res))
				}
				continue
			}
			if answered != 0 {
				// Upstream already has its final answer. A 2xx that raced
				// the CANCEL set up a call nobody wants: end it downstream.
				if res.IsSuccess() {
					e.ackAndBye(out, fwd, res)
				}
				return answered, answeredBy
			}
			if res.IsSuccess() {
				if initial { // before the 2xx leaves: its ACK may come back at once
					e.dialogs.add(req.CallID().Value(), inviteIDOf(req), e.dialogEnded(call))
				}
				// 2xx retransmissions are absorbed by the client transaction
				// (RFC 6026 Accepted); relay them so a lost 2xx is recovered.
				// Once the server transaction has ended (it lingers less
				// than the client one), relay them statelessly.
				ctx.OnRetransmission(func(r *sip.Response) {
					if err := tx.Respond(e.upstream(req, r)); err != nil {
						e.strayResponse(out, r)
					}
				})
			}
			up := e.upstream(req, res)
			if call != nil && call.ResponseReason != "" {
				if h, err := safeHeader("Reason", call.ResponseReason); err == nil {
					up.AppendHeader(h)
				}
			}
			e.respond(in, req, tx, up)
			return code, StageDownstream
		case <-cancelled:
			cancelled = nil
			if call != nil && call.cancelAt.IsZero() {
				call.cancelAt = time.Now()
			}
			if answered == 0 {
				// The transaction has answered 200 to the CANCEL and 487 upstream.
				answered, answeredBy = 487, StageEdge
				e.m.responses.WithLabelValues(in.name, string(req.Method), "487").Inc()
				e.acks.add(ackKey(req))
			}
			if !cancelWanted {
				cancelWanted = true
				sendCancel()
			}
		case <-giveUp:
			// RFC 3261 9.1: no final response 64*T1 after the CANCEL, the
			// INVITE is considered cancelled. Upstream has its answer
			// (487 or 408); a late response is now a stray one.
			e.log.Warn("no final response to a CANCELled INVITE: given up", "call_id", req.CallID().Value(), "realm", out.name, "after", e.cancelWait)
			ctx.Terminate()
			return answered, answeredBy
		case <-timerC.C:
			if answered == 0 {
				answered, answeredBy = 408, StageEdge
				e.respondLocal(in, req, tx, 408, "Request Timeout", "no final response (timer C)")
			}
			if !cancelWanted {
				cancelWanted = true
				sendCancel()
			}
		case <-ctx.Done():
			if answered != 0 {
				return answered, answeredBy
			}
			code, reason := txFailure(ctx.Err())
			e.respondLocal(in, req, tx, code, reason, "downstream: "+errString(ctx.Err()))
			return code, StageEdge
		}
	}
}

// onCancel runs f when a CANCEL matches the INVITE of tx. The transaction
// answers the CANCEL itself (200, and 487 to the INVITE, before it calls
// f); sipgo's does not count them: they are counted here.
func (e *Edge) onCancel(in *realm, tx serverTx, f func()) {
	_, ours := tx.(*udpServerTx) // counts its CANCEL itself
	tx.OnCancel(func(*sip.Request) {
		if !ours {
			e.m.requests.WithLabelValues(in.name, "CANCEL").Inc()
			e.m.responses.WithLabelValues(in.name, "CANCEL", "200").Inc()
		}
		f()
	})
}

// answeredBefore reports whether the initial INVITE req is a
// retransmission of one already answered 2xx.
func (e *Edge) answeredBefore(req *sip.Request) bool {
	id, ok := e.dialogs.answered(req.CallID().Value())
	return ok && id.retransmits(req)
}

func hasToTag(req *sip.Request) bool {
	_, ok := req.To().Params.Get("tag")
	return ok
}

func errString(err error) string {
	if err == nil {
		return "transaction ended"
	}
	return err.Error()
}

// txFailure maps a client transaction that ended without a final response.
func txFailure(err error) (int, string) {
	if errors.Is(err, sip.ErrTransactionTimeout) {
		return 408, "Request Timeout"
	}
	return 503, "Service Unavailable"
}

// cancelDownstream sends the CANCEL for fwd (RFC 3261 9.1: same Request-URI,
// top Via, Call-ID, From, To, Route and CSeq number).
func (e *Edge) cancelDownstream(out *realm, fwd *sip.Request) {
	c := sameHop(fwd, sip.CANCEL, fwd.To())
	e.addUserAgent(c)
	c.SetTransport(fwd.Transport())
	c.SetDestination(fwd.Destination())
	c.Laddr = fwd.Laddr
	go e.sendAndDrain(out, c)
}

// addUserAgent names us (sip.user_agent) in a request stirgate originates
// (CANCEL, and the ACK and BYE that end a late 2xx); forwarded requests keep
// the caller's. The header is shared, never changed.
func (e *Edge) addUserAgent(req *sip.Request) {
	if e.uaHdr != nil {
		req.AppendHeader(e.uaHdr)
	}
}

// sendAndDrain sends a request we originate and reads its responses to the end.
func (e *Edge) sendAndDrain(out *realm, req *sip.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx2, err := e.request(ctx, out, req)
	if err != nil {
		e.log.Warn("send failed", "method", req.Method, "call_id", req.CallID().Value(), "err", err)
		return
	}
	for {
		select {
		case res := <-ctx2.Responses():
			if res.StatusCode >= 200 {
				return
			}
		case <-ctx2.Done():
			return
		}
	}
}

// ackAndBye ends a dialog that a 2xx set up after upstream was told the call
// failed (a 2xx racing a CANCEL, or timer C).
func (e *Edge) ackAndBye(out *realm, fwd *sip.Request, res *sip.Response) {
	target := fwd.Recipient
	if ct := res.Contact(); ct != nil {
		target = ct.Address
	}
	build := func(method sip.RequestMethod, seq uint32) *sip.Request {
		r := sip.NewRequest(method, *target.Clone())
		via := fwd.Via().Clone()
		via.Params = sip.NewParams()
		via.Params.Add("branch", sip.GenerateBranchN(16))
		r.AppendHeader(via)
		// Route set as the UAC sees it: Record-Route reversed, minus ours.
		rrs := res.GetHeaders("Record-Route")
		for i := len(rrs) - 1; i >= 0; i-- {
			if rr, ok := rrs[i].(*sip.RecordRouteHeader); ok && !e.isOurs(rr.Address.Host, rr.Address.Port) {
				r.AppendHeader(&sip.RouteHeader{Address: *rr.Address.Clone()})
			}
		}
		mf := sip.MaxForwardsHeader(70)
		r.AppendHeader(&mf)
		r.AppendHeader(sip.HeaderClone(fwd.From()))
		r.AppendHeader(sip.HeaderClone(res.To()))
		r.AppendHeader(sip.HeaderClone(fwd.CallID()))
		r.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
		e.addUserAgent(r)
		r.SetBody(nil)
		r.SetTransport(fwd.Transport())
		r.Laddr = fwd.Laddr
		dest := target.HostPort()
		if rt := r.Route(); rt != nil {
			dest = rt.Address.HostPort()
		}
		r.SetDestination(dest)
		return r
	}
	ack := build(sip.ACK, fwd.CSeq().SeqNo)
	if err := e.send(out, ack); err != nil {
		e.log.Warn("ACK for late 2xx failed", "call_id", fwd.CallID().Value(), "err", err)
	}
	go e.sendAndDrain(out, build(sip.BYE, fwd.CSeq().SeqNo+1))
}

// upstream turns a downstream response into the one we send upstream: our
// Via removed, sent back to where the request came from.
func (e *Edge) upstream(req *sip.Request, res *sip.Response) *sip.Response {
	up := upstreamCopy(res)
	up.SetTransport(req.Transport())
	up.SetDestination(responseAddr(req))
	return up
}

// responseAddr is where a response to req goes, the way sipgo sends its own
// (RFC 3261 18.2.2 with RFC 3581): the source address, with the source port
// when the top Via asks for rport, else the Via's port.
func responseAddr(req *sip.Request) string {
	src := parseSource(req.Source())
	via := req.Via()
	if via == nil || !src.IsValid() {
		return req.Source()
	}
	if rport, ok := via.Params.Get("rport"); ok && rport == "" {
		return src.String()
	}
	port := via.Port
	if port == 0 {
		port = sip.DefaultPort(req.Transport())
	}
	return netip.AddrPortFrom(src.Addr(), uint16(port)).String()
}

// inDialogTarget pops our own Route entries and returns where an in-dialog
// request goes next: the next Route, else the Request-URI. A request that is
// addressed to us with no route left (a UA that ignored Record-Route) goes to
// the next hop of the realm it leaves through, as an SBC with a fixed peer
// would send it.
func (e *Edge) inDialogTarget(fwd *sip.Request, out *realmPolicy) route {
	for {
		rt := fwd.Route()
		if rt == nil || !e.isOurs(rt.Address.Host, rt.Address.Port) {
			break
		}
		fwd.RemoveHeader("Route")
	}
	if fwd.Route() == nil && e.isOurs(fwd.Recipient.Host, fwd.Recipient.Port) {
		return toNextHop(out.nextHop, false)
	}
	u := &fwd.Recipient
	if rt := fwd.Route(); rt != nil {
		u = &rt.Address
	}
	rt := route{transport: "UDP"}
	t, _ := u.UriParams.Get("transport")
	switch {
	case strings.EqualFold(t, "tls") || strings.EqualFold(u.Scheme, "sips"):
		rt.transport = "TLS"
	case strings.EqualFold(t, "tcp"):
		rt.transport = "TCP"
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if rt.transport == "TLS" {
			port = 5061
		}
	}
	rt.dest = joinHostPort(u.Host, port)
	return rt
}

// forwardInDialog routes BYE, re-INVITE, UPDATE, INFO... by Route and
// Request-URI, without the pipeline.
func (e *Edge) forwardInDialog(r *realm, req *sip.Request, tx serverTx) {
	out := e.peer(r)
	g := e.gen.Load()
	routed := req.Clone()
	if req.IsInvite() {
		// A re-INVITE gets its 100 at once too (RFC 3261 16.7 step 10 asks
		// for one within 200 ms): the caller stops retransmitting.
		_ = tx.Respond(e.newResponse(req, 100, "Trying"))
	} else {
		// Under load the caller's ACK and BYE are handled concurrently
		// (each request runs in its own goroutine): let the ACK of
		// the dialog go first.
		e.dialogs.waitAck(req.CallID().Value(), ackWait)
	}
	e.relay(r, out, g, routed, tx, e.inDialogTarget(routed, &g.realms[out.idx]), nil)
}

// forwardAck forwards an ACK for a 2xx statelessly (it is its own
// transaction); ACKs for non-2xx are absorbed by their INVITE transaction.
func (e *Edge) forwardAck(r *realm, req *sip.Request) {
	if e.acks.absorbs(ackKey(req)) {
		return // hop-by-hop ACK of a non-2xx whose transaction already ended
	}
	out := e.peer(r)
	// No transaction keeps this ACK: pop our Route entries in place;
	// prepare makes the one copy that is sent.
	fwd, err := e.prepare(r, out, req, e.inDialogTarget(req, &e.gen.Load().realms[out.idx]))
	if err != nil {
		e.m.dropped.WithLabelValues(r.name, "ack_unroutable").Inc()
		return
	}
	if err := e.send(out, fwd); err != nil {
		e.m.dropped.WithLabelValues(r.name, "ack_send_failed").Inc()
		e.log.Debug("ACK forward failed", "call_id", req.CallID().Value(), "err", err)
	}
	e.dialogs.acked(req.CallID().Value())
}

// strayResponse handles a response no client transaction matched (in realm
// r): 2xx retransmissions after the transaction ended are relayed statelessly
// (RFC 3261 16.7); anything else is dropped and counted.
func (e *Edge) strayResponse(r *realm, res *sip.Response) {
	via := res.Via()
	cseq := res.CSeq()
	if via == nil || cseq == nil || !res.IsSuccess() || cseq.MethodName != sip.INVITE || !e.isOurs(via.Host, via.Port) {
		e.m.dropped.WithLabelValues(r.name, "stray_response").Inc()
		return
	}
	up := res.Clone()
	up.RemoveHeader("Via")
	if up.Via() == nil {
		e.m.dropped.WithLabelValues(r.name, "stray_response").Inc()
		return
	}
	up.SetDestination("")
	up.SetTransport(up.Via().Transport)
	dest := up.Destination()
	up.SetDestination(dest)
	if err := e.sendResponse(e.peer(r), up); err != nil {
		e.m.dropped.WithLabelValues(r.name, "stray_response").Inc()
	}
}

// ackKey identifies the INVITE transaction an ACK for a non-2xx belongs to
// (RFC 3261 17.1.1.3: same top Via branch, same Call-ID).
func ackKey(req *sip.Request) string {
	branch := ""
	if v := req.Via(); v != nil {
		branch, _ = v.Params.Get("branch")
	}
	callID := ""
	if c := req.CallID(); c != nil {
		callID = c.Value()
	}
	return branch + "\x00" + callID
}

// respond sends res through tx and counts it.
func (e *Edge) respond(r *realm, req *sip.Request, tx serverTx, res *sip.Response) {
	e.m.responses.WithLabelValues(r.name, methodLabel(string(req.Method)), statusLabel(res.StatusCode)).Inc()
	if req.IsInvite() && res.StatusCode >= 300 {
		e.acks.add(ackKey(req))
	}
	if err := tx.Respond(res); err != nil {
		e.log.Debug("respond failed", "realm", r.name, "call_id", req.CallID().Value(), "status", res.StatusCode, "err", err)
	}
}

// newResponse is a response stirgate makes itself (not one it relays): it
// names us in Server (sip.user_agent). The header is built once and shared
// by every response, never changed.
func (e *Edge) newResponse(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if e.serverHdr != nil {
		res.AppendHeader(e.serverHdr)
	}
	return res
}

// respondLocal answers req with our own status and a Reason header.
func (e *Edge) respondLocal(r *realm, req *sip.Request, tx serverTx, code int, reason, text string) {
	res := e.newResponse(req, code, reason)
	if code >= 300 && text != "" {
		res.AppendHeader(reasonHeader(code, text))
	}
	e.respond(r, req, tx, res)
}

// drainRetryAfter is the Retry-After (seconds) of the 503 a draining edge
// answers new requests with: the caller retries elsewhere or later.
var drainRetryAfter = sip.NewHeader("Retry-After", "30")

// respondDraining answers a new request while the edge drains: 503 with
// Retry-After, for INVITEs, OPTIONS and other out-of-dialog requests alike.
func (e *Edge) respondDraining(r *realm, req *sip.Request, tx serverTx) {
	res := e.newResponse(req, 503, "Service Unavailable")
	res.AppendHeader(drainRetryAfter)
	res.AppendHeader(reasonHeader(503, "draining"))
	e.respond(r, req, tx, res)
}

// refuse answers a request the edge itself refuses before any pipeline; an
// initial INVITE refused here still gets its call record.
func (e *Edge) refuse(r *realm, req *sip.Request, tx serverTx, code int, reason, text string) {
	e.respondLocal(r, req, tx, code, reason, text)
	e.recordRefusal(r, req, code, text)
}

// recordRefusal writes the call record of an initial INVITE the edge
// refused before its pipeline (stage edge); other requests have none.
func (e *Edge) recordRefusal(r *realm, req *sip.Request, code int, text string) {
	if req.IsInvite() && req.To() != nil && req.CallID() != nil && !hasToTag(req) {
		e.record(r, req, nil, code, StageEdge, text, time.Now())
	}
}

// reasonHeader builds an RFC 3326 Reason header; text is sanitised.
func reasonHeader(code int, text string) sip.Header {
	return reasonHeaderProto("SIP", code, text)
}

func reasonHeaderProto(protocol string, code int, text string) sip.Header {
	if protocol != "STIR" {
		protocol = "SIP"
	}
	return sip.NewHeader("Reason", fmt.Sprintf("%s;cause=%d;text=\"%s\"", protocol, code, quotedText(text)))
}

// safeReason keeps a reason phrase on one line.
func safeReason(s string) string {
	s = quotedText(s)
	if s == "" {
		return "Rejected"
	}
	return s
}

// dialogEnded is what runs when the dialog call set up ends: the call's
// OnEnd functions and the Ended option. It holds the Call for the dialog's
// life only when it has OnEnd functions.
func (e *Edge) dialogEnded(call *Call) func() {
	var end func()
	if call != nil && len(call.onEnd) > 0 {
		end = call.end
	}
	if e.ended == nil || call == nil {
		return end
	}
	report, d := e.ended, DialogEnd{CallID: strings.Clone(call.CallID), At: call.arrived, Answered: time.Now()}
	return func() {
		if end != nil {
			end()
		}
		d.Ended = time.Now()
		report(d)
	}
}

// record logs the one line per finished initial INVITE and hands the record
// to the configured sink.
func (e *Edge) record(r *realm, req *sip.Request, c *Call, status int, stage, reason string, start time.Time) CallRecord {
	rec := CallRecord{
		At:        start,
		CallID:    req.CallID().Value(),
		Realm:     r.name,
		Dir:       r.dir,
		Source:    parseSource(req.Source()),
		Transport: req.Transport(),
		Status:    status,
		Stage:     stage,
		Reason:    reason,
		Duration:  time.Since(start),
	}
	if c != nil {
		rec.Orig, rec.Dest, rec.Verstat = c.Orig, c.Dest, c.Verstat
		rec.Attest, rec.OrigID, rec.Customer, rec.Notes = c.Attest, c.OrigID, c.Customer, c.Notes
		rec.FromTN, rec.PAITN, rec.ToTN = c.FromTN, c.PAITN, c.ToTN
		rec.X5U, rec.IAT, rec.VerifyFailure, rec.Rule, rec.NextHop = c.X5U, c.IAT, c.VerifyFailure, c.Rule, c.nextHop
		switch {
		case c.AddIdentity != "":
			rec.Identity = c.AddIdentity
		case !c.DropIdentity:
			rec.Identity = strings.Join(c.Identities, ", ")
		}
		if !c.ringAt.IsZero() {
			rec.RingAfter = c.ringAt.Sub(start)
		}
		if !c.cancelAt.IsZero() {
			rec.CancelAfter = c.cancelAt.Sub(start)
		}
	} else {
		rec.Orig, rec.Dest = callingNumber(req), Number(&req.Recipient)
	}
	rec.RequestURI = req.Recipient.User
	if status >= 200 {
		e.m.inviteTime.WithLabelValues(r.name).Observe(rec.Duration.Seconds())
	}
	e.log.Info("call",
		"call_id", rec.CallID,
		"realm", rec.Realm,
		"dir", rec.Dir.String(),
		"source", rec.Source.String(),
		"from", rec.Orig,
		"to", rec.Dest,
		"status", rec.Status,
		"duration", rec.Duration,
		"stage", rec.Stage,
		"reason", rec.Reason,
		"attest", rec.Attest,
		"origid", rec.OrigID,
		"customer", rec.Customer,
		"verstat", string(rec.Verstat),
		"policy", strings.Join(rec.Notes, "; "),
		"ring_after", rec.RingAfter,
		"cancel_after", rec.CancelAfter,
	)
	if e.records != nil {
		e.records(rec)
	}
	return rec
}
