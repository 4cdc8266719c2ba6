package sip

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// dialogMaxAge bounds how long a dialog whose BYE never crossed us is kept.
const dialogMaxAge = 12 * time.Hour

// ackWait bounds how long an in-dialog request waits for the ACK of the
// dialog's 2xx to be forwarded first.
const ackWait = 200 * time.Millisecond

// dialogs counts confirmed dialogs (2xx to an initial INVITE seen, BYE not yet
// answered) so that a drain can wait for calls to hang up. It is keyed by
// Call-ID; idle entries expire after dialogMaxAge.
type dialogs struct {
	mu    sync.Mutex
	m     map[string]*dialog
	gauge prometheus.Gauge
}

type dialog struct {
	since  time.Time
	invite inviteID      // the initial INVITE that was answered 2xx
	acked  chan struct{} // closed when the ACK of the 2xx was forwarded
	ended  func()        // the call's OnEnd functions; nil for none
}

// inviteID identifies an initial INVITE within its Call-ID.
type inviteID struct {
	fromTag string
	seq     uint32
	branch  string // top Via branch: a retransmission has the same, its 2xx ACK another
}

// inviteIDOf reads the identity of an INVITE or ACK (From, CSeq present).
func inviteIDOf(req *sip.Request) inviteID {
	id := inviteID{seq: req.CSeq().SeqNo}
	id.fromTag, _ = req.From().Params.Get("tag")
	if v := req.Via(); v != nil {
		id.branch, _ = v.Params.Get("branch")
	}
	return id
}

// retransmits reports whether req is a retransmission of the INVITE id.
func (id inviteID) retransmits(req *sip.Request) bool { return id == inviteIDOf(req) }

// acknowledgedBy reports whether ack is the ACK of the 2xx to the INVITE
// id: same From tag and CSeq number (RFC 3261 13.2.2.4), its own branch.
func (id inviteID) acknowledgedBy(ack *sip.Request) bool {
	a := inviteIDOf(ack)
	return a.fromTag == id.fromTag && a.seq == id.seq
}

func newDialogs(g prometheus.Gauge) *dialogs {
	return &dialogs{m: make(map[string]*dialog), gauge: g}
}

// add records a confirmed dialog set up by the initial INVITE invite;
// ended (may be nil) runs when it is removed or expires.
func (d *dialogs) add(callID string, invite inviteID, ended func()) {
	// Own copies: the parsed values may be slices of the whole message.
	invite.fromTag, invite.branch = strings.Clone(invite.fromTag), strings.Clone(invite.branch)
	d.mu.Lock()
	old := d.m[callID]
	d.m[callID] = &dialog{since: time.Now(), invite: invite, acked: make(chan struct{}), ended: ended}
	d.gauge.Set(float64(len(d.m)))
	d.mu.Unlock()
	if old != nil && old.ended != nil {
		old.ended()
	}
}

// answered returns the initial INVITE answered 2xx in the dialog of callID.
func (d *dialogs) answered(callID string) (inviteID, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dl, ok := d.m[callID]
	if !ok {
		return inviteID{}, false
	}
	return dl.invite, true
}

// acked records that the ACK of the dialog's 2xx was forwarded.
func (d *dialogs) acked(callID string) {
	d.mu.Lock()
	if dl, ok := d.m[callID]; ok {
		select {
		case <-dl.acked:
		default:
			close(dl.acked)
		}
	}
	d.mu.Unlock()
}

// waitAck waits at most max for the ACK of a known, not yet acknowledged
// dialog; it returns at once for anything else.
func (d *dialogs) waitAck(callID string, max time.Duration) {
	d.mu.Lock()
	dl, ok := d.m[callID]
	d.mu.Unlock()
	if !ok {
		return
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-dl.acked:
	case <-t.C:
	}
}

func (d *dialogs) remove(callID string) {
	d.mu.Lock()
	dl := d.m[callID]
	delete(d.m, callID)
	d.gauge.Set(float64(len(d.m)))
	d.mu.Unlock()
	if dl != nil && dl.ended != nil {
		dl.ended()
	}
}

func (d *dialogs) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}

// sweep drops entries older than maxAge until ctx is done.
func (d *dialogs) sweep(ctx context.Context, maxAge time.Duration) {
	t := time.NewTicker(maxAge / 12)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var ended []func()
			d.mu.Lock()
			for id, dl := range d.m {
				if now.Sub(dl.since) > maxAge {
					delete(d.m, id)
					if dl.ended != nil {
						ended = append(ended, dl.ended)
					}
				}
			}
			d.gauge.Set(float64(len(d.m)))
			d.mu.Unlock()
			for _, f := range ended {
				f()
			}
		}
	}
}
