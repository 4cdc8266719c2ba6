package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pkiFiles reads a generated PKI back.
type pkiFiles struct {
	dir      string
	root, ca *x509.Certificate
	spChain  []*x509.Certificate
}

func newPKI(t testing.TB, opt InitOptions) *pkiFiles {
	t.Helper()
	if opt.Dir == "" {
		opt.Dir = t.TempDir()
	}
	if err := InitPKI(opt); err != nil {
		t.Fatalf("InitPKI: %v", err)
	}
	p := &pkiFiles{dir: opt.Dir}
	load := func(name string) []*x509.Certificate {
		_, chain, err := LoadChainPEM(filepath.Join(opt.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return chain
	}
	p.root = load(FileRootCert)[0]
	p.ca = load(FileCACert)[0]
	p.spChain = load(FileSPCert)
	return p
}

func (p *pkiFiles) path(name string) string { return filepath.Join(p.dir, name) }

func TestInitPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "pki") // does not exist yet
	now := time.Now()
	p := newPKI(t, InitOptions{Dir: dir, SPC: "616H", TNs: []string{"12025550100"}, Validity: 30 * 24 * time.Hour})

	// Directory and file modes.
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %04o, want 0700", st.Mode().Perm())
	}
	modes := map[string]os.FileMode{
		FileRootCert: 0o644, FileCACert: 0o644, FileSPCert: 0o644,
		FileRootKey: 0o600, FileCAKey: 0o600, FileSPKey: 0o600,
	}
	for name, want := range modes {
		st, err := os.Stat(p.path(name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", name, st.Mode().Perm(), want)
		}
	}

	// Keys: PKCS#8 PEM, P-256, each matching its certificate.
	for _, kc := range []struct {
		key  string
		cert *x509.Certificate
	}{{FileRootKey, p.root}, {FileCAKey, p.ca}, {FileSPKey, p.spChain[0]}} {
		data, err := os.ReadFile(p.path(kc.key))
		if err != nil {
			t.Fatal(err)
		}
		b, rest := pem.Decode(data)
		if b == nil || b.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
			t.Fatalf("%s: want one PKCS#8 PRIVATE KEY block", kc.key)
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			t.Fatalf("%s: not P-256", kc.key)
		}
		if !kc.cert.PublicKey.(*ecdsa.PublicKey).Equal(&ek.PublicKey) {
			t.Fatalf("%s does not match its certificate", kc.key)
		}
	}

	// sp.pem = leaf + intermediate.
	if len(p.spChain) != 2 || !p.spChain[1].Equal(p.ca) {
		t.Fatalf("sp.pem: %d certs, second is the intermediate: %v", len(p.spChain), len(p.spChain) == 2 && p.spChain[1].Equal(p.ca))
	}
	leaf := p.spChain[0]

	// The chain verifies to the root.
	roots := x509.NewCertPool()
	roots.AddCert(p.root)
	inter := x509.NewCertPool()
	inter.AddCert(p.spChain[1])
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(chains) != 1 || len(chains[0]) != 3 {
		t.Fatalf("chains: %v", chains)
	}
	// ... and under the SHAKEN policy.
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages:           []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CertificatePolicies: []x509.OID{mustOID(t, OIDSHAKENPolicy)},
	}); err != nil {
		t.Fatalf("Verify with policy: %v", err)
	}

	// Root: self-signed CA.
	if !p.root.IsCA || !p.root.BasicConstraintsValid || p.root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("root: IsCA=%v KU=%v", p.root.IsCA, p.root.KeyUsage)
	}
	if err := p.root.CheckSignatureFrom(p.root); err != nil {
		t.Errorf("root not self-signed: %v", err)
	}
	// Intermediate: CA, pathlen 0, signed by root, SHAKEN policy.
	if !p.ca.IsCA || p.ca.MaxPathLen != 0 || !p.ca.MaxPathLenZero || p.ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("intermediate: IsCA=%v pathlen=%d zero=%v KU=%v", p.ca.IsCA, p.ca.MaxPathLen, p.ca.MaxPathLenZero, p.ca.KeyUsage)
	}
	// Leaf.
	if leaf.IsCA || !leaf.BasicConstraintsValid || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("leaf: IsCA=%v KU=%v", leaf.IsCA, leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 0 {
		t.Errorf("leaf has EKU %v", leaf.ExtKeyUsage)
	}
	if leaf.Subject.CommonName != "SHAKEN 616H" {
		t.Errorf("leaf CN %q", leaf.Subject.CommonName)
	}
	if leaf.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("leaf signature algorithm %v", leaf.SignatureAlgorithm)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("leaf key not P-256")
	}
	for _, c := range []*x509.Certificate{p.ca, leaf} {
		if len(c.PolicyIdentifiers) != 1 || !c.PolicyIdentifiers[0].Equal(OIDSHAKENPolicy) || !IsSHAKENPolicy(c.PolicyIdentifiers[0]) {
			t.Errorf("%s policies %v, want [%v]", c.Subject.CommonName, c.PolicyIdentifiers, OIDSHAKENPolicy)
		}
	}
	l, err := TNAuthListOf(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if l.String() != "spc:616H tn:12025550100" {
		t.Errorf("TNAuthList %v", l)
	}
	for _, e := range leaf.Extensions {
		if e.Id.Equal(OIDTNAuthList) && e.Critical {
			t.Error("TNAuthList marked critical")
		}
	}
	for _, c := range []*x509.Certificate{p.root, p.ca} {
		if _, err := TNAuthListOf(c); !errors.Is(err, ErrNoTNAuthList) {
			t.Errorf("%s carries a TNAuthList", c.Subject.CommonName)
		}
	}

	// Key identifiers link up; serials are random, large and distinct.
	if len(p.root.SubjectKeyId) == 0 || len(p.ca.SubjectKeyId) == 0 || len(leaf.SubjectKeyId) == 0 {
		t.Error("missing SubjectKeyId")
	}
	if !bytes.Equal(leaf.AuthorityKeyId, p.ca.SubjectKeyId) || !bytes.Equal(p.ca.AuthorityKeyId, p.root.SubjectKeyId) {
		t.Error("AuthorityKeyId does not name the issuer's SubjectKeyId")
	}
	serials := map[string]bool{}
	for _, c := range []*x509.Certificate{p.root, p.ca, leaf} {
		if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() <= 64 {
			t.Errorf("%s serial %v: want positive, > 64 bits", c.Subject.CommonName, c.SerialNumber)
		}
		serials[c.SerialNumber.String()] = true
	}
	if len(serials) != 3 {
		t.Error("serial numbers repeat")
	}

	// Validity: leaf as asked, CAs longer, all backdated a little.
	if d := leaf.NotAfter.Sub(now); d < 30*24*time.Hour-time.Minute || d > 30*24*time.Hour+time.Minute {
		t.Errorf("leaf validity ends in %v", d)
	}
	if !p.ca.NotAfter.After(leaf.NotAfter) || !p.root.NotAfter.After(p.ca.NotAfter) {
		t.Error("CA validity should outlast the leaf, root the intermediate")
	}
	if !leaf.NotBefore.Before(now) {
		t.Error("leaf NotBefore not backdated")
	}

	// It is usable for signing.
	s, err := LoadSigner(p.path(FileSPKey), p.path(FileSPCert), now)
	if err != nil {
		t.Fatalf("LoadSigner: %v", err)
	}
	if !s.Leaf.Equal(leaf) || len(s.Chain) != 2 {
		t.Fatal("signer chain")
	}
}

