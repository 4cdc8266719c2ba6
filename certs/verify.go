package certs

import (
	"bytes"
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxCRLFile bounds what we read from a CRL file.
const maxCRLFile = 32 << 20

// verifyCacheEntries bounds the verification cache of a trust store
// generation.
const verifyCacheEntries = 10000

// VerifiedCert is a leaf certificate that passed VerifyLeaf. It is shared
// between callers (and with the cache): do not modify it.
type VerifiedCert struct {
	Leaf   *x509.Certificate
	Key    *ecdsa.PublicKey // P-256
	TNAuth TNAuthList
	SPC    string // the first SPC of the TNAuthList ("" when it has none)
	// Chain is the verified chain, leaf first, ending with the trusted root.
	Chain []*x509.Certificate
	// Policy is the leaf's SHAKEN certificate policy OID (any CP version),
	// nil when it has none: reported, not required.
	Policy asn1.ObjectIdentifier
}

// TrustStore is the verification side of the STI PKI: trusted roots (STI-CA
// certificates) from PEM files and directories, and CRLs. It verifies
// fetched chains (VerifyLeaf) and remembers the verifications it made. It
// reads its files once (a changed file needs a new store). It is safe for
// concurrent use.
type TrustStore struct {
	rootFiles, rootDirs, crlFiles []string

	cur atomic.Pointer[trustState]
}

// trustState is one generation: immutable but for its verification cache.
type trustState struct {
	gen    uint64
	stamps map[string]fileStamp
	roots  *x509.CertPool
	crls   map[string][]*crl // by the issuer's raw subject
	cache  *verifyCache
	info   TrustInfo
}

// TrustInfo describes a generation of a trust store, for logs and admin
// pages.
type TrustInfo struct {
	Generation uint64
	Roots      []string // subjects of the trusted roots
	CRLs       []CRLInfo
}

// CRLInfo describes a loaded CRL.
type CRLInfo struct {
	File                   string
	Issuer                 string
	ThisUpdate, NextUpdate time.Time // NextUpdate past: chains through this issuer fail closed
	Revoked                int
}

// Info describes the store's current generation.
func (s *TrustStore) Info() TrustInfo {
	i := s.cur.Load().info
	i.Roots = slices.Clone(i.Roots)
	i.CRLs = slices.Clone(i.CRLs)
	return i
}

type fileStamp struct {
	size    int64
	modTime time.Time
}

type crl struct {
	file    string
	rl      *x509.RevocationList
	revoked map[string]bool // serial numbers, big.Int.Text(16)
}

// NewTrustStore loads the trusted roots from rootFiles (PEM, one or more
// certificates each) and from the *.pem and *.crt files of rootDirs (not
// recursive), and the CRLs of crlFiles (DER or PEM "X509 CRL"). It refuses:
// no root at all (ErrNoCertificates), a root file holding a private key or
// anything but certificates (as LoadChainPEM), a root that is not a CA
// certificate, an unparsable CRL, and a CRL whose issuer is a configured
// root but whose signature that root does not verify (ErrBadCRL).
func NewTrustStore(rootFiles, rootDirs, crlFiles []string) (*TrustStore, error) {
	s := &TrustStore{
		rootFiles: slices.Clone(rootFiles),
		rootDirs:  slices.Clone(rootDirs),
		crlFiles:  slices.Clone(crlFiles),
	}
	stamps, err := s.stampFiles()
	if err != nil {
		return nil, err
	}
	st, err := s.load(stamps, 1)
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	return s, nil
}

// Generation counts the loads of the store's files, from 1.
func (s *TrustStore) Generation() uint64 { return s.cur.Load().gen }

// stampFiles lists every file of the store with its size and mtime.
func (s *TrustStore) stampFiles() (map[string]fileStamp, error) {
	stamps := map[string]fileStamp{}
	add := func(p string) error {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("certs: trust store: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("certs: trust store: %s: not a regular file", p)
		}
		stamps[p] = fileStamp{fi.Size(), fi.ModTime()}
		return nil
	}
	files, err := s.rootPaths()
	if err != nil {
		return nil, err
	}
	for _, p := range append(files, s.crlFiles...) {
		if err := add(p); err != nil {
			return nil, err
		}
	}
	return stamps, nil
}

// rootPaths is rootFiles then the *.pem and *.crt files of rootDirs, sorted
// per directory.
func (s *TrustStore) rootPaths() ([]string, error) {
	out := slices.Clone(s.rootFiles)
	for _, d := range s.rootDirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("certs: trust store: %w", err)
		}
		for _, e := range ents {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if e.IsDir() || (ext != ".pem" && ext != ".crt") {
				continue
			}
			out = append(out, filepath.Join(d, e.Name()))
		}
	}
	return out, nil
}

