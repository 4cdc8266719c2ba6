package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// Documentation addresses (RFC 5737) that stand for our listeners in a dry
// run's forwarded INVITE (Via, Record-Route) and for the next hop.
var (
	dryInside  = endpoint{host: "192.0.2.1", port: 5060, laddr: sip.Addr{IP: net.IPv4(192, 0, 2, 1), Port: 5060}}
	dryOutside = endpoint{host: "192.0.2.2", port: 5060, laddr: sip.Addr{IP: net.IPv4(192, 0, 2, 2), Port: 5060}}
	dryNextHop = "192.0.2.3:5060"
)

// ErrNotInitialInvite is DryRun's answer to anything but an initial INVITE.
var ErrNotInitialInvite = errors.New("not an initial INVITE (request line INVITE, no To tag)")

// DryRun takes one initial INVITE through chain the way the edge does, but
// without sockets, transactions or metrics: raw is the message as it would
// arrive over UDP from src in realm ("inside" or "outside"). It returns the
// call as the stages left it and the INVITE the edge would forward, with
// 192.0.2.1/192.0.2.2 standing for our listeners. When a stage rejects the
// call, the forwarded INVITE is nil and err is the *Rejection.
// `stirgate explain` and the pipeline benchmark use it.
func DryRun(ctx context.Context, chain Chain, realmName string, src netip.AddrPort, raw []byte, parser *sip.Parser) (*Call, []byte, error) {
	if parser == nil {
		parser = sip.NewParser()
	}
	in, out, err := dryRealms(realmName)
	if err != nil {
		return nil, nil, err
	}
	msg, err := parser.ParseSIP(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("dry run: %w", err)
	}
	req, ok := msg.(*sip.Request)
	if !ok || !req.IsInvite() || req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || hasToTag(req) {
		return nil, nil, ErrNotInitialInvite
	}
	req.SetSource(src.String())
	req.SetTransport("UDP")
	call := newCall(in.name, in.dir, req)
	if err := chain.Run(ctx, call, nil); err != nil {
		return call, nil, err
	}
	fwd, err := dryForward(in, out, req, call)
	if err != nil {
		return call, nil, fmt.Errorf("dry run: build the forwarded INVITE: %w", err)
	}
	return call, []byte(fwd.String()), nil
}

// dryRealms are the realm a dry-run INVITE arrives in and its peer, with
// the documentation addresses as listeners.
func dryRealms(realmName string) (in, out *realm, err error) {
	ins := &realm{idx: inside, name: "inside", dir: Outbound, ep: map[string]endpoint{"UDP": dryInside}}
	outs := &realm{idx: outside, name: "outside", dir: Inbound, ep: map[string]endpoint{"UDP": dryOutside}}
	switch realmName {
	case "inside":
		return ins, outs, nil
	case "outside":
		return outs, ins, nil
	}
	return nil, nil, fmt.Errorf("dry run: realm %q: want inside or outside", realmName)
}

// dryForward builds the INVITE the edge would forward for call, to the
// documentation next hop.
func dryForward(in, out *realm, req *sip.Request, call *Call) (*sip.Request, error) {
	e := &Edge{ours: map[string]bool{}}
	fwd, err := e.prepare(in, out, req, route{dest: dryNextHop, transport: "UDP", recordRoute: true})
	if err != nil {
		return nil, err
	}
	return fwd, applyCall(fwd, call)
}
