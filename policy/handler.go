package policy

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/stirgate/stirgate/sip"
)

// Handler adapts the Engine to the call pipeline of the SIP edge. A chain
// holds one Handler per phase: PhaseEarly before verification (and before
// signing on the inside), PhaseVerified after verification on the outside.
type Handler struct {
	Engine  *Engine
	Phase   Phase
	Metrics *Metrics         // nil: not counted
	Log     *slog.Logger     // nil: one-ring marks, complaints and lost lessons are not logged
	Now     func() time.Time // nil: time.Now
}

// Name is the stage name in metrics, logs and Reason headers.
func (h Handler) Name() string {
	if h.Phase == PhaseVerified {
		return "policy.verified"
	}
	return "policy"
}

func (h Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func input(c *sip.Call, phase Phase) Input {
	return Input{
		Phase: phase, Source: c.Source.Addr(), Realm: c.Realm, Customer: c.Customer,
		Caller: c.Orig, Callee: c.Dest, CallID: c.CallID,
		Verified: c.Verstat == sip.VerstatPassed, Attest: c.Attest,
	}
}

// HandleCall evaluates the rules of the handler's phase. Every hit,
// report-mode ones included, goes to the call record; tags become headers;
// an enforce-mode rejection ends the call.
func (h Handler) HandleCall(ctx context.Context, c *sip.Call) error {
	d := h.Engine.Evaluate(ctx, input(c, h.Phase), h.now())
	h.Metrics.stage(h.Phase, d.RoundTrips)
	if len(d.Held) > 0 {
		engine, metrics := h.Engine, h.Metrics
		c.OnEnd(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			metrics.storeFailures(engine.Release(ctx, d.Held))
		})
	}
	for _, hit := range d.Hits {
		h.Metrics.observe(hit)
		c.Notes = append(c.Notes, fmt.Sprintf("rule=%s mode=%s action=%s matched=%s entry=%s", hit.Rule, hit.Mode, hit.Action, hit.Matched, hit.Entry))
	}
	for name, value := range d.Tags {
		c.Tag(name, value)
	}
	if d.Reject == nil {
		return nil
	}
	c.Rule = d.Hits[len(d.Hits)-1].Rule
	err := sip.Reject(d.Reject.Code, d.Reject.Reason, d.Hits[len(d.Hits)-1].cause()).(*sip.Rejection)
	err.RetryAfter = d.Reject.RetryAfter
	if d.Reject.CallInfo != "" {
		err.Headers = map[string]string{"Call-Info": "<" + d.Reject.CallInfo + ">;purpose=jwscard"}
	}
	err.Announce = h.Engine.Announcement(c.Realm, d.Reject)
	return err
}

// CallEnded feeds one-ring detection and the complaint log (sip.Finisher).
// Only the PhaseEarly handler learns, so a chain with both learns once.
func (h Handler) CallEnded(rec sip.CallRecord) {
	if h.Phase != PhaseEarly {
		return
	}
	o := Outcome{
		Input: Input{Source: rec.Source.Addr(), Realm: rec.Realm, Customer: rec.Customer, Caller: rec.Orig, Callee: rec.Dest,
			Verified: rec.Verstat == sip.VerstatPassed, Attest: rec.Attest},
		Status: rec.Status, Downstream: rec.Stage == sip.StageDownstream, RingAfter: rec.RingAfter, CancelAfter: rec.CancelAfter,
	}
	if !h.Engine.Learns(o) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l := h.Engine.CallEnded(ctx, o, h.now())
	h.Metrics.learned(l)
	if h.Log == nil {
		return
	}
	if l.Flagged != "" {
		h.Log.Warn("one-ring caller flagged", "call_id", rec.CallID, "caller", l.Flagged, "rule", l.FlagRule, "evidence", l.FlagEntry)
	}
	if l.Complaint != "" {
		h.Log.Info("complaint recorded", "call_id", rec.CallID, "subject", l.Complaint, "status", rec.Status)
	}
	if l.StoreErrors > 0 {
		h.Log.Warn("policy store error: lesson lost", "call_id", rec.CallID, "errors", l.StoreErrors, "error", l.StoreErr)
	}
}

// cause is the text of a rejecting hit for the Reason header.
func (h Hit) cause() error {
	switch {
	case h.Action == ActionStoreError:
		// The error text stays in the call record: it may name our servers.
		return fmt.Errorf("rule %s: policy store unavailable", h.Rule)
	case h.typ != nil && h.typ.lists == needsLists:
		return fmt.Errorf("rule %s: %s on list %s", h.Rule, h.Entry, h.Matched)
	case h.Entry == "":
		return fmt.Errorf("rule %s: %s", h.Rule, h.Matched)
	}
	return fmt.Errorf("rule %s: %s %s", h.Rule, h.Matched, h.Entry)
}
