package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
)

// maxUDPDatagram is the largest UDP payload over IPv4.
const maxUDPDatagram = 65507

// readUDP reads one UDP socket of realm r until it is closed. Everything
// but a new request is handled here, in the reader: no goroutine and no
// channel per message (udptx.go).
func (e *Edge) readUDP(r *realm, sc *stampedConn) error {
	buf := make([]byte, 65535) // whole datagrams: an oversized one is seen, not truncated
	local := sc.LocalAddr()
	for {
		n, addr, err := sc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("sip: realm %s: read %s: %w", r.name, local, err)
		}
		data := buf[:n]
		if len(bytes.Trim(data, "\x00\r\n")) == 0 {
			continue // keep-alive
		}
		if e.filterUDP(r, sc, addr, data) {
			continue
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		src := ua.AddrPort()
		e.handleDatagram(r, sc.UDPConn, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), data)
	}
}

// handleDatagram parses one datagram and hands it to its transaction, or
// starts one for a new request.
func (e *Edge) handleDatagram(r *realm, conn *net.UDPConn, src netip.AddrPort, data []byte) {
	msg, err := e.parser.ParseSIP(data)
	if err != nil {
		// The error text quotes the input: only the addresses are logged.
		e.m.dropped.WithLabelValues(r.name, "parse_error").Inc()
		e.log.Debug("dropped", "realm", r.name, "drop_reason", "parse_error", "source", src.String(), "transport", "UDP")
		return
	}
	msg.SetTransport("UDP")
	msg.SetSource(src.String())
	switch m := msg.(type) {
	case *sip.Response:
		e.udpResponse(r, m)
	case *sip.Request:
		e.udpRequest(r, conn, src, m)
	}
}

// udpResponse gives a response to the client transaction it answers;
// one that answers none is a stray.
func (e *Edge) udpResponse(r *realm, res *sip.Response) {
	if via, cseq := res.Via(), res.CSeq(); via != nil && cseq != nil {
		branch, _ := via.Params.Get("branch")
		if tx, ok := e.udpTx.clients.get(clientKey(branch, cseq.MethodName)); ok {
			tx.receive(res)
			return
		}
	}
	e.strayResponse(r, res)
}

// udpRequest matches a request to its server transaction: an ACK of a
// non-2xx final, a CANCEL, a retransmission are handled here; a new
// request gets a transaction and a goroutine that runs the proxy core.
func (e *Edge) udpRequest(r *realm, conn *net.UDPConn, src netip.AddrPort, req *sip.Request) {
	if req.IsAck() || req.IsCancel() {
		if key, err := serverKey(req, true); err == nil {
			if inv, ok := e.udpTx.servers[r.idx].get(key); ok {
				if req.IsAck() {
					inv.ack()
				} else {
					e.cancelUDP(r, conn, src, req, inv)
				}
				return
			}
		}
		if req.IsAck() { // an ACK of a 2xx the reader's fast path did not take
			go e.serve(r, req, nil)
			return
		}
	}
	key, err := serverKey(req, false)
	if err != nil {
		e.m.dropped.WithLabelValues(r.name, "bad_request").Inc()
		if req.Via() != nil {
			res := e.newResponse(req, 400, "Bad Request")
			res.AppendHeader(reasonHeader(400, "missing Via, CSeq, From or Call-ID"))
			_ = writeUDP(conn, wireOf(res), src)
		}
		return
	}
	tx := e.udpTx.open(r, conn, src, req, key)
	if tx == nil {
		return
	}
	go func() {
		defer tx.handled()
		e.serve(r, req, tx)
	}()
}

// cancelUDP answers a CANCEL that matched the INVITE transaction inv: 200
// (kept for the CANCEL's retransmissions), then 487 to the INVITE.
func (e *Edge) cancelUDP(r *realm, conn *net.UDPConn, src netip.AddrPort, req *sip.Request, inv *udpServerTx) {
	key, err := serverKey(req, false)
	if err != nil {
		return
	}
	tx := e.udpTx.open(r, conn, src, req, key)
	if tx == nil {
		return
	}
	e.m.requests.WithLabelValues(r.name, "CANCEL").Inc()
	e.m.responses.WithLabelValues(r.name, "CANCEL", "200").Inc()
	_ = tx.Respond(e.newResponse(req, 200, "OK"))
	inv.cancel(req)
}

// startClientTx sends req (built by prepare) statefully through realm out.
func (e *Edge) startClientTx(ctx context.Context, out *realm, req *sip.Request) (clientTx, error) {
	if req.Transport() == "UDP" {
		tx, err := e.udpTx.request(out, req)
		if err != nil {
			return nil, err
		}
		return tx, nil
	}
	return out.client.TransactionRequest(ctx, req, keepAsBuilt)
}

// sendRequest sends a request statelessly (an ACK) through realm out.
func (e *Edge) sendRequest(out *realm, req *sip.Request) error {
	if req.Transport() != "UDP" {
		return out.client.WriteRequest(req, keepAsBuilt)
	}
	to, err := resolveUDP(req.Destination())
	if err != nil {
		return err
	}
	return writeUDP(out.udpConn(), wireOf(req), to)
}

// sendResponse sends a response statelessly from realm r (a 2xx
// retransmission no transaction holds any more).
func (e *Edge) sendResponse(r *realm, res *sip.Response) error {
	if res.Transport() != "UDP" {
		return r.ua.TransportLayer().WriteMsg(res)
	}
	to, err := resolveUDP(res.Destination())
	if err != nil {
		return err
	}
	return writeUDP(r.udpConn(), wireOf(res), to)
}

// udpConn is the socket requests leave realm r from: its first UDP
// listener, the one Via and Record-Route advertise.
func (r *realm) udpConn() *net.UDPConn {
	if len(r.udp) == 0 {
		return nil
	}
	return r.udp[0].UDPConn
}

// wireOf serialises a message in one buffer.
func wireOf(m sip.Message) []byte {
	var b bytes.Buffer
	b.Grow(1024)
	m.StringWrite(&b)
	return b.Bytes()
}

func writeUDP(c *net.UDPConn, b []byte, to netip.AddrPort) error {
	if c == nil {
		return errors.New("no UDP socket")
	}
	if len(b) > maxUDPDatagram {
		return fmt.Errorf("%d bytes: larger than a UDP datagram", len(b))
	}
	_, err := c.WriteToUDPAddrPort(b, to)
	return err
}

// resolveUDP turns a destination host:port (port 5060 when absent) into
// an address; a name is resolved through the system resolver, bounded.
func resolveUDP(dest string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(dest); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host, port, err := net.SplitHostPort(dest)
	if err != nil {
		host, port = dest, "5060"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %q: %w", dest, err)
	}
	p, err := net.LookupPort("udp", port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve %q: %w", dest, err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(p)), nil
}
