package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a generated PKI with its CA keys, to issue custom leaves and
// CRLs.
type testPKI struct {
	*pkiFiles
	rootKey, caKey *ecdsa.PrivateKey
}

func newTestPKI(t testing.TB, now time.Time) *testPKI {
	t.Helper()
	p := newPKI(t, InitOptions{Now: now})
	rk, err := LoadKey(p.path(FileRootKey))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := LoadKey(p.path(FileCAKey))
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{pkiFiles: p, rootKey: rk, caKey: ck}
}

// leaf issues an SP certificate under the intermediate (valid now±1h,
// TNAuthList SPC TEST01, SHAKEN policy, P-256 unless key is given) and
// returns [leaf, intermediate].
func (p *testPKI) leaf(t testing.TB, now time.Time, key *ecdsa.PrivateKey, mutate func(*x509.Certificate)) []*x509.Certificate {
	t.Helper()
	return leafUnder(t, p.ca, p.caKey, key, now, mutate)
}

// leafUnder is leaf under any issuer: [leaf, issuer].
func leafUnder(t testing.TB, issuer *x509.Certificate, issuerKey, key *ecdsa.PrivateKey, now time.Time, mutate func(*x509.Certificate)) []*x509.Certificate {
	t.Helper()
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "SHAKEN TEST01"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: OIDTNAuthList, Value: mustTNDER(t)}},
	}
	if err := setPolicies(tmpl, []asn1.ObjectIdentifier{OIDSHAKENPolicy}); err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(tmpl)
	}
	c, _, err := issue(tmpl, issuer, key, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	return []*x509.Certificate{c, issuer}
}