func (s *TrustStore) load(stamps map[string]fileStamp, gen uint64) (*trustState, error) {
	st := &trustState{gen: gen, stamps: stamps, roots: x509.NewCertPool(), crls: map[string][]*crl{}, cache: newVerifyCache(verifyCacheEntries)}
	files, err := s.rootPaths()
	if err != nil {
		return nil, err
	}
	var roots []*x509.Certificate
	for _, f := range files {
		_, chain, err := LoadChainPEM(f)
		if err != nil {
			return nil, fmt.Errorf("certs: trust store: %w", err)
		}
		for i, c := range chain {
			if !c.BasicConstraintsValid || !c.IsCA {
				return nil, fmt.Errorf("certs: trust store: %s: certificate %d (%q) is not a CA certificate", f, i, c.Subject.CommonName)
			}
			st.roots.AddCert(c)
			roots = append(roots, c)
			st.info.Roots = append(st.info.Roots, c.Subject.String())
		}
	}
	st.info.Generation = gen
	if len(roots) == 0 {
		return nil, fmt.Errorf("certs: trust store: %w (no trusted root in %d files and %d directories)", ErrNoCertificates, len(s.rootFiles), len(s.rootDirs))
	}
	for _, f := range s.crlFiles {
		lists, err := loadCRLs(f)
		if err != nil {
			return nil, err
		}
		for _, rl := range lists {
			for _, r := range roots {
				if bytes.Equal(r.RawSubject, rl.RawIssuer) {
					if err := rl.CheckSignatureFrom(r); err != nil {
						return nil, fmt.Errorf("certs: trust store: CRL %s: %w: issuer is the root %q but its signature does not verify: %v", f, ErrBadCRL, r.Subject.CommonName, err)
					}
				}
			}
			c := &crl{file: f, rl: rl, revoked: make(map[string]bool, len(rl.RevokedCertificateEntries))}
			for _, e := range rl.RevokedCertificateEntries {
				if e.SerialNumber != nil {
					c.revoked[e.SerialNumber.Text(16)] = true
				}
			}
			st.crls[string(rl.RawIssuer)] = append(st.crls[string(rl.RawIssuer)], c)
			st.info.CRLs = append(st.info.CRLs, CRLInfo{File: f, Issuer: rl.Issuer.String(), ThisUpdate: rl.ThisUpdate, NextUpdate: rl.NextUpdate, Revoked: len(c.revoked)})
		}
	}
	return st, nil
}

// loadCRLs reads a DER CRL, or PEM "X509 CRL" blocks.
func loadCRLs(file string) ([]*x509.RevocationList, error) {
	bad := func(format string, args ...any) ([]*x509.RevocationList, error) {
		return nil, fmt.Errorf("certs: trust store: CRL %s: %w: %s", file, ErrBadCRL, fmt.Sprintf(format, args...))
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("certs: trust store: CRL: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCRLFile+1))
	if err != nil {
		return nil, fmt.Errorf("certs: trust store: CRL %s: %w", file, err)
	}
	if len(data) > maxCRLFile {
		return bad("larger than %d bytes", maxCRLFile)
	}
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "X509 CRL" {
				return bad("unexpected PEM block %q (want X509 CRL)", b.Type)
			}
			ders = append(ders, b.Bytes)
		}
	} else {
		ders = [][]byte{data}
	}
	if len(ders) == 0 {
		return bad("no CRL")
	}
	out := make([]*x509.RevocationList, 0, len(ders))
	for i, der := range ders {
		rl, err := x509.ParseRevocationList(der)
		if err != nil {
			return bad("CRL %d: %v", i, err)
		}
		out = append(out, rl)
	}
	return out, nil
}

