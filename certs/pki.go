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
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Certificate policy OIDs. The SHAKEN Certificate Policy published by the
// STI-PA is identified by 2.16.840.1.114569.1.1.<n>, one OID per CP version:
// production STI certificates issued under the early CP carry ...1.1.1, while
// current certificate linters (ATIS-1000080 v4/v5 and CP v1.3+) accept
// ...1.1.3 and ...1.1.4 and flag ...1.1.1.
var (
	OIDSHAKENPolicyArc  = asn1.ObjectIdentifier{2, 16, 840, 1, 114569, 1, 1}
	OIDSHAKENPolicyV1_1 = asn1.ObjectIdentifier{2, 16, 840, 1, 114569, 1, 1, 1}
	OIDSHAKENPolicyV1_3 = asn1.ObjectIdentifier{2, 16, 840, 1, 114569, 1, 1, 3}
	OIDSHAKENPolicyV1_4 = asn1.ObjectIdentifier{2, 16, 840, 1, 114569, 1, 1, 4}
	// OIDSHAKENPolicy is the policy InitPKI writes by default.
	OIDSHAKENPolicy = OIDSHAKENPolicyV1_3
	// OIDAnyPolicy is anyPolicy (RFC 5280 §4.2.1.4).
	OIDAnyPolicy = asn1.ObjectIdentifier{2, 5, 29, 32, 0}
)

// IsSHAKENPolicy reports whether oid is one of the STI-PA's SHAKEN
// certificate policies (any version under 2.16.840.1.114569.1.1).
func IsSHAKENPolicy(oid asn1.ObjectIdentifier) bool {
	return len(oid) == len(OIDSHAKENPolicyArc)+1 && oid[:len(OIDSHAKENPolicyArc)].Equal(OIDSHAKENPolicyArc)
}

// File names InitPKI writes into InitOptions.Dir.
const (
	FileRootCert = "root.pem"
	FileRootKey  = "root.key"
	FileCACert   = "ca.pem"
	FileCAKey    = "ca.key"
	FileSPCert   = "sp.pem" // SP leaf followed by the intermediate: what an x5u serves
	FileSPKey    = "sp.key"
)

// DefaultSPC is the service provider code of a test PKI when none is given.
const DefaultSPC = "TEST01"

// InitOptions for a test STI PKI like ATIS-1000080's.
type InitOptions struct {
	Dir      string
	SPC      string        // default DefaultSPC
	X5UBase  string        // e.g. "http://127.0.0.1:9060/certs/": not written into the certs; see X5U
	TNs      []string      // TN entries for the SP cert's TNAuthList besides the SPC (AppendTNSpec syntax)
	Now      time.Time     // zero = time.Now()
	Validity time.Duration // SP cert validity; default 365 days; root/intermediate longer

	// Policy is the certificate policy of the intermediate and SP certs;
	// nil means OIDSHAKENPolicy.
	Policy asn1.ObjectIdentifier
	// CRLURL, when set, is written as the CRL distribution point of the
	// intermediate and SP certs (ATIS-1000080 requires one in production).
	CRLURL string
}

// X5U is the URL at which sp.pem is to be served: X5UBase joined with
// "sp.pem" ("" when X5UBase is empty).
func (o InitOptions) X5U() string {
	if o.X5UBase == "" {
		return ""
	}
	return strings.TrimSuffix(o.X5UBase, "/") + "/" + FileSPCert
}

const (
	defaultValidity = 365 * 24 * time.Hour
	clockSkew       = 5 * time.Minute // NotBefore is backdated by this much
)

