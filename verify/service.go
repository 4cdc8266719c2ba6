package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Verification statuses told to the PBX (3GPP TS 24.229 verstat).
const (
	VerstatPassed = "TN-Validation-Passed"
	VerstatFailed = "TN-Validation-Failed"
	VerstatNoTN   = "No-TN-Validation"
)

// CertSource returns the certificate chain (leaf first) published at an
// x5u URL, applying the x5u policy, limits and cache. Any error is a 436.
type CertSource interface {
	Chain(ctx context.Context, x5u string) ([]*x509.Certificate, error)
}

// Credentials checks a chain for a PASSporT issued at iat: trust, validity,
// key usage, key type, TNAuthList, revocation. Any error is a 437.
type Credentials interface {
	Check(chain []*x509.Certificate, iat, now time.Time) (Credential, error)
}

// Credential is a checked signing certificate.
type Credential struct {
	Key    *ecdsa.PublicKey
	SPC    string
	Covers func(tn string) bool // nil: the certificate lists no TNs
}

// Input is what the verifier needs to know about a call.
type Input struct {
	Orig       string   // canonical calling number ("" when anonymous or not a number)
	Dest       string   // canonical called number
	Identities []string // Identity header values as received
}

// Verdict is the outcome of one verification.
type Verdict struct {
	Passed  bool
	Verstat string
	Code    int    // SIP status for a rejection (0 when passed)
	Reason  string // reason phrase
	Kind    error  // failure kind (nil when passed)
	Detail  string
	Attest  string
	OrigID  string
	X5U     string // the token's x5u (also on a failure, once it parsed)
	IAT     int64  // its iat (also on a failure, once the claims parsed)
	SPC     string
}

// Service verifies Identity headers. It is immutable and safe for
// concurrent use; its collaborators carry the state (cache, replay).
type Service struct {
	cfg    Config
	certs  CertSource
	creds  Credentials
	replay ReplayStore
	now    func() time.Time
}

// New builds a Service from a validated Config.
func New(cfg Config, src CertSource, creds Credentials, replay ReplayStore, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{cfg: cfg, certs: src, creds: creds, replay: replay, now: now}
}

// Verify runs the checks cheapest first: no network I/O happens before a
// token has parsed, matched the call, passed freshness and was not seen
// before. A token is recorded as seen only once its signature verified.
func (s *Service) Verify(ctx context.Context, in Input) Verdict {
	if in.Orig == "" {
		return verdict(fail(433, ErrAnonymous, "no calling telephone number"))
	}
	if len(in.Identities) == 0 {
		return Verdict{Verstat: VerstatNoTN, Code: 428, Reason: reasonPhrases[428], Kind: ErrMissing, Detail: "no Identity header"}
	}
	var first *Failure
	var firstKnown Verdict
	n := len(in.Identities)
	if n > MaxIdentityHeaders {
		n = MaxIdentityHeaders
	}
	for _, raw := range in.Identities[:n] {
		v, f := s.verifyOne(ctx, in, raw)
		if f == nil {
			if s.cfg.MinAttest != "" && v.Attest > s.cfg.MinAttest {
				// Verified, but below what this trunk must bring: a policy
				// rejection whatever on_failure says.
				v.Passed, v.Code, v.Reason, v.Kind = false, 403, "Forbidden", ErrAttest
				v.Detail = "attestation " + v.Attest + " is below the minimum " + s.cfg.MinAttest
			}
			return v
		}
		if f.Kind == errOtherPpt {
			continue
		}
		if first == nil {
			first, firstKnown = f, v
		}
	}
	if first == nil { // only PASSporTs of other types
		return Verdict{Verstat: VerstatNoTN, Code: 428, Reason: reasonPhrases[428], Kind: ErrMissing, Detail: "no SHAKEN Identity header"}
	}
	v := verdict(first)
	v.X5U, v.IAT = firstKnown.X5U, firstKnown.IAT
	return v
}

var errOtherPpt = errors.New("other_ppt")

