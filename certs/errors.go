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
)
