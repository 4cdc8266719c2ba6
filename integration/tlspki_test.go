package integration

// A throwaway TLS PKI for the SIP-over-TLS tests (issue 16): a CA, an
// unrelated second CA, a server certificate for 127.0.0.1 / localhost, and
// client certificates on demand (valid, expired, or from the other CA), all
// ECDSA P-256, written as PEM files (keys mode 0600, PKCS#8).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tlsPKI is a test PKI in Dir. File names (under Dir):
//
//	ca.pem, ca.key              the CA every good certificate chains to
//	other-ca.pem, other-ca.key  an unrelated CA
//	server.pem, server.key      127.0.0.1 + localhost, signed by ca.pem,
//	                            usable for server and client auth
//
// plus NAME.pem / NAME.key for each certificate issued later.
type tlsPKI struct {
	Dir string

	CA      *tlsCert // ca.pem
	OtherCA *tlsCert // other-ca.pem
	Server  *tlsCert // server.pem

	mu     sync.Mutex
	serial int64
}

// tlsCert is one certificate of a tlsPKI with its key.
type tlsCert struct {
	Name     string // file base name
	CertPath string // NAME.pem
	KeyPath  string // NAME.key (0600)
	Cert     *x509.Certificate
	Key      *ecdsa.PrivateKey
}

// tlsCertSpec describes a certificate to issue.
type tlsCertSpec struct {
	Name      string // file base name (NAME.pem, NAME.key); required
	CN        string // subject common name (default Name)
	DNS       []string
	URIs      []string // e.g. "sip:pbx1.example.net"
	IPs       []net.IP
	OtherCA   bool      // signed by other-ca.pem instead of ca.pem
	NotBefore time.Time // default now - 1h
	NotAfter  time.Time // default now + 24h
	// Server gives ExtKeyUsageServerAuth as well as ClientAuth.
	Server bool
}

// newTLSPKI writes a fresh CA, other CA and server certificate into dir
// (created if missing; a t.TempDir() when dir is "").
func newTLSPKI(t testing.TB, dir string) *tlsPKI {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("tls pki: %v", err)
	}
	p := &tlsPKI{Dir: dir, serial: 1}
	p.CA = p.newCA(t, "ca", "stirgate test TLS CA")
	p.OtherCA = p.newCA(t, "other-ca", "unrelated test TLS CA")
	p.Server = p.Issue(t, tlsCertSpec{Name: "server", CN: "localhost", DNS: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	return p
}

// Path returns the path of a file in the PKI directory.
func (p *tlsPKI) Path(name string) string { return filepath.Join(p.Dir, name) }

// Client issues a valid client certificate signed by ca.pem for a PBX
// called host: CN host, DNS SAN host, URI SAN sip:host. Files NAME.pem and
// NAME.key.
func (p *tlsPKI) Client(t testing.TB, name, host string) *tlsCert {
	t.Helper()
	return p.Issue(t, tlsCertSpec{Name: name, CN: host, DNS: []string{host}, URIs: []string{"sip:" + host}})
}

// ExpiredClient is Client with a validity that ended an hour ago.
func (p *tlsPKI) ExpiredClient(t testing.TB, name, host string) *tlsCert {
	t.Helper()
	now := time.Now()
	return p.Issue(t, tlsCertSpec{Name: name, CN: host, DNS: []string{host}, URIs: []string{"sip:" + host},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
}

// ForeignClient is Client signed by other-ca.pem.
func (p *tlsPKI) ForeignClient(t testing.TB, name, host string) *tlsCert {
	t.Helper()
	return p.Issue(t, tlsCertSpec{Name: name, CN: host, DNS: []string{host}, URIs: []string{"sip:" + host}, OtherCA: true})
}

// Issue signs a leaf certificate as spec says and writes its files.
func (p *tlsPKI) Issue(t testing.TB, spec tlsCertSpec) *tlsCert {
	t.Helper()
	if spec.Name == "" {
		t.Fatal("tls pki: certificate spec without a name")
	}
	issuer := p.CA
	if spec.OtherCA {
		issuer = p.OtherCA
	}
	now := time.Now()
	if spec.NotBefore.IsZero() {
		spec.NotBefore = now.Add(-time.Hour)
	}
	if spec.NotAfter.IsZero() {
		spec.NotAfter = now.Add(24 * time.Hour)
	}
	if spec.CN == "" {
		spec.CN = spec.Name
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if spec.Server {
		usage = append(usage, x509.ExtKeyUsageServerAuth)
	}
	tmpl := &x509.Certificate{
		SerialNumber: p.nextSerial(),
		Subject:      pkix.Name{CommonName: spec.CN, Organization: []string{"stirgate tests"}},
		NotBefore:    spec.NotBefore, NotAfter: spec.NotAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: usage, BasicConstraintsValid: true,
		DNSNames: spec.DNS, IPAddresses: spec.IPs,
	}
	for _, u := range spec.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatalf("tls pki: %s: URI SAN %q: %v", spec.Name, u, err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	return p.sign(t, spec.Name, tmpl, issuer)
}

func (p *tlsPKI) newCA(t testing.TB, name, cn string) *tlsCert {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: p.nextSerial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"stirgate tests"}},
		NotBefore:    now.Add(-2 * time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true,
	}
	return p.sign(t, name, tmpl, nil)
}

// sign creates the key and certificate (self-signed when issuer is nil)
// and writes NAME.pem and NAME.key.
func (p *tlsPKI) sign(t testing.TB, name string, tmpl *x509.Certificate, issuer *tlsCert) *tlsCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("tls pki: %s: key: %v", name, err)
	}
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatalf("tls pki: %s: certificate: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("tls pki: %s: parse: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("tls pki: %s: key: %v", name, err)
	}
	c := &tlsCert{Name: name, CertPath: p.Path(name + ".pem"), KeyPath: p.Path(name + ".key"), Cert: cert, Key: key}
	writePEMFile(t, c.CertPath, 0o644, "CERTIFICATE", der)
	writePEMFile(t, c.KeyPath, 0o600, "PRIVATE KEY", keyDER)
	return c
}

func (p *tlsPKI) nextSerial() *big.Int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serial++
	return big.NewInt(p.serial)
}