func mustOID(t testing.TB, o []int) x509.OID {
	t.Helper()
	ints := make([]uint64, len(o))
	for i, v := range o {
		ints[i] = uint64(v)
	}
	x, err := x509.OIDFromInts(ints)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestInitPKIDefaults(t *testing.T) {
	now := time.Now()
	p := newPKI(t, InitOptions{})
	leaf := p.spChain[0]
	l, err := TNAuthListOf(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.SPCs) != 1 || l.SPCs[0] != DefaultSPC || len(l.TNs)+len(l.Ranges) != 0 {
		t.Fatalf("default TNAuthList %v", l)
	}
	if !l.Covers("12025550100") {
		t.Error("SPC-only list should cover any TN")
	}
	if d := leaf.NotAfter.Sub(now); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("default validity %v", d)
	}
	if len(p.ca.CRLDistributionPoints) != 0 {
		t.Error("CRL DP without CRLURL")
	}
}

func TestInitPKIOptions(t *testing.T) {
	p := newPKI(t, InitOptions{
		Policy: OIDSHAKENPolicyV1_1,
		CRLURL: "http://127.0.0.1:9060/crl",
		TNs:    []string{"1202555xxxx", "14155550100-14155550199"},
	})
	leaf := p.spChain[0]
	if !leaf.PolicyIdentifiers[0].Equal(OIDSHAKENPolicyV1_1) {
		t.Errorf("policy %v", leaf.PolicyIdentifiers)
	}
	for _, c := range []*x509.Certificate{p.ca, leaf} {
		if len(c.CRLDistributionPoints) != 1 || c.CRLDistributionPoints[0] != "http://127.0.0.1:9060/crl" {
			t.Errorf("%s CRL DP %v", c.Subject.CommonName, c.CRLDistributionPoints)
		}
	}
	l, _ := TNAuthListOf(leaf)
	for tn, want := range map[string]bool{"12025551234": true, "14155550150": true, "14155550200": false} {
		if l.Covers(tn) != want {
			t.Errorf("Covers(%s) != %v", tn, want)
		}
	}
	if got := (InitOptions{X5UBase: "http://127.0.0.1:9060/certs/"}).X5U(); got != "http://127.0.0.1:9060/certs/sp.pem" {
		t.Errorf("X5U = %q", got)
	}
	if got := (InitOptions{X5UBase: "http://h/certs"}).X5U(); got != "http://h/certs/sp.pem" {
		t.Errorf("X5U = %q", got)
	}
	if got := (InitOptions{}).X5U(); got != "" {
		t.Errorf("X5U = %q", got)
	}
}

func TestInitPKIRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	newPKI(t, InitOptions{Dir: dir})
	before, _ := os.ReadFile(filepath.Join(dir, FileSPKey))
	err := InitPKI(InitOptions{Dir: dir})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second InitPKI: %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error does not name the path: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, FileSPKey))
	if !bytes.Equal(before, after) {
		t.Fatal("sp.key was overwritten")
	}

	// One pre-existing file is enough to refuse, and nothing else is written.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, FileSPKey), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = InitPKI(InitOptions{Dir: dir2})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), filepath.Join(dir2, FileSPKey)) {
		t.Fatalf("InitPKI over sp.key: %v", err)
	}
	entries, _ := os.ReadDir(dir2)
	if len(entries) != 1 {
		t.Fatalf("InitPKI left %d files", len(entries))
	}
}

func TestInitPKIRefusesBadInput(t *testing.T) {
	tests := []struct {
		name string
		opt  InitOptions
	}{
		{"no dir", InitOptions{}},
		{"bad SPC", InitOptions{SPC: "has space"}},
		{"bad TN", InitOptions{TNs: []string{"12O2"}}},
		{"negative validity", InitOptions{Validity: -time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name != "no dir" {
				tt.opt.Dir = t.TempDir()
			}
			if err := InitPKI(tt.opt); err == nil {
				t.Fatal("InitPKI succeeded")
			}
			if tt.opt.Dir != "" {
				if entries, _ := os.ReadDir(tt.opt.Dir); len(entries) != 0 {
					t.Fatalf("left %d files", len(entries))
				}
			}
		})
	}
}

func TestInitPKIUnwritableDirNamesPath(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores directory permissions; use a file in the way instead.
		parent := t.TempDir()
		blocker := filepath.Join(parent, "file")
		if err := os.WriteFile(blocker, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		err := InitPKI(InitOptions{Dir: filepath.Join(blocker, "pki")})
		if err == nil || !strings.Contains(err.Error(), blocker) {
			t.Fatalf("error %v should name %s", err, blocker)
		}
		return
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	err := InitPKI(InitOptions{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %v should name %s", err, dir)
	}
}

// TestInitPKIModesIgnoreUmask: certs are 0644 and keys 0600 even under a
// strict or a loose umask. Not parallel: the umask is process-wide.
func TestInitPKIModesIgnoreUmask(t *testing.T) {
	for _, mask := range []int{0o077, 0o000} {
		old := syscall.Umask(mask)
		dir := t.TempDir()
		err := InitPKI(InitOptions{Dir: dir})
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]os.FileMode{FileSPCert: 0o644, FileSPKey: 0o600, FileRootKey: 0o600} {
			st, _ := os.Stat(filepath.Join(dir, name))
			if st.Mode().Perm() != want {
				t.Errorf("umask %03o: %s mode %04o, want %04o", mask, name, st.Mode().Perm(), want)
			}
		}
	}
}
