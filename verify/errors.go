package verify

import "errors"

// Kinds of verification failure; every Failure wraps one. Their text is the
// "reason" label of stirgate_verify_results_total.
var (
	ErrAnonymous  = errors.New("anonymous")       // 433
	ErrMissing    = errors.New("no_identity")     // 428
	ErrMalformed  = errors.New("malformed")       // 438
	ErrAlg        = errors.New("unsupported_alg") // 437
	ErrClaims     = errors.New("bad_claims")      // 438
	ErrX5U        = errors.New("x5u_mismatch")    // 438: x5u != info
	ErrStale      = errors.New("stale")           // 403 Stale Date
	ErrNumbers    = errors.New("number_mismatch") // 438
	ErrReplay     = errors.New("replay")          // 438
	ErrInfo       = errors.New("bad_info")        // 436: x5u policy or fetch
	ErrCredential = errors.New("bad_credential")  // 437: chain, validity, TNAuthList, CRL
	ErrSignature  = errors.New("bad_signature")   // 438
	ErrAttest     = errors.New("attest_too_low")  // 403: below min_attest
	// 503: the replay store could not record a verified token, so the
	// verifier cannot tell whether it is a replay (never for MemoryReplay).
	ErrReplayStore = errors.New("replay_store_error")
)

// reasonPhrases are the reason phrases by status (RFC 8224; 503 RFC 3261).
var reasonPhrases = map[int]string{
	403: "Stale Date",
	428: "Use Identity Header",
	433: "Anonymity Disallowed",
	436: "Bad Identity Info",
	437: "Unsupported Credential",
	438: "Invalid Identity Header",
	503: "Service Unavailable",
}