// Pool is a certificate pool holding ca.pem only.
func (p *tlsPKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA.Cert)
	return pool
}

// ClientConfig is a TLS client configuration trusting ca.pem, verifying
// server name 127.0.0.1, presenting cert (none when nil). The certificate
// is presented whatever CAs the server asks for: crypto/tls would
// otherwise send none when the server's list does not name its issuer (a
// foreign certificate), and the test would not be of a foreign certificate.
func (p *tlsPKI) ClientConfig(cert *tlsCert) *tls.Config {
	cfg := &tls.Config{RootCAs: p.Pool(), ServerName: loopback, MinVersion: tls.VersionTLS12}
	if cert != nil {
		pair := cert.TLS()
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return cfg
}

// ServerConfig is a TLS server configuration presenting server.pem and
// requiring a client certificate that chains to ca.pem.
func (p *tlsPKI) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.Server.TLS()}, ClientCAs: p.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

// TLS is the certificate as crypto/tls uses it.
func (c *tlsCert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key, Leaf: c.Cert}
}

// SPKI is the SHA-256 fingerprint of the certificate's SubjectPublicKeyInfo:
// lowercase hex, no colons.
func (c *tlsCert) SPKI() string { return spkiFingerprint(c.Cert) }

// spkiFingerprint is the SHA-256 of a certificate's SubjectPublicKeyInfo
// (DER) as lowercase hex without colons.
func spkiFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// Verify checks the certificate for client auth against the pool of the
// CA, at now.
func (c *tlsCert) Verify(ca *tlsCert) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	_, err := c.Cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return fmt.Errorf("verify %s against %s: %w", c.Name, ca.Name, err)
	}
	return nil
}

func writePEMFile(t testing.TB, path string, mode os.FileMode, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatalf("tls pki: %v", err)
	}
	// WriteFile's mode is subject to the umask and kept for an existing file.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatalf("tls pki: %v", err)
	}
}