// intermediate issues another intermediate under the root (mutate edits
// it) and returns it with its key.
func (p *testPKI) intermediate(t testing.TB, now time.Time, mutate func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Other Intermediate"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if mutate != nil {
		mutate(tmpl)
	}
	c, _, err := issue(tmpl, p.root, key, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// crl is a DER CRL of issuer listing serials.
func makeCRL(t testing.TB, issuer *x509.Certificate, key *ecdsa.PrivateKey, thisUpdate, nextUpdate time.Time, serials ...*big.Int) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(thisUpdate.Unix()), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func newStore(t testing.TB, roots, dirs, crls []string) *TrustStore {
	t.Helper()
	s, err := NewTrustStore(roots, dirs, crls)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyLeaf(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	iat := now.Add(-10 * time.Second)
	p := newTestPKI(t, now)
	other := newTestPKI(t, now) // same names, other keys
	dir := t.TempDir()

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	revokedLeaf := p.leaf(t, now, nil, nil)
	otherCAsCRLLeaf := p.leaf(t, now, nil, nil)
	revokedInter, revokedInterKey := p.intermediate(t, now, nil)
	underRevoked := leafUnder(t, revokedInter, revokedInterKey, nil, now, nil)
	expiredInter, expiredInterKey := p.intermediate(t, now, func(c *x509.Certificate) { c.NotAfter = now.Add(-time.Minute) })
	underExpired := leafUnder(t, expiredInter, expiredInterKey, nil, now, nil)

	crlCA := writeFile(t, dir, "ca.crl", makeCRL(t, p.ca, p.caKey, now.Add(-time.Hour), now.Add(24*time.Hour), revokedLeaf[0].SerialNumber), 0o644)
	crlRoot := writeFile(t, dir, "root.crl.pem", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL",
		Bytes: makeCRL(t, p.root, p.rootKey, now.Add(-time.Hour), now.Add(24*time.Hour), revokedInter.SerialNumber)}), 0o644)
	// A CRL of the other PKI's intermediate: same issuer name, other key.
	crlOther := writeFile(t, dir, "other.crl", makeCRL(t, other.ca, other.caKey, now.Add(-time.Hour), now.Add(24*time.Hour), otherCAsCRLLeaf[0].SerialNumber), 0o644)
	store := newStore(t, []string{p.path(FileRootCert)}, nil, []string{crlCA, crlRoot, crlOther})

	cases := []struct {
		name     string
		chain    []*x509.Certificate
		iat, now time.Time
		want     []error // nil: OK
		msg      string  // in the error
	}{
		{"InitPKI chain", p.spChain, iat, now, nil, ""},
		{"custom leaf", p.leaf(t, now, nil, nil), iat, now, nil, ""},
		{"chain with the root too", append(p.leaf(t, now, nil, nil), p.root), iat, now, nil, ""},
		{"other PKI's CRL ignored", otherCAsCRLLeaf, iat, now, nil, ""},
		{"critical TNAuthList", p.leaf(t, now, nil, func(c *x509.Certificate) { c.ExtraExtensions[0].Critical = true }), iat, now, nil, ""},
		{"no SHAKEN policy (reported only)", p.leaf(t, now, nil, func(c *x509.Certificate) { c.Policies, c.PolicyIdentifiers = nil, nil }), iat, now, nil, ""},
		{"foreign root", other.spChain, iat, now, []error{ErrUntrusted}, ""},
		{"leaf alone", p.spChain[:1], iat, now, []error{ErrUntrusted}, ""},
		{"empty chain", nil, iat, now, []error{ErrUntrusted}, ""},
		{"not yet valid at iat", p.leaf(t, now, nil, func(c *x509.Certificate) { c.NotBefore = now.Add(-5 * time.Second) }), iat, now, []error{ErrCertExpired, ErrNotYetValid}, "at iat"},
		{"expired now, valid at iat", p.leaf(t, now, nil, func(c *x509.Certificate) { c.NotAfter = now.Add(-5 * time.Second) }), iat, now, []error{ErrCertExpired, ErrExpired}, "at now"},
		{"expired at iat and now", p.leaf(t, now, nil, func(c *x509.Certificate) { c.NotAfter = now.Add(-time.Minute) }), iat, now, []error{ErrCertExpired, ErrExpired}, ""},
		{"intermediate expired", underExpired, iat, now, []error{ErrCertExpired}, "Other Intermediate"},
		{"no digitalSignature", p.leaf(t, now, nil, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyAgreement }), iat, now, []error{ErrKeyUsage}, ""},
		{"CA leaf", p.leaf(t, now, nil, func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage |= x509.KeyUsageCertSign }), iat, now, []error{ErrLeafIsCA}, ""},
		{"P-384", p.leaf(t, now, p384, nil), iat, now, []error{ErrNotP256}, "P-384"},
		{"no TNAuthList", p.leaf(t, now, nil, func(c *x509.Certificate) { c.ExtraExtensions = nil }), iat, now, []error{ErrNoTNAuthList}, ""},
		{"bad TNAuthList", p.leaf(t, now, nil, func(c *x509.Certificate) { c.ExtraExtensions[0].Value = []byte{0x30, 0x00} }), iat, now, []error{ErrBadTNAuthList}, ""},
		{"leaf revoked by the intermediate's CRL", revokedLeaf, iat, now, []error{ErrRevoked}, revokedLeaf[0].SerialNumber.Text(16)},
		{"intermediate revoked by the root's CRL", underRevoked, iat, now, []error{ErrRevoked}, "Other Intermediate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 2 { // the second round is served from the cache
				v, err := store.VerifyLeaf(tc.chain, tc.iat, tc.now)
				if tc.want == nil {
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					if v.Leaf != tc.chain[0] || v.SPC != "TEST01" || !v.Key.Equal(tc.chain[0].PublicKey) || len(v.TNAuth.SPCs) != 1 {
						t.Fatalf("round %d: %+v", round, v)
					}
					if root := v.Chain[len(v.Chain)-1]; !root.Equal(p.root) {
						t.Fatalf("chain ends at %q", root.Subject.CommonName)
					}
					continue
				}
				if err == nil {
					t.Fatalf("round %d: accepted", round)
				}
				for _, w := range tc.want {
					if !errors.Is(err, w) {
						t.Fatalf("round %d: %v does not wrap %v", round, err, w)
					}
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("round %d: %q does not say %q", round, err, tc.msg)
				}
			}
		})
	}

	// The policy is reported.
	v, err := store.VerifyLeaf(p.spChain, iat, now)
	if err != nil || !v.Policy.Equal(OIDSHAKENPolicy) {
		t.Fatalf("policy: %v %v", v, err)
	}
	v, err = store.VerifyLeaf(p.leaf(t, now, nil, func(c *x509.Certificate) { c.Policies, c.PolicyIdentifiers = nil, nil }), iat, now)
	if err != nil || v.Policy != nil {
		t.Fatalf("no policy: %v %v", v, err)
	}
}

