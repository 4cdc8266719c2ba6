package certs

import "errors"

// Sentinel errors. Functions wrap them with the path or value concerned, so
// callers test with errors.Is and print the wrapped error.
var (
	// TNAuthList (RFC 8226 §9).
	ErrNoTNAuthList  = errors.New("certificate has no TNAuthList extension")
	ErrBadTNAuthList = errors.New("malformed TNAuthList")
	ErrEmptyTNAuth   = errors.New("empty TNAuthList")
	ErrBadTN         = errors.New("invalid telephone number")
	ErrBadSPC        = errors.New("invalid service provider code")
	ErrBadRange      = errors.New("invalid telephone number range")

	// Keys and certificates.
	ErrKeyPermissions    = errors.New("key file is readable by group or others")
	ErrNoPrivateKey      = errors.New("no private key found")
	ErrKeyType           = errors.New("key is not ECDSA P-256")
	ErrEncryptedKey      = errors.New("encrypted private keys are not supported")
	ErrKeyMismatch       = errors.New("private key does not match the certificate")
	ErrNotYetValid       = errors.New("certificate is not yet valid")
	ErrExpired           = errors.New("certificate has expired")
	ErrKeyUsage          = errors.New("certificate lacks the digitalSignature key usage")
	ErrLeafIsCA          = errors.New("leaf certificate is a CA certificate")
	ErrChainOrder        = errors.New("certificate chain is out of order (want leaf first, each signed by the next)")
	ErrPrivateKeyInChain = errors.New("certificate file contains a private key")
	ErrNoCertificates    = errors.New("no certificates found")
	ErrUnexpectedPEM     = errors.New("unexpected PEM block")

	// Test PKI generation.
	ErrExists = errors.New("file already exists (refusing to overwrite)")

	// x5u fetching (Fetcher, FetchPolicy). Every error Fetch returns wraps
	// exactly one of these and names the URL (without any userinfo); the
	// verifier answers any of them with 436 Bad Identity Info.
	ErrURLPolicy     = errors.New("x5u URL refused by policy")
	ErrAddressDenied = errors.New("x5u host address refused (special-purpose range)")
	ErrFetch         = errors.New("x5u fetch failed")
	ErrTooLarge      = errors.New("x5u response too large")
	ErrRedirect      = errors.New("x5u redirect refused")
	ErrCircuitOpen   = errors.New("x5u host circuit breaker open")
	ErrBadChain      = errors.New("x5u response is not a usable PEM certificate chain")

	// Chain verification (TrustStore.VerifyLeaf). Every error VerifyLeaf
	// returns wraps one of these (or ErrNoTNAuthList / ErrBadTNAuthList /
	// ErrKeyUsage / ErrLeafIsCA above); the verifier answers any of them
	// with 437 Unsupported Credential.
	ErrUntrusted   = errors.New("certificate chain does not lead to a trusted root")
	ErrCertExpired = errors.New("certificate outside its validity period")
	ErrNotP256     = errors.New("certificate key is not ECDSA P-256")
	ErrRevoked     = errors.New("certificate revoked")
	ErrCRLExpired  = errors.New("CRL past its nextUpdate (failing closed)")
	ErrBadCRL      = errors.New("malformed or unusable CRL")
)