// TestTLSPKI checks the generator: files and modes as documented, each
// certificate verifying against the right CA, the expired and the foreign
// client refused for the right reason, the SPKI fingerprint format, and a
// real crypto/tls mutual handshake with the files read back from disk.
func TestTLSPKI(t *testing.T) {
	p := newTLSPKI(t, filepath.Join(t.TempDir(), "pki"))
	good := p.Client(t, "pbx1", "pbx1.example.net")
	expired := p.ExpiredClient(t, "pbx-expired", "pbx1.example.net")
	foreign := p.ForeignClient(t, "pbx-foreign", "pbx1.example.net")

	for _, c := range []*tlsCert{p.CA, p.OtherCA, p.Server, good, expired, foreign} {
		for path, want := range map[string]os.FileMode{c.CertPath: 0o644, c.KeyPath: 0o600} {
			st, err := os.Stat(path)
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
			}
		}
		if _, err := tls.LoadX509KeyPair(c.CertPath, c.KeyPath); err != nil {
			t.Errorf("%s: files do not load as a key pair: %v", c.Name, err)
		}
	}
	for name, path := range map[string]string{"ca": p.Path("ca.pem"), "other": p.Path("other-ca.pem"),
		"server": p.Path("server.pem"), "server key": p.Path("server.key")} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if !p.CA.Cert.IsCA || !p.OtherCA.Cert.IsCA || p.Server.Cert.IsCA || good.Cert.IsCA {
		t.Error("CA flags wrong")
	}

	// The server certificate: chains to ca.pem for 127.0.0.1 and localhost.
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if _, err := p.Server.Cert.Verify(x509.VerifyOptions{Roots: p.Pool(), DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if err := p.Server.Verify(p.CA); err != nil {
		t.Errorf("server certificate not usable for client auth: %v", err)
	}

	// The valid client: names as asked, chains to ca.pem, not to other-ca.
	if good.Cert.Subject.CommonName != "pbx1.example.net" || len(good.Cert.DNSNames) != 1 ||
		good.Cert.DNSNames[0] != "pbx1.example.net" || len(good.Cert.URIs) != 1 || good.Cert.URIs[0].String() != "sip:pbx1.example.net" {
		t.Errorf("client names: CN %q DNS %q URIs %v", good.Cert.Subject.CommonName, good.Cert.DNSNames, good.Cert.URIs)
	}
	if err := good.Verify(p.CA); err != nil {
		t.Errorf("valid client: %v", err)
	}
	var unknown x509.UnknownAuthorityError
	if err := good.Verify(p.OtherCA); !errors.As(err, &unknown) {
		t.Errorf("valid client against other-ca: %v, want unknown authority", err)
	}

	// The expired client: refused as expired.
	var invalid x509.CertificateInvalidError
	if err := expired.Verify(p.CA); !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("expired client: %v, want an expiry error", err)
	}
	if !expired.Cert.NotAfter.Before(time.Now()) {
		t.Errorf("expired client NotAfter %v is not in the past", expired.Cert.NotAfter)
	}

	// The foreign client: unknown authority for ca.pem, fine for other-ca.
	if err := foreign.Verify(p.CA); !errors.As(err, &unknown) {
		t.Errorf("foreign client: %v, want unknown authority", err)
	}
	if err := foreign.Verify(p.OtherCA); err != nil {
		t.Errorf("foreign client against its own CA: %v", err)
	}

	// SPKI fingerprints: SHA-256 of the DER public key, 64 lowercase hex
	// digits, different per key.
	seen := map[string]string{}
	for _, c := range []*tlsCert{p.CA, p.OtherCA, p.Server, good, expired, foreign} {
		der, err := x509.MarshalPKIXPublicKey(&c.Key.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(der)
		fp := c.SPKI()
		if fp != hex.EncodeToString(sum[:]) || len(fp) != 64 || strings.ToLower(fp) != fp || strings.Contains(fp, ":") {
			t.Errorf("%s: SPKI %q, want lowercase hex of sha256(SPKI DER)", c.Name, fp)
		}
		if other, dup := seen[fp]; dup {
			t.Errorf("%s and %s share SPKI %s", c.Name, other, fp)
		}
		seen[fp] = c.Name
	}

	// A real mutual TLS handshake over loopback with the configs, and the
	// three bad clients refused by the server with the reason.
	cases := []struct {
		name   string
		client *tlsCert
		want   string // "" = handshake succeeds; else in the server's error
	}{
		{"valid", good, ""},
		{"none", nil, "didn't provide a certificate"},
		{"expired", expired, "expired"},
		{"foreign", foreign, "unknown authority"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			peerCN, serverErr, clientErr := tlsHandshake(t, p.ServerConfig(), p.ClientConfig(tc.client))
			if tc.want == "" {
				if serverErr != nil || clientErr != nil {
					t.Fatalf("handshake: server %v, client %v", serverErr, clientErr)
				}
				if peerCN != "pbx1.example.net" {
					t.Errorf("server saw peer CN %q", peerCN)
				}
				return
			}
			if serverErr == nil || !strings.Contains(serverErr.Error(), tc.want) {
				t.Errorf("server handshake error %v, want one containing %q", serverErr, tc.want)
			}
		})
	}
}

// tlsHandshake runs one TLS handshake over a loopback TCP connection and
// reports the client certificate's CN the server saw and both sides'
// errors. The client also reads once, so that a TLS 1.3 client learns of the
// server's rejection of its certificate.
func tlsHandshake(t *testing.T, server, client *tls.Config) (peerCN string, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			serverErr = err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		if serverErr = tc.Handshake(); serverErr == nil {
			if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
				peerCN = pc[0].Subject.CommonName
			}
			_, serverErr = tc.Write([]byte("x"))
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	if clientErr = tc.Handshake(); clientErr == nil {
		_, clientErr = tc.Read(make([]byte, 1))
	}
	<-done
	return peerCN, serverErr, clientErr
}