func mustTNDER(t testing.TB) []byte {
	t.Helper()
	der, err := TNAuthList{SPCs: []string{"TEST01"}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyLeafCache(t *testing.T) {
	now := time.Now()
	p := newTestPKI(t, now)
	other := newTestPKI(t, now)
	store := newStore(t, []string{p.path(FileRootCert)}, nil, nil)
	chain := p.leaf(t, now, nil, func(c *x509.Certificate) { c.NotBefore = now.Add(-time.Hour); c.NotAfter = now.Add(time.Hour) })

	v1, err := store.VerifyLeaf(chain, now, now)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := store.VerifyLeaf(chain, now, now)
	if err != nil || v1 != v2 {
		t.Fatalf("second verification not from the cache: %v", err)
	}
	// The same certificates parsed again hit the same entry (keyed by bytes).
	copyChain := make([]*x509.Certificate, len(chain))
	for i, c := range chain {
		copyChain[i], _ = x509.ParseCertificate(c.Raw)
	}
	if v3, err := store.VerifyLeaf(copyChain, now, now); err != nil || v3 != v1 {
		t.Fatalf("equal chain: %v", err)
	}
	// Time checks still apply to a cached entry.
	if _, err := store.VerifyLeaf(chain, now.Add(-2*time.Hour), now); !errors.Is(err, ErrCertExpired) || !strings.Contains(err.Error(), "at iat") {
		t.Fatalf("iat before notBefore: %v", err)
	}
	if _, err := store.VerifyLeaf(chain, now, now.Add(2*time.Hour)); !errors.Is(err, ErrCertExpired) || !strings.Contains(err.Error(), "at now") {
		t.Fatalf("now after notAfter: %v", err)
	}
	// The same leaf with a wrong intermediate fails, and does not poison
	// the good chain's entry.
	bad := []*x509.Certificate{chain[0], other.ca}
	for range 2 {
		if _, err := store.VerifyLeaf(bad, now, now); !errors.Is(err, ErrUntrusted) {
			t.Fatalf("wrong intermediate: %v", err)
		}
	}
	if v, err := store.VerifyLeaf(chain, now, now); err != nil || v != v1 {
		t.Fatalf("good chain after a bad one: %v", err)
	}
	// Bounded.
	st := store.cur.Load()
	st.cache.max = 3
	for range 5 {
		if _, err := store.VerifyLeaf(p.leaf(t, now, nil, nil), now, now); err != nil {
			t.Fatal(err)
		}
	}
	if st.cache.n != 3 || st.cache.order.Len() != 3 {
		t.Fatalf("%d entries", st.cache.n)
	}
	total := 0
	for _, vs := range st.cache.m {
		total += len(vs)
	}
	if total != 3 {
		t.Fatalf("map holds %d entries", total)
	}
}

func TestVerifyLeafCRLExpiry(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	p := newTestPKI(t, now)
	dir := t.TempDir()
	chain := p.leaf(t, now, nil, func(c *x509.Certificate) { c.NotAfter = now.Add(48 * time.Hour) })
	crl := writeFile(t, dir, "ca.crl", makeCRL(t, p.ca, p.caKey, now.Add(-time.Hour), now.Add(time.Hour)), 0o644)
	store := newStore(t, []string{p.path(FileRootCert)}, nil, []string{crl})
	if _, err := store.VerifyLeaf(chain, now, now); err != nil {
		t.Fatal(err)
	}
	// Cached, then the CRL goes stale: fail closed.
	later := now.Add(2 * time.Hour)
	if _, err := store.VerifyLeaf(chain, later, later); !errors.Is(err, ErrCRLExpired) {
		t.Fatalf("stale CRL, cached chain: %v", err)
	}
	// Not cached yet, CRL already stale.
	fresh := p.leaf(t, now, nil, func(c *x509.Certificate) { c.NotAfter = now.Add(48 * time.Hour) })
	if _, err := store.VerifyLeaf(fresh, later, later); !errors.Is(err, ErrCRLExpired) {
		t.Fatalf("stale CRL: %v", err)
	}
}

func TestNewTrustStoreRefuses(t *testing.T) {
	now := time.Now()
	p := newTestPKI(t, now)
	other := newTestPKI(t, now)
	dir := t.TempDir()
	emptyDir := t.TempDir()
	garbage := writeFile(t, dir, "garbage.crl", []byte("not a CRL"), 0o644)
	wrongPEM := writeFile(t, dir, "wrong.crl", readFile(t, p.path(FileRootCert)), 0o644)
	// A CRL naming our root as issuer but signed by the other root (same name).
	forged := writeFile(t, dir, "forged.crl", makeCRL(t, other.root, other.rootKey, now, now.Add(time.Hour)), 0o644)
	root := p.path(FileRootCert)
	cases := []struct {
		name              string
		roots, dirs, crls []string
		want              error
	}{
		{"nothing", nil, nil, nil, ErrNoCertificates},
		{"empty directory", nil, []string{emptyDir}, nil, ErrNoCertificates},
		{"missing root file", []string{filepath.Join(dir, "nope.pem")}, nil, nil, os.ErrNotExist},
		{"missing directory", nil, []string{filepath.Join(dir, "nope")}, nil, os.ErrNotExist},
		{"key as root", []string{p.path(FileRootKey)}, nil, nil, ErrPrivateKeyInChain},
		{"leaf as root", []string{p.path(FileSPCert)}, nil, nil, nil},
		{"missing CRL", []string{root}, nil, []string{filepath.Join(dir, "nope.crl")}, os.ErrNotExist},
		{"garbage CRL", []string{root}, nil, []string{garbage}, ErrBadCRL},
		{"certificate as CRL", []string{root}, nil, []string{wrongPEM}, ErrBadCRL},
		{"root CRL with a bad signature", []string{root}, nil, []string{forged}, ErrBadCRL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTrustStore(tc.roots, tc.dirs, tc.crls)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
		})
	}
}

func TestTrustStoreInfo(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	p := newTestPKI(t, now)
	dir := t.TempDir()
	rootDir := t.TempDir()
	writeFile(t, rootDir, "a.pem", readFile(t, p.path(FileRootCert)), 0o644)
	writeFile(t, rootDir, "README", []byte("ignored"), 0o644)
	chain := p.leaf(t, now, nil, nil)
	crlPath := writeFile(t, dir, "ca.crl", makeCRL(t, p.ca, p.caKey, now.Add(-time.Hour), now.Add(24*time.Hour), chain[0].SerialNumber), 0o644)
	store := newStore(t, nil, []string{rootDir}, []string{crlPath})
	if info := store.Info(); len(info.Roots) != 1 || !strings.Contains(info.Roots[0], "stirgate Test SHAKEN Root") ||
		len(info.CRLs) != 1 || info.CRLs[0].File != crlPath || info.CRLs[0].Revoked != 1 || !info.CRLs[0].NextUpdate.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("info: %+v", info)
	}
	if _, err := store.VerifyLeaf(chain, now, now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("leaf listed in the CRL: %v", err)
	}
}

