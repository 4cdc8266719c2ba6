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
		TLS:        peerOf(c.TLS),
	})
	c.Customer = d.Customer
	noteIdentified(c, d.IdentifiedBy)
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

// HandleCall sets the call's customer from its client certificate or its
// source address.
func (h Classify) HandleCall(_ context.Context, c *sip.Call) error {
	c.Customer, _ = h.Service.CustomerOf(c.Source.Addr(), peerOf(c.TLS))
	return nil
}

// peerOf is the edge's TLS identity as the service reads it.
func peerOf(id *sip.TLSIdentity) *Peer {
	if id == nil {
		return nil
	}
	return &Peer{Subject: id.Subject, DNSNames: id.DNSNames, URIs: id.URIs, SPKI: id.SPKI}
}

// noteIdentified records in the call record how its customer was
// identified: customer_by=source|tls (and the certificate's subject).
func noteIdentified(c *sip.Call, by string) {
	switch by {
	case ByTLS:
		c.Notes = append(c.Notes, "customer_by=tls subject="+c.TLS.Subject)
	case BySource:
		c.Notes = append(c.Notes, "customer_by=source")
	}
}