// InitPKI writes root.pem root.key ca.pem ca.key sp.pem (SP leaf followed by
// the intermediate: the chain an x5u serves) sp.key into Dir (created 0700
// if missing). Keys are P-256, PKCS#8 PEM, mode 0600; certs 0644. It refuses
// to overwrite existing files, and removes what it wrote if it fails midway.
//
// The root (self-signed STI-CA) and intermediate are CAs with
// keyCertSign|cRLSign (the intermediate with pathlen 0); the SP end-entity
// certificate has the TNAuthList extension (the SPC, plus TN entries when TNs
// are given), the SHAKEN certificate policy, digitalSignature key usage only,
// and CN "SHAKEN <SPC>". Serial numbers are random 128-bit; SubjectKeyId is
// RFC 7093 method 1 and AuthorityKeyId names the issuer's.
func InitPKI(opt InitOptions) error {
	if opt.Dir == "" {
		return fmt.Errorf("certs: init PKI: no directory given")
	}
	spc := opt.SPC
	if spc == "" {
		spc = DefaultSPC
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	validity := opt.Validity
	if validity == 0 {
		validity = defaultValidity
	}
	if validity < 0 {
		return fmt.Errorf("certs: init PKI: negative validity %v", validity)
	}
	policy := opt.Policy
	if policy == nil {
		policy = OIDSHAKENPolicy
	}

	tnl := TNAuthList{SPCs: []string{spc}}
	for _, t := range opt.TNs {
		var err error
		if tnl, err = AppendTNSpec(tnl, t); err != nil {
			return fmt.Errorf("certs: init PKI: %w", err)
		}
	}
	tnDER, err := tnl.Encode()
	if err != nil {
		return fmt.Errorf("certs: init PKI: %w", err)
	}

	paths := map[string]string{}
	for _, f := range []string{FileRootCert, FileRootKey, FileCACert, FileCAKey, FileSPCert, FileSPKey} {
		p := filepath.Join(opt.Dir, f)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("certs: init PKI: %s: %w", p, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("certs: init PKI: %s: %w", p, err)
		}
		paths[f] = p
	}

	notBefore := now.Add(-clockSkew)
	spNotAfter := now.Add(validity)
	caNotAfter := now.Add(max(2*validity, 5*365*24*time.Hour))
	rootNotAfter := now.Add(max(4*validity, 10*365*24*time.Hour))

	rootKey, caKey, spKey, err := newKeys()
	if err != nil {
		return fmt.Errorf("certs: init PKI: %w", err)
	}

	name := func(cn string) pkix.Name {
		return pkix.Name{Country: []string{"US"}, Organization: []string{"stirgate test PKI"}, CommonName: cn}
	}
	policies := []asn1.ObjectIdentifier{policy}
	var crl []string
	if opt.CRLURL != "" {
		crl = []string{opt.CRLURL}
	}

	rootTmpl := &x509.Certificate{
		Subject:               name("stirgate Test SHAKEN Root"),
		NotBefore:             notBefore,
		NotAfter:              rootNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caTmpl := &x509.Certificate{
		Subject:               name("stirgate Test SHAKEN Intermediate"),
		NotBefore:             notBefore,
		NotAfter:              caNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		CRLDistributionPoints: crl,
	}
	spTmpl := &x509.Certificate{
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"stirgate test SP " + spc}, CommonName: "SHAKEN " + spc},
		NotBefore:             notBefore,
		NotAfter:              spNotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  false,
		CRLDistributionPoints: crl,
		ExtraExtensions:       []pkix.Extension{{Id: OIDTNAuthList, Value: tnDER}},
	}
	for _, t := range []*x509.Certificate{caTmpl, spTmpl} {
		if err := setPolicies(t, policies); err != nil {
			return fmt.Errorf("certs: init PKI: %w", err)
		}
	}

	rootCert, rootDER, err := issue(rootTmpl, nil, rootKey, rootKey)
	if err != nil {
		return fmt.Errorf("certs: init PKI: root: %w", err)
	}
	caCert, caDER, err := issue(caTmpl, rootCert, caKey, rootKey)
	if err != nil {
		return fmt.Errorf("certs: init PKI: intermediate: %w", err)
	}
	_, spDER, err := issue(spTmpl, caCert, spKey, caKey)
	if err != nil {
		return fmt.Errorf("certs: init PKI: SP: %w", err)
	}

	rootKeyPEM, err := keyPEM(rootKey)
	if err != nil {
		return fmt.Errorf("certs: init PKI: %w", err)
	}
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return fmt.Errorf("certs: init PKI: %w", err)
	}
	spKeyPEM, err := keyPEM(spKey)
	if err != nil {
		return fmt.Errorf("certs: init PKI: %w", err)
	}

	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return fmt.Errorf("certs: init PKI: %s: %w", opt.Dir, err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{FileRootKey, rootKeyPEM, 0o600},
		{FileRootCert, certPEM(rootDER), 0o644},
		{FileCAKey, caKeyPEM, 0o600},
		{FileCACert, certPEM(caDER), 0o644},
		{FileSPKey, spKeyPEM, 0o600},
		{FileSPCert, append(certPEM(spDER), certPEM(caDER)...), 0o644},
	}
	var written []string
	for _, f := range files {
		p := paths[f.name]
		if err := writeNew(p, f.data, f.mode); err != nil {
			for _, w := range written {
				_ = os.Remove(w)
			}
			return fmt.Errorf("certs: init PKI: %s: %w", p, err)
		}
		written = append(written, p)
	}
	return nil
}

func setPolicies(t *x509.Certificate, oids []asn1.ObjectIdentifier) error {
	t.PolicyIdentifiers = oids
	for _, o := range oids {
		ints := make([]uint64, len(o))
		for i, v := range o {
			if v < 0 {
				return fmt.Errorf("bad policy OID %v", o)
			}
			ints[i] = uint64(v)
		}
		x, err := x509.OIDFromInts(ints)
		if err != nil {
			return fmt.Errorf("bad policy OID %v: %w", o, err)
		}
		t.Policies = append(t.Policies, x)
	}
	return nil
}

func newKeys() (a, b, c *ecdsa.PrivateKey, err error) {
	keys := make([]*ecdsa.PrivateKey, 3)
	for i := range keys {
		if keys[i], err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, nil, nil, fmt.Errorf("generate P-256 key: %w", err)
		}
	}
	return keys[0], keys[1], keys[2], nil
}

// issue signs tmpl for key with signer under parent (nil: self-signed),
// filling serial number and key identifiers.
func issue(tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) (*x509.Certificate, []byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.SignatureAlgorithm = x509.ECDSAWithSHA256
	if tmpl.SubjectKeyId, err = subjectKeyID(&key.PublicKey); err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parent = tmpl
		tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	} else {
		tmpl.AuthorityKeyId = parent.SubjectKeyId
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return c, der, nil
}

// randomSerial is a positive 128-bit random number (ATIS-1000080 wants at
// least 64 bits of entropy).
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.BitLen() > 64 {
			return n, nil
		}
	}
}

// subjectKeyID is RFC 7093 §2 method 1: the leftmost 160 bits of the
// SHA-256 of the subjectPublicKey bits.
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	k, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("subject key id: %w", err)
	}
	h := sha256.Sum256(k.Bytes())
	return h[:20], nil
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeNew creates p (failing if it exists) with exactly mode, whatever the
// umask.
func writeNew(p string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ErrExists
		}
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(p)
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(p)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(p)
		return err
	}
	return nil
}