func verdict(f *Failure) Verdict {
	return Verdict{Verstat: VerstatFailed, Code: f.Code, Reason: reasonPhrases[f.Code], Kind: f.Kind, Detail: f.Detail}
}

func (s *Service) verifyOne(ctx context.Context, in Input, raw string) (Verdict, *Failure) {
	id, err := ParseIdentity(raw)
	if err != nil {
		return Verdict{}, asFailure(err)
	}
	// What is known of the token goes with a failure too: the call record
	// keeps its x5u and iat.
	known := Verdict{X5U: id.Info}
	if id.Ppt != "" && id.Ppt != "shaken" {
		return known, &Failure{Code: 438, Kind: errOtherPpt}
	}
	if id.Alg != "" && id.Alg != "ES256" {
		return known, fail(437, ErrAlg, "alg parameter %q is not ES256", clip(id.Alg))
	}
	h, err := DecodeHeader(id.HeaderB64)
	if err != nil {
		return known, asFailure(err)
	}
	if h.X5U != id.Info {
		return known, fail(438, ErrX5U, "x5u is not the info URI")
	}
	c, err := DecodeClaims(id.PayloadB64)
	if err != nil {
		return known, asFailure(err)
	}
	known.IAT = c.IAT
	now := s.now()
	iat := time.Unix(c.IAT, 0)
	if now.Sub(iat) > s.cfg.MaxAge {
		return known, fail(403, ErrStale, "iat is %s old, more than %s", now.Sub(iat).Truncate(time.Second), s.cfg.MaxAge)
	}
	if iat.Sub(now) > s.cfg.MaxSkew {
		return known, fail(403, ErrStale, "iat is %s in the future, more than %s", iat.Sub(now).Truncate(time.Second), s.cfg.MaxSkew)
	}
	if c.Orig != in.Orig {
		return known, fail(438, ErrNumbers, "orig.tn %s is not the calling number %s", c.Orig, in.Orig)
	}
	if !contains(c.Dest, in.Dest) {
		return known, fail(438, ErrNumbers, "dest.tn does not hold the called number %s", in.Dest)
	}
	sig, err := base64.RawURLEncoding.DecodeString(id.SigB64)
	if err != nil || len(sig) != 64 {
		return known, fail(438, ErrSignature, "signature is not 64 bytes of R||S")
	}
	var key ReplayKey
	if s.replay != nil {
		// A cheap read, so a replay costs no fetch or signature check; it
		// records nothing (Claim below does, once the token verified), and
		// a store error here is left for Claim to report.
		key = replayKey(id.SigningInput(), sig)
		if seen, err := s.replay.Seen(ctx, key, now); err == nil && seen {
			return known, fail(438, ErrReplay, "PASSporT seen before")
		}
	}

	chain, err := s.certs.Chain(ctx, id.Info)
	if err != nil {
		return known, fail(436, ErrInfo, "%v", err)
	}
	cred, err := s.creds.Check(chain, iat, now)
	if err != nil {
		return known, fail(437, ErrCredential, "%v", err)
	}
	if cred.Covers != nil && !cred.Covers(c.Orig) {
		return known, fail(437, ErrCredential, "certificate TNAuthList does not cover %s", c.Orig)
	}
	if err := jwt.SigningMethodES256.Verify(id.SigningInput(), sig, cred.Key); err != nil {
		return known, fail(438, ErrSignature, "signature does not verify")
	}
	if s.replay != nil {
		// The one write, atomic: of concurrent copies exactly one passes.
		// Kept for the whole window in which the token would be fresh.
		first, err := s.replay.Claim(ctx, key, s.cfg.MaxAge+s.cfg.MaxSkew, now)
		if err != nil {
			return known, fail(503, ErrReplayStore, "replay store: %v", err)
		}
		if !first {
			return known, fail(438, ErrReplay, "PASSporT seen before")
		}
	}
	return Verdict{Passed: true, Verstat: VerstatPassed, Attest: string(c.Attest), OrigID: c.OrigID, X5U: id.Info, IAT: c.IAT, SPC: cred.SPC}, nil
}

func asFailure(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return fail(438, ErrMalformed, "%v", err)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