// VerifyLeaf checks the chain (leaf first, as fetched from an x5u) of a
// PASSporT issued at iat, at time now:
//
//   - the leaf has a P-256 ECDSA key (ErrNotP256), the digitalSignature key
//     usage (ErrKeyUsage), is not a CA (ErrLeafIsCA), and carries a
//     well-formed TNAuthList (ErrNoTNAuthList, ErrBadTNAuthList);
//   - every certificate of the verified chain is valid both at iat and at
//     now (ErrCertExpired, wrapping ErrExpired or ErrNotYetValid, saying
//     which certificate and which instant);
//   - the chain leads to a trusted root, the other certificates given
//     serving as intermediates (ErrUntrusted);
//   - no certificate of the verified chain but the root is listed in a CRL
//     of its issuer (ErrRevoked). A CRL counts for an issuer when its issuer
//     name is the issuer's subject and the issuer's key verifies its
//     signature (a CRL of another CA of the same name is ignored); such a
//     CRL past its nextUpdate fails the chain closed (ErrCRLExpired).
//
// The SHAKEN certificate policy is reported (VerifiedCert.Policy), not
// required. A TNAuthList extension marked critical is accepted.
//
// Verifications are cached per generation of the store's files, keyed by
// the exact chain given: for a chain seen before, VerifyLeaf costs a map
// lookup, the comparison of the chain's bytes and the time checks.
// Time-independent failures are cached too; the others are recomputed.
func (s *TrustStore) VerifyLeaf(chain []*x509.Certificate, iat, now time.Time) (*VerifiedCert, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("certs: verify: %w: empty chain", ErrUntrusted)
	}
	for i, c := range chain {
		if c == nil || len(c.Raw) == 0 {
			return nil, fmt.Errorf("certs: verify: %w: certificate %d is not a parsed certificate", ErrUntrusted, i)
		}
	}
	st := s.cur.Load()
	e := st.cache.get(chain)
	if e == nil {
		e = st.verify(chain, now)
		if e.cacheable {
			st.cache.put(chain, e)
		}
	}
	if e.err != nil {
		return nil, e.err
	}
	if iat.Before(e.notBefore) || iat.After(e.notAfter) {
		return nil, expiredErr(e.v.Chain, iat, "iat")
	}
	if now.Before(e.notBefore) || now.After(e.notAfter) {
		return nil, expiredErr(e.v.Chain, now, "now")
	}
	if !e.crlNextUpdate.IsZero() && now.After(e.crlNextUpdate) {
		return nil, e.crlErr
	}
	return e.v, nil
}

// verifyResult is one verification: the verified cert and the window in
// which the whole chain is valid, or a failure.
type verifyResult struct {
	v             *VerifiedCert
	notBefore     time.Time // latest notBefore of the verified chain
	notAfter      time.Time // earliest notAfter
	crlNextUpdate time.Time // earliest nextUpdate of the CRLs that applied (zero: none)
	crlErr        error     // the error once crlNextUpdate is past
	err           error
	cacheable     bool
	raw           [][]byte // the chain as given: the cache key
	elem          *list.Element
}

func expiredErr(chain []*x509.Certificate, t time.Time, which string) error {
	for i, c := range chain {
		if err := validAt(c, t, which); err != nil {
			return fmt.Errorf("certs: verify: %w at %s: certificate %d (%q): %w", ErrCertExpired, which, i, c.Subject.CommonName, err)
		}
	}
	return fmt.Errorf("certs: verify: %w at %s", ErrCertExpired, which) // not reached
}

