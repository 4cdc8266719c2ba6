package sip

import (
	"io"

	"github.com/emiago/sipgo/sip"
)

// Copies of messages we forward. sipgo's Clone deep-copies every header;
// a proxy changes only a few, so the copies here share the header values
// with the original and replace, never mutate, what they change (sipgo's own
// rule: "headers are pointers, always clone them for change"). Deep copies
// cost ~40% of the work of building a forwarded INVITE.

// forwardCopy is req with its own header list and its own copy of the top
// Via (markReceived adds received/rport to it); every other header and the
// body are shared with req and must be replaced, not changed, in the copy.
func forwardCopy(req *sip.Request) *sip.Request {
	fwd := sip.NewRequest(req.Method, req.Recipient)
	fwd.SipVersion = req.SipVersion
	topVia := true
	for _, h := range req.Headers() {
		if topVia {
			if v, ok := h.(*sip.ViaHeader); ok {
				h, topVia = v.Clone(), false
			}
		}
		fwd.AppendHeader(h)
	}
	fwd.SetBody(req.Body())
	fwd.SetTransport(req.Transport())
	fwd.SetSource(req.Source())
	fwd.Laddr = req.Laddr
	return fwd
}

// upstreamCopy is res without its top Via (ours), sharing the other headers
// and the body with res.
func upstreamCopy(res *sip.Response) *sip.Response {
	up := sip.NewResponse(res.StatusCode, res.Reason)
	up.SipVersion = res.SipVersion
	topVia := true
	for _, h := range res.Headers() {
		if _, ok := h.(*sip.ViaHeader); ok && topVia {
			topVia = false
			continue
		}
		up.AppendHeader(h)
	}
	up.SetBody(res.Body())
	return up
}

// wireSize is the size of msg on the wire, counted without building it.
func wireSize(msg interface{ StringWrite(io.StringWriter) }) int {
	var n byteCounter
	msg.StringWrite(&n)
	return int(n)
}

type byteCounter int

func (c *byteCounter) WriteString(s string) (int, error) {
	*c += byteCounter(len(s))
	return len(s), nil
}
