package verify

import (
	"context"
	"errors"
	"fmt"

	"github.com/stirgate/stirgate/sip"
)

// Handler adapts the Service to the call pipeline of the SIP edge: it runs
// for INVITEs arriving in the outside realm and tells the PBX the result in
// verstat.
type Handler struct {
	Service *Service
	Config  Config
	Metrics *Metrics
}

// Name is the stage name in metrics, logs and Reason headers.
func (Handler) Name() string { return "verify" }

// HandleCall verifies the call's Identity headers and decides per
// on_anonymous, on_missing, on_failure and min_attest.
func (h Handler) HandleCall(ctx context.Context, c *sip.Call) error {
	dest := c.Dest
	if h.Config.CalledNumber == "to" {
		dest = c.ToTN
	}
	if c.Orig == "" && h.Config.OnAnonymous == "forward" {
		c.Verstat = sip.VerstatNoTN
		h.Metrics.observe(VerstatNoTN, ErrAnonymous.Error())
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.Config.Budget)
	defer cancel()
	v := h.Service.Verify(ctx, Input{Orig: c.Orig, Dest: dest, Identities: c.Identities})
	c.Verstat = sip.Verstat(v.Verstat)
	if v.Attest != "" {
		c.Attest, c.OrigID = v.Attest, v.OrigID
	}
	c.X5U, c.IAT = v.X5U, v.IAT
	reason := "ok"
	if v.Kind != nil {
		reason = v.Kind.Error()
		c.VerifyFailure = reason + ": " + v.Detail
	}
	h.Metrics.observe(v.Verstat, reason)

	switch {
	case v.Passed:
		return nil
	case errors.Is(v.Kind, ErrMissing):
		if h.Config.OnMissing == "reject" {
			return sip.RejectSTIR(428, v.Reason, errors.New(v.Detail))
		}
		return nil
	case errors.Is(v.Kind, ErrAnonymous):
		return sip.Reject(433, v.Reason, errors.New(v.Detail))
	case errors.Is(v.Kind, ErrAttest):
		return sip.Reject(v.Code, v.Reason, errors.New(v.Detail))
	case errors.Is(v.Kind, ErrReplayStore):
		// Not a verdict on the token: whatever on_failure says, the call is
		// refused (fail closed) and the trunk may retry it.
		return sip.Reject(v.Code, v.Reason, errors.New(v.Detail))
	case h.Config.OnFailure == "forward":
		c.ResponseReason = fmt.Sprintf("STIR;cause=%d;text=%q", v.Code, sanitize(v.Reason+": "+v.Detail))
		return nil
	default:
		return sip.RejectSTIR(v.Code, v.Reason, errors.New(v.Detail))
	}
}

// sanitize keeps reason text printable and free of quotes.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			b[i] = ' '
		}
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}
