package policy

import (
	"context"
	"time"
)

// keyComplaint prefixes the complaint subject of a source trunk.
const keyComplaint = "trunk:"

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
	// StoreErrors counts store operations that failed (the lesson is
	// lost); StoreErr is the first of them, for the log.
	StoreErrors int
	StoreErr    error
}

// storeFailed notes a failed store operation.
func (l *Learned) storeFailed(err error) {
	if l.StoreErrors == 0 {
		l.StoreErr = err
	}
	l.StoreErrors++
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
	return o.complaint() || (e.learners && o.Caller != "" && o.Callee != "" && o.reached())
}

// CallEnded learns from how an inbound call ended:
//   - a 607 Unwanted from the PBX records a complaint against the caller when
//     the call was verified at A, else against the source trunk;
//   - a call that reached its callee (it rang or was answered) goes to the
//     rule types that learn (one_ring: learnOneRing), for each of their
//     rules that matches it.
func (e *Engine) CallEnded(ctx context.Context, o Outcome, now time.Time) Learned {
	var l Learned
	if !e.Learns(o) {
		return l
	}
	if o.complaint() {
		subject := complaintSubject(o.Input)
		if err := e.store.Complaints().Add(ctx, subject, now); err != nil {
			l.storeFailed(err)
		} else {
			l.Complaint = subject
		}
	}
	if o.Caller == "" || o.Callee == "" || !o.reached() {
		return l
	}
	for i := range e.rules {
		r := &e.rules[i]
		if r.typ.learn != nil && e.matches(r, o.Input) {
			r.typ.learn(e, ctx, r, o, now, &l)
		}
	}
	return l
}

// complaintSubject is who a 607 counts against: the calling number when its
// identity was verified at A, else the trunk it came from, so that the
// owners of spoofed numbers are not punished.
func complaintSubject(in Input) string {
	if in.Caller != "" && verifiedAt(in, "A") {
		return in.Caller
	}
	return trunkSubject(in)
}

// trunkSubject is the complaint subject of the call's source trunk.
func trunkSubject(in Input) string { return keyComplaint + in.Source.String() }
