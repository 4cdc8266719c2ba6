package verify

import (
	"context"
	"crypto/x509"
	"net/netip"
	"time"

	"github.com/stirgate/stirgate/certs"
)

// FetcherSource is the CertSource of production: certs.Fetcher applies the
// x5u policy (SSRF guard), limits, cache, singleflight and circuit breaker.
type FetcherSource struct{ Fetcher *certs.Fetcher }

// Chain fetches (or finds in cache) the chain at x5u.
func (s FetcherSource) Chain(ctx context.Context, x5u string) ([]*x509.Certificate, error) {
	f, err := s.Fetcher.Fetch(ctx, x5u)
	if err != nil {
		return nil, err
	}
	return f.Chain, nil
}

// StaticSource serves one chain for any x5u: `stirgate verify --cert`.
type StaticSource []*x509.Certificate

// Chain returns the chain.
func (s StaticSource) Chain(context.Context, string) ([]*x509.Certificate, error) { return s, nil }

// TrustCredentials checks chains with a certs.TrustStore (roots, CRLs,
// validity at iat and now, key usage, P-256, TNAuthList).
type TrustCredentials struct{ Store *certs.TrustStore }

// Check verifies chain for a PASSporT issued at iat.
func (c TrustCredentials) Check(chain []*x509.Certificate, iat, now time.Time) (Credential, error) {
	v, err := c.Store.VerifyLeaf(chain, iat, now)
	if err != nil {
		return Credential{}, err
	}
	cred := Credential{Key: v.Key, SPC: v.SPC}
	if len(v.TNAuth.TNs) > 0 || len(v.TNAuth.Ranges) > 0 {
		cred.Covers = v.TNAuth.Covers
	}
	return cred, nil
}

// Policy is the certs.FetchPolicy of this x5u section (validated).
func (x X5UConfig) Policy() certs.FetchPolicy {
	p := certs.FetchPolicy{
		AllowHTTP:       x.AllowHTTP,
		Ports:           x.Ports,
		AllowQuery:      x.AllowQuery,
		AllowHosts:      x.AllowHosts,
		DenyHosts:       x.DenyHosts,
		Timeout:         x.Timeout,
		MaxBody:         x.MaxBody,
		CacheMin:        x.CacheMin,
		CacheMax:        x.CacheMax,
		NegativeTTL:     x.NegativeTTL,
		BreakerFailures: x.BreakerFailures,
		BreakerCooldown: x.BreakerCooldown,
	}
	for _, a := range x.AllowAddresses {
		if pr, err := netip.ParsePrefix(a); err == nil {
			p.AllowAddrs = append(p.AllowAddrs, pr.Masked())
		} else if ad, err := netip.ParseAddr(a); err == nil {
			p.AllowAddrs = append(p.AllowAddrs, netip.PrefixFrom(ad, ad.BitLen()))
		}
	}
	return p
}