// validAt is CheckValidAt naming the instant ("iat", "now").
func validAt(c *x509.Certificate, t time.Time, which string) error {
	const layout = time.RFC3339
	if t.Before(c.NotBefore) {
		return fmt.Errorf("%w: notBefore %s is after %s %s", ErrNotYetValid, c.NotBefore.UTC().Format(layout), which, t.UTC().Format(layout))
	}
	if t.After(c.NotAfter) {
		return fmt.Errorf("%w: notAfter %s is before %s %s", ErrExpired, c.NotAfter.UTC().Format(layout), which, t.UTC().Format(layout))
	}
	return nil
}

// unprefixed is err without its leading "certs: " (to wrap it in a message
// that already says so), still matching errors.Is/As.
type unprefixed struct{ err error }

func (u unprefixed) Error() string { return strings.TrimPrefix(u.err.Error(), "certs: ") }
func (u unprefixed) Unwrap() error { return u.err }

// verify is the full verification of chain at now (validity at iat and now
// is checked by the caller, against the window computed here).
func (st *trustState) verify(chain []*x509.Certificate, now time.Time) *verifyResult {
	fail := func(err error) *verifyResult { return &verifyResult{err: err, cacheable: true} }
	leaf := chain[0]
	name := leaf.Subject.CommonName
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		kind := fmt.Sprintf("%T", leaf.PublicKey)
		if ok {
			kind = "ECDSA " + pub.Curve.Params().Name
		}
		return fail(fmt.Errorf("certs: verify: leaf %q: %w (found %s)", name, ErrNotP256, kind))
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fail(fmt.Errorf("certs: verify: leaf %q: %w", name, ErrKeyUsage))
	}
	if leaf.IsCA {
		return fail(fmt.Errorf("certs: verify: leaf %q: %w", name, ErrLeafIsCA))
	}
	tnl, err := TNAuthListOf(leaf)
	if err != nil {
		if errors.Is(err, ErrNoTNAuthList) {
			return fail(fmt.Errorf("certs: verify: leaf %q: %w", name, ErrNoTNAuthList))
		}
		return fail(fmt.Errorf("certs: verify: leaf %q: %w", name, unprefixed{err}))
	}
	if len(chain) > maxChainCerts {
		return fail(fmt.Errorf("certs: verify: %w: %d certificates (at most %d)", ErrUntrusted, len(chain), maxChainCerts))
	}
	if err := validAt(leaf, now, "now"); err != nil {
		// Cheaper than a chain build, and says which instant.
		return &verifyResult{err: fmt.Errorf("certs: verify: %w at now: certificate 0 (%q): %w", ErrCertExpired, name, err)}
	}

	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	vleaf := leaf
	if slices.ContainsFunc(leaf.UnhandledCriticalExtensions, func(o asn1.ObjectIdentifier) bool { return o.Equal(OIDTNAuthList) }) {
		// We handle the TNAuthList: a critical one must not fail the
		// chain build. A shallow copy: the caller's certificate is shared.
		cp := *leaf
		cp.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(leaf.UnhandledCriticalExtensions), func(o asn1.ObjectIdentifier) bool { return o.Equal(OIDTNAuthList) })
		vleaf = &cp
	}
	chains, err := vleaf.Verify(x509.VerifyOptions{
		Roots:         st.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, // SHAKEN certificates carry no EKU
	})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			cause := validAt(inv.Cert, now, "now")
			if cause == nil {
				cause = err
			}
			return &verifyResult{err: fmt.Errorf("certs: verify: %w at now: %q: %w", ErrCertExpired, inv.Cert.Subject.CommonName, cause)}
		}
		return fail(fmt.Errorf("certs: verify: leaf %q: %w: %v", name, ErrUntrusted, err))
	}
	vchain := slices.Clone(chains[0])
	vchain[0] = leaf

	r := &verifyResult{cacheable: true}
	r.notBefore, r.notAfter = vchain[0].NotBefore, vchain[0].NotAfter
	for _, c := range vchain[1:] {
		if c.NotBefore.After(r.notBefore) {
			r.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(r.notAfter) {
			r.notAfter = c.NotAfter
		}
	}

	// Revocation, for each certificate but the root, by its issuer's CRLs.
	for i := 0; i+1 < len(vchain); i++ {
		c, issuer := vchain[i], vchain[i+1]
		for _, l := range st.crls[string(issuer.RawSubject)] {
			if l.rl.CheckSignatureFrom(issuer) != nil {
				continue // another CA's CRL under the same name
			}
			if l.revoked[serialKey(c.SerialNumber)] {
				return fail(fmt.Errorf("certs: verify: certificate %d (%q, serial %s): %w by CRL %s of %q", i, c.Subject.CommonName, c.SerialNumber.Text(16), ErrRevoked, l.file, issuer.Subject.CommonName))
			}
			if nu := l.rl.NextUpdate; !nu.IsZero() && (r.crlNextUpdate.IsZero() || nu.Before(r.crlNextUpdate)) {
				r.crlNextUpdate = nu
				r.crlErr = fmt.Errorf("certs: verify: certificate %d (%q): %w: CRL %s of %q, nextUpdate %s", i, c.Subject.CommonName, ErrCRLExpired, l.file, issuer.Subject.CommonName, nu.UTC().Format(time.RFC3339))
			}
		}
	}

	var policy asn1.ObjectIdentifier
	for _, o := range leaf.PolicyIdentifiers {
		if IsSHAKENPolicy(o) {
			policy = o
			break
		}
	}
	var spc string
	if len(tnl.SPCs) > 0 {
		spc = tnl.SPCs[0]
	}
	r.v = &VerifiedCert{Leaf: leaf, Key: pub, TNAuth: tnl, SPC: spc, Chain: vchain, Policy: policy}
	return r
}

