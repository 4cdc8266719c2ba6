package policy

import (
	"context"
	"fmt"
	"time"
)

// Outcome is how a call ended, as the edge saw it: what one-ring detection
// and the complaint log learn from.
type Outcome struct {
	Input
	Status int
	// Downstream: the final status came from the callee's side (not from a
	// stirgate stage or the edge).
	Downstream bool
	// RingAfter: INVITE to the first 18x (0: never rang). CancelAfter:
	// INVITE to the caller's CANCEL (0: not cancelled).
	RingAfter, CancelAfter time.Duration
}

// Learned is what the engine recorded from an outcome, for logs and metrics.
type Learned struct {
	// Flagged is a caller just marked as one-ring, with the rule and its
	// evidence; "" when none.
	Flagged, FlagRule, FlagEntry string
	// Complaint is the subject a 607 was recorded against; "" when none.
	Complaint string
	// StoreErrors counts store operations that failed (the lesson is lost).
	StoreErrors int
}

// oneRing reports whether the caller hung up within ringMax of ringing.
func (o Outcome) oneRing(ringMax time.Duration) bool {
	return o.RingAfter > 0 && o.CancelAfter >= o.RingAfter && o.CancelAfter-o.RingAfter <= ringMax
}

// reached reports whether the call got to the callee (it rang or was
// answered), which is what a one-ring percentage is taken over.
func (o Outcome) reached() bool {
	return o.RingAfter > 0 || (o.Status >= 200 && o.Status < 300)
}

// complaint reports whether the outcome is a 607 Unwanted from the callee.
func (o Outcome) complaint() bool { return o.Status == 607 && o.Downstream }

// Learns reports whether CallEnded has anything to learn from o, so that
// the caller can skip it (and its store deadline) for most calls.
func (e *Engine) Learns(o Outcome) bool {
	if e.store == nil || o.Realm != "outside" {
		return false
	}
	return o.complaint() || (e.oneRing && o.Caller != "" && o.Callee != "" && o.reached())
}

// CallEnded learns from how an inbound call ended:
//   - one_ring rules count the caller's distinct callees reached within the
//     window and those cancelled within ring_max of ringing; when the
//     cancelled ones are at least `callees` and at least `percent` % of all,
//     the caller is marked for flag_for (one_ring rules then reject or tag
//     its calls; callback rules its callers' calls back to it);
//   - a 607 Unwanted from the PBX records a complaint against the caller when
//     the call was verified at A, else against the source trunk.
func (e *Engine) CallEnded(ctx context.Context, o Outcome, now time.Time) Learned {
	var l Learned
	if !e.Learns(o) {
		return l
	}
	if o.complaint() {
		subject := complaintSubject(o.Input)
		if err := e.store.Complaints().Add(ctx, subject, now); err != nil {
			l.StoreErrors++
		} else {
			l.Complaint = subject
		}
	}
	if o.Caller == "" || o.Callee == "" || !o.reached() {
		return l
	}
	for i := range e.rules {
		r := &e.rules[i]
		if r.Type != "one_ring" || !e.matches(r, o.Input) {
			continue
		}
		key := "onering:" + r.Name + ":" + o.Caller
		all, err := e.store.Distinct().Add(ctx, key+":reached", o.Callee, r.Window, now)
		if err != nil {
			l.StoreErrors++
			continue
		}
		if !o.oneRing(r.RingMax) {
			continue
		}
		short, err := e.store.Distinct().Add(ctx, key+":short", o.Callee, r.Window, now)
		if err != nil {
			l.StoreErrors++
			continue
		}
		if short < r.Callees || short*100 < r.Percent*all {
			continue
		}
		if _, on, err := e.store.Flags().Get(ctx, keyOneRing+o.Caller, now); err != nil {
			l.StoreErrors++ // go on: marking again is better than not at all
		} else if on {
			continue // already marked: the first mark's expiry stands
		}
		if r.Mode == "report" {
			// Report mode changes nothing: the mark is only reported.
			l.Flagged, l.FlagRule = o.Caller, r.Name
			l.FlagEntry = fmt.Sprintf("report only: callees=%d one_ring=%d window=%s", all, short, r.Window)
			continue
		}
		if err := e.store.Flags().Set(ctx, keyOneRing+o.Caller, r.FlagFor, now); err != nil {
			l.StoreErrors++
			continue
		}
		l.Flagged, l.FlagRule = o.Caller, r.Name
		l.FlagEntry = fmt.Sprintf("callees=%d one_ring=%d window=%s flag_for=%s", all, short, r.Window, r.FlagFor)
	}
	return l
}
