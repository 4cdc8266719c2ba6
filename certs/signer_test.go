package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pkcs8PEM(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func sec1PEM(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// issueLeaf issues a custom leaf from the PKI's intermediate and writes
// key and chain files; mutate edits the template.
func issueLeaf(t testing.TB, p *pkiFiles, dir string, mutate func(*x509.Certificate)) (keyFile, certFile string) {
	t.Helper()
	caKey, err := LoadKey(p.path(FileCAKey))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tnDER, _ := TNAuthList{SPCs: []string{"TEST01"}}.Encode()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "SHAKEN TEST01"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: OIDTNAuthList, Value: tnDER}},
	}
	if mutate != nil {
		mutate(tmpl)
	}
	_, der, err := issue(tmpl, p.ca, key, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile = writeFile(t, dir, "leaf.key", pkcs8PEM(t, key), 0o600)
	certFile = writeFile(t, dir, "leaf.pem", append(certPEM(der), certPEM(p.ca.Raw)...), 0o644)
	return keyFile, certFile
}

func TestLoadSigner(t *testing.T) {
	now := time.Now()
	p := newPKI(t, InitOptions{})
	expired := newPKI(t, InitOptions{Now: now.Add(-2 * 365 * 24 * time.Hour), Validity: 30 * 24 * time.Hour})
	future := newPKI(t, InitOptions{Now: now.Add(48 * time.Hour)})
	other := newPKI(t, InitOptions{})

	spKey, err := LoadKey(p.path(FileSPKey))
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)

	spCert := p.path(FileSPCert)
	spChain := readFile(t, spCert)
	spKeyPEM := readFile(t, p.path(FileSPKey))

	type tc struct {
		name          string
		key, cert     func(t *testing.T, dir string) string // return a path
		want          error                                 // nil: success
		wantInMessage []string
	}
	keyData := func(data []byte, mode os.FileMode) func(*testing.T, string) string {
		return func(t *testing.T, dir string) string { return writeFile(t, dir, "k.pem", data, mode) }
	}
	certData := func(data []byte) func(*testing.T, string) string {
		return func(t *testing.T, dir string) string { return writeFile(t, dir, "c.pem", data, 0o644) }
	}
	path := func(p string) func(*testing.T, string) string { return func(*testing.T, string) string { return p } }
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	reversed := func() []byte {
		_, chain, _ := ParseChainPEM(spChain)
		return append(certPEM(chain[1].Raw), certPEM(chain[0].Raw)...)
	}()

	tests := []tc{
		{name: "PKCS#8 from InitPKI", key: path(p.path(FileSPKey)), cert: path(spCert)},
		{name: "SEC1", key: keyData(sec1PEM(t, spKey), 0o600), cert: path(spCert)},
		{name: "SEC1 after EC PARAMETERS (openssl ecparam -genkey)", key: keyData(append(ecParams, sec1PEM(t, spKey)...), 0o600), cert: path(spCert)},
		{name: "SEC1 labelled PRIVATE KEY", key: keyData(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustSEC1(t, spKey)}), 0o600), cert: path(spCert)},
		{name: "key mode 0400", key: keyData(spKeyPEM, 0o400), cert: path(spCert)},
		{name: "leaf alone, no intermediate", key: path(p.path(FileSPKey)), cert: func(t *testing.T, dir string) string {
			_, chain, _ := ParseChainPEM(spChain)
			return writeFile(t, dir, "c.pem", certPEM(chain[0].Raw), 0o644)
		}},

		{name: "world-readable key", key: keyData(spKeyPEM, 0o644), cert: path(spCert), want: ErrKeyPermissions, wantInMessage: []string{"0644"}},
		{name: "group-readable key", key: keyData(spKeyPEM, 0o640), cert: path(spCert), want: ErrKeyPermissions},
		{name: "other-executable key", key: keyData(spKeyPEM, 0o601), cert: path(spCert), want: ErrKeyPermissions},
		{name: "missing key file", key: path(filepath.Join(p.dir, "nope.key")), cert: path(spCert), want: fs.ErrNotExist},
		{name: "missing cert file", key: path(p.path(FileSPKey)), cert: path(filepath.Join(p.dir, "nope.pem")), want: fs.ErrNotExist},
		{name: "mismatched key", key: path(other.path(FileSPKey)), cert: path(spCert), want: ErrKeyMismatch},
		{name: "CA key for SP cert", key: path(p.path(FileCAKey)), cert: path(spCert), want: ErrKeyMismatch},
		{name: "expired", key: path(expired.path(FileSPKey)), cert: path(expired.path(FileSPCert)), want: ErrExpired, wantInMessage: []string{"notAfter", "now"}},
		{name: "not yet valid", key: path(future.path(FileSPKey)), cert: path(future.path(FileSPCert)), want: ErrNotYetValid, wantInMessage: []string{"notBefore", "now"}},
		{name: "RSA key PKCS#8", key: keyData(pkcs8PEM(t, rsaKey), 0o600), cert: path(spCert), want: ErrKeyType, wantInMessage: []string{"RSA"}},
		{name: "RSA key PKCS#1", key: keyData(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), 0o600), cert: path(spCert), want: ErrKeyType},
		{name: "P-384 key PKCS#8", key: keyData(pkcs8PEM(t, p384), 0o600), cert: path(spCert), want: ErrKeyType, wantInMessage: []string{"P-384"}},
		{name: "P-384 key SEC1", key: keyData(sec1PEM(t, p384), 0o600), cert: path(spCert), want: ErrKeyType, wantInMessage: []string{"P-384"}},
		{name: "Ed25519 key", key: keyData(pkcs8PEM(t, edKey), 0o600), cert: path(spCert), want: ErrKeyType},
		{name: "encrypted PKCS#8", key: keyData(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600), cert: path(spCert), want: ErrEncryptedKey},
		{name: "legacy encrypted PEM", key: keyData(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1, 2, 3}}), 0o600), cert: path(spCert), want: ErrEncryptedKey},
		{name: "corrupt key", key: keyData(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: bytes.Repeat([]byte{0x30}, 40)}), 0o600), cert: path(spCert), want: ErrKeyType},
		{name: "no key in key file", key: keyData([]byte("hello\n"), 0o600), cert: path(spCert), want: ErrNoPrivateKey},
		{name: "certificate as key file", key: keyData(spChain, 0o600), cert: path(spCert), want: ErrUnexpectedPEM},
		{name: "two keys in key file", key: keyData(append(append([]byte{}, spKeyPEM...), spKeyPEM...), 0o600), cert: path(spCert), want: errAny}, /* ambiguous: an error, but no sentinel */
		{name: "cert file with a private key", key: path(p.path(FileSPKey)), cert: certData(append(append([]byte{}, spChain...), spKeyPEM...)), want: ErrPrivateKeyInChain},
		{name: "cert file with an EC private key", key: path(p.path(FileSPKey)), cert: certData(append(sec1PEM(t, spKey), spChain...)), want: ErrPrivateKeyInChain},
		{name: "empty cert file", key: path(p.path(FileSPKey)), cert: certData(nil), want: ErrNoCertificates},
		{name: "chain out of order", key: path(p.path(FileSPKey)), cert: certData(reversed), want: ErrChainOrder},
		{name: "CRL in cert file", key: path(p.path(FileSPKey)), cert: certData(append(append([]byte{}, spChain...), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1}})...)), want: ErrUnexpectedPEM},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			keyFile, certFile := tt.key(t, dir), tt.cert(t, dir)
			s, err := LoadSigner(keyFile, certFile, now)
			checkNoKeyMaterial(t, err, keyFile, spKey)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("LoadSigner: %v", err)
				}
				if s.Key == nil || s.Leaf == nil || len(s.Chain) == 0 || s.Chain[0] != s.Leaf || len(s.ChainPEM) == 0 {
					t.Fatalf("incomplete signer %+v", s)
				}
				if s.TNAuthList.Empty() {
					t.Fatal("signer without TNAuthList")
				}
				return
			}
			if err == nil {
				t.Fatal("LoadSigner succeeded")
			}
			if tt.want != errAny && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), keyFile) && !strings.Contains(err.Error(), certFile) {
				t.Fatalf("error %q names neither %s nor %s", err, keyFile, certFile)
			}
			for _, s := range tt.wantInMessage {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

var errAny = errors.New("any error")

func mustSEC1(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// checkNoKeyMaterial fails when err's text holds any line of the key file's
// PEM body or the private scalar.
func checkNoKeyMaterial(t *testing.T, err error, keyFile string, k *ecdsa.PrivateKey) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	data, _ := os.ReadFile(keyFile)
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line) {
			t.Fatalf("error message leaks key material: %q", msg)
		}
	}
	if d, err := k.Bytes(); err == nil {
		if strings.Contains(msg, hex.EncodeToString(d)) || bytes.Contains([]byte(msg), d) {
			t.Fatalf("error message leaks the private scalar")
		}
	}
}