func serialKey(n *big.Int) string {
	if n == nil {
		return ""
	}
	return n.Text(16)
}

// verifyCache maps a chain (by its certificates' bytes) to its
// verification. Keyed by the leaf's DER, each entry holding the rest of the
// chain to compare: the same leaf served with other intermediates is
// another entry. Bounded; inserting into a full cache evicts the oldest.
type verifyCache struct {
	max int

	mu    sync.RWMutex
	m     map[string][]*verifyResult // leaf DER → variants
	n     int
	order *list.List // of *verifyResult, oldest first
}

func newVerifyCache(max int) *verifyCache {
	return &verifyCache{max: max, m: map[string][]*verifyResult{}, order: list.New()}
}

func sameChain(raw [][]byte, chain []*x509.Certificate) bool {
	if len(raw) != len(chain) {
		return false
	}
	for i := 1; i < len(raw); i++ { // raw[0] is the map key
		if !bytes.Equal(raw[i], chain[i].Raw) {
			return false
		}
	}
	return true
}

func (c *verifyCache) get(chain []*x509.Certificate) *verifyResult {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, r := range c.m[string(chain[0].Raw)] {
		if sameChain(r.raw, chain) {
			return r
		}
	}
	return nil
}

func (c *verifyCache) put(chain []*x509.Certificate, r *verifyResult) {
	r.raw = make([][]byte, len(chain))
	for i, cert := range chain {
		r.raw[i] = cert.Raw
	}
	key := string(chain[0].Raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, old := range c.m[key] {
		if sameChain(old.raw, chain) {
			return // a concurrent caller was first
		}
	}
	for c.n >= c.max {
		c.evict(c.order.Front().Value.(*verifyResult))
	}
	r.elem = c.order.PushBack(r)
	c.m[key] = append(c.m[key], r)
	c.n++
}

func (c *verifyCache) evict(r *verifyResult) {
	key := string(r.raw[0])
	vs := slices.DeleteFunc(c.m[key], func(x *verifyResult) bool { return x == r })
	if len(vs) == 0 {
		delete(c.m, key)
	} else {
		c.m[key] = vs
	}
	c.order.Remove(r.elem)
	c.n--
}
