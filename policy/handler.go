package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/stirgate/stirgate/sip"
)

// Handler adapts the Engine to the call pipeline of the SIP edge.
type Handler struct {
	Engine  *Engine
	Metrics *Metrics         // nil: not counted
	Now     func() time.Time // nil: time.Now
}

// Name is the stage name in metrics, logs and Reason headers.
func (Handler) Name() string { return "policy" }

// HandleCall evaluates the rules. Every hit, report-mode ones included,
// goes to the call record; tags become headers; an enforce-mode rejection
// ends the call.
func (h Handler) HandleCall(ctx context.Context, c *sip.Call) error {
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	d := h.Engine.Evaluate(ctx, Input{Source: c.Source.Addr().String(), Realm: c.Realm, Customer: c.Customer, Caller: c.Orig, Callee: c.Dest}, now)
	for _, hit := range d.Hits {
		h.Metrics.observe(hit)
		c.Notes = append(c.Notes, fmt.Sprintf("rule=%s mode=%s action=%s list=%s entry=%s", hit.Rule, hit.Mode, hit.Action, hit.List, hit.Entry))
	}
	for name, value := range d.Tags {
		c.Tag(name, value)
	}
	if d.Reject == nil {
		return nil
	}
	last := d.Hits[len(d.Hits)-1]
	err := sip.Reject(d.Reject.Code, d.Reject.Reason, fmt.Errorf("rule %s: %s on list %s", last.Rule, last.Entry, last.List)).(*sip.Rejection)
	err.RetryAfter = d.Reject.RetryAfter
	if d.Reject.CallInfo != "" {
		err.Headers = map[string]string{"Call-Info": "<" + d.Reject.CallInfo + ">;purpose=jwscard"}
	}
	return err
}