func TestLoadSignerLeafChecks(t *testing.T) {
	p := newPKI(t, InitOptions{})
	tests := []struct {
		name   string
		mutate func(*x509.Certificate)
		want   error
	}{
		{"ok", nil, nil},
		{"no digitalSignature", func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyAgreement }, ErrKeyUsage},
		{"no key usage at all", func(c *x509.Certificate) { c.KeyUsage = 0 }, ErrKeyUsage},
		{"leaf is a CA", func(c *x509.Certificate) {
			c.IsCA, c.KeyUsage = true, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign
		}, ErrLeafIsCA},
		{"no TNAuthList", func(c *x509.Certificate) { c.ExtraExtensions = nil }, ErrNoTNAuthList},
		{"malformed TNAuthList", func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: OIDTNAuthList, Value: []byte{0x30, 0x06, 0x80, 0x04, '9', '9', '6', 'H'}}}
		}, ErrBadTNAuthList},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyFile, certFile := issueLeaf(t, p, t.TempDir(), tt.mutate)
			_, err := LoadSigner(keyFile, certFile, time.Now())
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), certFile) {
				t.Fatalf("error %v, want %v naming %s", err, tt.want, certFile)
			}
		})
	}
}

func TestLoadChainPEM(t *testing.T) {
	p := newPKI(t, InitOptions{})
	chainPEM := readFile(t, p.path(FileSPCert))
	dir := t.TempDir()

	// Text around the blocks (openssl x509 -text output) is dropped.
	noisy := append([]byte("subject=CN = SHAKEN TEST01\nissuer=...\n"), chainPEM...)
	noisy = append(noisy, "\ntrailing words\n"...)
	got, chain, err := LoadChainPEM(writeFile(t, dir, "noisy.pem", noisy, 0o644))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, chainPEM) || len(chain) != 2 {
		t.Fatalf("LoadChainPEM did not return just the certificates")
	}

	keyPEM := readFile(t, p.path(FileSPKey))
	refusals := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrNoCertificates},
		{"text only", []byte("not pem\n"), ErrNoCertificates},
		{"PKCS#8 key", append(append([]byte{}, chainPEM...), keyPEM...), ErrPrivateKeyInChain},
		{"RSA key block", append(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}}), chainPEM...), ErrPrivateKeyInChain},
		{"OPENSSH key block", append(append([]byte{}, chainPEM...), "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"...), ErrPrivateKeyInChain},
		{"broken key block", append(append([]byte{}, chainPEM...), "-----BEGIN PRIVATE KEY-----\n!!!\n"...), ErrPrivateKeyInChain},
		{"public key block", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), ErrUnexpectedPEM},
		{"garbage certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}}), errAny},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			f := writeFile(t, t.TempDir(), "c.pem", tt.data, 0o644)
			_, _, err := LoadChainPEM(f)
			if err == nil {
				t.Fatal("LoadChainPEM succeeded")
			}
			if tt.want != errAny && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), f) {
				t.Fatalf("error %q does not name %s", err, f)
			}
			if strings.Contains(err.Error(), "MIG") { // the start of any DER key in base64
				t.Fatalf("error leaks PEM content: %q", err)
			}
		})
	}
}

func TestLoadTrustPool(t *testing.T) {
	p := newPKI(t, InitOptions{})
	pool, err := LoadTrustPool(p.path(FileRootCert))
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	inter.AddCert(p.ca)
	if _, err := p.spChain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTrustPool(); !errors.Is(err, ErrNoCertificates) {
		t.Fatalf("no files: %v", err)
	}
	if _, err := LoadTrustPool(p.path(FileRootKey)); !errors.Is(err, ErrPrivateKeyInChain) {
		t.Fatalf("key as trust file: %v", err)
	}
}
