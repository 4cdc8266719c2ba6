// Package certs holds the STI PKI pieces of stirgate: the TNAuthList
// certificate extension (RFC 8226 §9, RFC 9060), loading and checking the
// signing key and certificate chain, a test PKI shaped like ATIS-1000080's,
// the HTTP handler that serves a chain at an x5u URL (ATIS-1000074), and the
// verification side: the x5u fetcher with its SSRF guard, cache and circuit
// breaker (Fetcher, FetchPolicy), and chain, validity and CRL checks
// (TrustStore.VerifyLeaf).
//
// It is plain Go over the standard library and imports nothing of ours.
// Errors wrap the sentinels of errors.go and name the file concerned; they
// never carry key material.
package certs
