package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/stirgate/stirgate/sip/media"
)

// Direction says which way a call crosses the edge.
type Direction int

const (
	// Outbound calls come from the PBX (inside realm) and go to the trunk.
	Outbound Direction = iota
	// Inbound calls come from the trunk (outside realm) and go to the PBX.
	Inbound
)

func (d Direction) String() string {
	if d == Inbound {
		return "inbound"
	}
	return "outbound"
}

// Verstat is the verification status told to the PBX (3GPP TS 24.229).
type Verstat string

const (
	VerstatNone   Verstat = ""
	VerstatPassed Verstat = "TN-Validation-Passed"
	VerstatFailed Verstat = "TN-Validation-Failed"
	VerstatNoTN   Verstat = "No-TN-Validation"
)

// Call is the plain-data view of an initial INVITE that pipeline stages see.
// It carries no sipgo types: stages are testable without SIP messages.
type Call struct {
	CallID, Realm string
	Dir           Direction
	Source        netip.AddrPort
	// Orig and Dest are the calling and called numbers canonicalised per
	// RFC 8224 8.3 (see Number): Orig from P-Asserted-Identity when present,
	// else From; Dest from the Request-URI. "" when there is no number.
	Orig, Dest string
	// The candidates they were chosen from, for stages that choose by trust.
	FromTN, PAITN, ToTN string
	Identities          []string // Identity header values received
	// Transport is what the INVITE arrived over: UDP, TCP or TLS. TLS is
	// the client certificate its TLS connection authenticated with (mutual
	// TLS), nil without one.
	Transport string
	TLS       *TLSIdentity

	// Outputs, applied by the edge before forwarding.
	Verstat      Verstat
	AddIdentity  string            // Identity header to add (outbound); replaces those received
	DropIdentity bool              // remove the Identity headers received
	Tags         map[string]string // extra headers a stage asks for

	// ResponseReason, when set, is the value of a Reason header added to
	// the final response sent upstream (e.g. "STIR;cause=438;text=...",
	// RFC 9410, for a call forwarded although its verification failed).
	ResponseReason string

	// Traceback facts a stage established, written to the call record.
	Attest   string // A, B or C: the attestation signed or verified
	OrigID   string // RFC 8588 origid
	Customer string // the customer the call belongs to
	X5U      string // the certificate URL of the PASSporT signed or verified
	IAT      int64  // its iat (Unix seconds; 0: none)
	// VerifyFailure is why verification failed ("" when it passed or did
	// not run); Rule the policy rule that rejected the call.
	VerifyFailure, Rule string

	// Notes are decisions worth keeping in the call record (policy rule
	// hits, report-mode ones included).
	Notes []string

	// Filled by the chain: the stage that rejected the call, if any.
	DecidedBy string

	// Filled by the edge while relaying: first 18x and the caller's CANCEL.
	ringAt, cancelAt time.Time
	// Filled by the edge: when the INVITE arrived, where it was forwarded.
	arrived time.Time
	nextHop string
	onEnd   []func()
}

// OnEnd registers f to run once when the call is over: after its final
// response when that is not a 2xx, else when its dialog ends (BYE answered,
// or the dialog expired). Stages use it to free what they hold for the
// call, such as a concurrent-call slot. f runs on an edge goroutine and must
// not block.
func (c *Call) OnEnd(f func()) { c.onEnd = append(c.onEnd, f) }

// end runs the OnEnd functions; the edge calls it exactly once per call.
func (c *Call) end() {
	fs := c.onEnd
	c.onEnd = nil
	for _, f := range fs {
		f()
	}
}

// Tag asks the edge to add header name: value to the forwarded INVITE.
func (c *Call) Tag(name, value string) {
	if c.Tags == nil {
		c.Tags = make(map[string]string)
	}
	c.Tags[name] = value
}

// Handler is one stage of the call pipeline. It returns nil to let the call
// go on, or an error (normally from Reject) to end it. Stages never write SIP.
type Handler interface {
	Name() string
	HandleCall(ctx context.Context, c *Call) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc struct {
	StageName string
	Fn        func(ctx context.Context, c *Call) error
}

func (h HandlerFunc) Name() string                                  { return h.StageName }
func (h HandlerFunc) HandleCall(ctx context.Context, c *Call) error { return h.Fn(ctx, c) }

// StageObserver is told how each stage decided; the edge counts it in metrics.
type StageObserver func(stage, decision string, took time.Duration)

// Chain is an ordered list of stages, built once per configuration.
type Chain []Handler

// Run runs the stages in order and stops at the first error. The error is a
// *Rejection (a stage's own, or 500 for any other error).
func (ch Chain) Run(ctx context.Context, c *Call, observe StageObserver) error {
	for _, h := range ch {
		start := time.Now()
		err := h.HandleCall(ctx, c)
		decision := "pass"
		if err != nil {
			decision = "reject"
		}
		if observe != nil {
			observe(h.Name(), decision, time.Since(start))
		}
		if err != nil {
			c.DecidedBy = h.Name()
			var r *Rejection
			if errors.As(err, &r) {
				return err
			}
			return &Rejection{Code: 500, Reason: "Server Internal Error", Cause: fmt.Errorf("stage %s: %w", h.Name(), err)}
		}
	}
	return nil
}

// Finisher is a stage that wants to know how its calls ended (a one-ring
// pattern, a 607 complaint). The edge calls it once per initial INVITE of
// its chain, after the final response, whether the chain rejected the call
// or not; it must not block.
type Finisher interface {
	CallEnded(rec CallRecord)
}

// finish tells the chain's Finisher stages how a call ended.
func (ch Chain) finish(rec CallRecord) {
	for _, h := range ch {
		if f, ok := h.(Finisher); ok {
			f.CallEnded(rec)
		}
	}
}

// Rejection is a status-carrying error: the edge turns it into exactly one
// SIP response with a Reason header.
type Rejection struct {
	Code   int
	Reason string // reason phrase of the response
	Cause  error  // for logs and the Reason header text
	// RetryAfter, when set, adds a Retry-After header (seconds).
	RetryAfter int
	// Protocol of the Reason header (RFC 3326): "SIP" unless a stage says
	// otherwise ("STIR" for verification failures, RFC 9410).
	Protocol string
	// Headers to add to the response (e.g. Call-Info for a 608, RFC 8688);
	// refused when unsafe.
	Headers map[string]string
	// Announce, when set, is played to the caller as early media (183 with
	// an SDP answer) before the response; the edge falls back to the plain
	// response when the offer, the ports or the cap do not allow it.
	Announce *media.Announcement
}

func (r *Rejection) Error() string {
	if r.Cause != nil {
		return fmt.Sprintf("%d %s: %v", r.Code, r.Reason, r.Cause)
	}
	return fmt.Sprintf("%d %s", r.Code, r.Reason)
}

func (r *Rejection) Unwrap() error { return r.Cause }

// Reject builds the error a stage returns to end a call with a SIP status.
// Codes outside 300-699 are treated as 500.
func Reject(code int, reason string, cause error) error {
	if code < 300 || code > 699 {
		code = 500
	}
	return &Rejection{Code: code, Reason: reason, Cause: cause, Protocol: "SIP"}
}

// RejectSTIR is Reject for a STIR verification failure: its Reason header
// names the STIR protocol (RFC 9410).
func RejectSTIR(code int, reason string, cause error) error {
	err := Reject(code, reason, cause).(*Rejection)
	err.Protocol = "STIR"
	return err
}