// BenchmarkVerifyLeafCached is VerifyLeaf on a chain already verified: the
// per-call cost added to the PASSporT signature check. Compare with
// BenchmarkP256Verify (the signature check itself).
func BenchmarkVerifyLeafCached(b *testing.B) {
	now := time.Now()
	p := newTestPKI(b, now)
	dir := b.TempDir()
	crl := writeFile(b, dir, "ca.crl", makeCRL(b, p.ca, p.caKey, now.Add(-time.Hour), now.Add(time.Hour)), 0o644)
	store := newStore(b, []string{p.path(FileRootCert)}, nil, []string{crl})
	if _, err := store.VerifyLeaf(p.spChain, now, now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := store.VerifyLeaf(p.spChain, now, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyLeafUncached is the first verification of a chain.
func BenchmarkVerifyLeafUncached(b *testing.B) {
	now := time.Now()
	p := newTestPKI(b, now)
	store := newStore(b, []string{p.path(FileRootCert)}, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		store.cur.Load().cache = newVerifyCache(verifyCacheEntries)
		if _, err := store.VerifyLeaf(p.spChain, now, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkP256Verify is one raw ECDSA P-256 signature verification, the
// yardstick of the verify stage.
func BenchmarkP256Verify(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h := sha256.Sum256([]byte("header.payload"))
	sig, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
	for b.Loop() {
		if !ecdsa.VerifyASN1(&k.PublicKey, h[:], sig) {
			b.Fatal("bad signature")
		}
	}
}

// FuzzParseChainPEM: x5u bodies come from the network. Never panic; what
// parses has at least one certificate, holds no private key, and its PEM
// re-parses to the same certificates.
func FuzzParseChainPEM(f *testing.F) {
	p := newPKI(f, InitOptions{})
	sp := readFile(f, p.path(FileSPCert))
	f.Add(sp)
	f.Add(readFile(f, p.path(FileRootCert)))
	f.Add(append(append([]byte("junk before\n"), sp...), "junk after"...))
	f.Add(readFile(f, p.path(FileSPKey)))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, chain, err := ParseChainPEM(data)
		if err != nil {
			if out != nil || chain != nil {
				t.Fatal("partial result with an error")
			}
			return
		}
		if len(chain) == 0 || strings.Contains(string(data), "PRIVATE KEY") {
			t.Fatalf("accepted %d certificates from %q", len(chain), data)
		}
		out2, chain2, err := ParseChainPEM(out)
		if err != nil || len(chain2) != len(chain) || string(out2) != string(out) {
			t.Fatalf("re-parse: %v", err)
		}
		for i := range chain {
			if !chain[i].Equal(chain2[i]) {
				t.Fatalf("certificate %d differs", i)
			}
		}
	})
}
