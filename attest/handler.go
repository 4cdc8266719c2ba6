package attest

import (
	"context"
	"errors"

	"github.com/stirgate/stirgate/sip"
)

// Handler adapts the Service to the call pipeline of the SIP edge.
type Handler struct {
	Service *Service
}

// Name is the stage name in metrics, logs and Reason headers.
func (Handler) Name() string { return "attest" }

// HandleCall signs an outbound INVITE, or rejects it when the service
// refuses. It only writes the Call; the edge applies it.
func (h Handler) HandleCall(_ context.Context, c *sip.Call) error {
	d, err := h.Service.Decide(Call{
		Source:     c.Source.Addr(),
		FromTN:     c.FromTN,
		PAITN:      c.PAITN,
		RURITN:     c.Dest,
		ToTN:       c.ToTN,
		Identities: len(c.Identities),
	})
	c.Customer = d.Customer
	var r *Refusal
	if errors.As(err, &r) {
		return sip.Reject(r.Code, r.Reason, errors.New(r.Cause))
	}
	if err != nil {
		return err
	}
	if d.Orig != "" {
		c.Orig = d.Orig
	}
	c.Attest, c.OrigID = string(d.Attest), d.OrigID
	c.AddIdentity, c.X5U, c.IAT = d.Identity, d.X5U, d.IAT
	c.DropIdentity = !d.Keep // what the PBX sent never leaves unless it signs itself
	return nil
}

// Classify is the first stage of the inside chain: it names the customer the
// call comes from, so the policy rules that match by customer or call class
// can run before signing.
type Classify struct {
	Service *Service
}

// Name is the stage name.
func (Classify) Name() string { return "classify" }

// HandleCall sets the call's customer from its source address.
func (h Classify) HandleCall(_ context.Context, c *sip.Call) error {
	c.Customer = h.Service.CustomerOf(c.Source.Addr())
	return nil
}
