package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// maxPEMFile bounds what we read from a key or certificate file.
const maxPEMFile = 1 << 20

// Signer is what signing needs, loaded and checked.
type Signer struct {
	Key        *ecdsa.PrivateKey
	Leaf       *x509.Certificate
	Chain      []*x509.Certificate // leaf first
	ChainPEM   []byte              // the cert file's certificates, re-encoded as PEM (nothing else)
	TNAuthList TNAuthList          // the leaf's
}

// LoadSigner loads a key (PEM: SEC1 "EC PRIVATE KEY" or PKCS#8 "PRIVATE
// KEY") and a certificate chain file (leaf first), and refuses, with an error
// naming the path and the reason (never any key material):
//   - an unreadable file;
//   - a key file readable by group or others (mode & 0o077 != 0);
//   - a key that is not ECDSA P-256 (RSA, P-384, Ed25519...) or is encrypted;
//   - a key that does not match the leaf's public key;
//   - a leaf not valid at now (not yet valid / expired, with the dates);
//   - a leaf lacking digitalSignature, or a CA leaf, or one without a
//     (well-formed) TNAuthList;
//   - a chain out of order (each certificate must be signed by the next);
//   - a cert file holding a private key.
func LoadSigner(keyFile, certFile string, now time.Time) (*Signer, error) {
	key, err := LoadKey(keyFile)
	if err != nil {
		return nil, err
	}
	chainPEM, chain, err := LoadChainPEM(certFile)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if err := CheckChainOrder(chain); err != nil {
		return nil, fmt.Errorf("certs: %s: %w", certFile, err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("certs: %s does not match %s (subject %q): %w", keyFile, certFile, leaf.Subject.CommonName, ErrKeyMismatch)
	}
	if err := CheckValidAt(leaf, now); err != nil {
		return nil, fmt.Errorf("certs: %s: %w", certFile, err)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("certs: %s: %w", certFile, ErrKeyUsage)
	}
	if leaf.IsCA {
		return nil, fmt.Errorf("certs: %s: %w", certFile, ErrLeafIsCA)
	}
	tnl, err := TNAuthListOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: leaf: %w", certFile, err)
	}
	return &Signer{Key: key, Leaf: leaf, Chain: chain, ChainPEM: chainPEM, TNAuthList: tnl}, nil
}

// CheckValidAt says whether c is valid at now; the error gives the dates.
func CheckValidAt(c *x509.Certificate, now time.Time) error {
	const layout = time.RFC3339
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w: notBefore %s is after now %s", ErrNotYetValid, c.NotBefore.UTC().Format(layout), now.UTC().Format(layout))
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("%w: notAfter %s is before now %s", ErrExpired, c.NotAfter.UTC().Format(layout), now.UTC().Format(layout))
	}
	return nil
}

// CheckChainOrder checks that each certificate is signed by the next one.
func CheckChainOrder(chain []*x509.Certificate) error {
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return fmt.Errorf("%w: certificate %d (%q) is not signed by certificate %d (%q): %v",
				ErrChainOrder, i, chain[i].Subject.CommonName, i+1, chain[i+1].Subject.CommonName, err)
		}
	}
	return nil
}

// LoadKey reads an ECDSA P-256 private key from a PEM file (SEC1 "EC PRIVATE
// KEY" or PKCS#8 "PRIVATE KEY"; an "EC PARAMETERS" block is skipped). The file
// must not be readable by group or others. Errors name the path, never any
// key material.
func LoadKey(keyFile string) (*ecdsa.PrivateKey, error) {
	f, err := os.Open(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("certs: key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("certs: key %s: not a regular file", keyFile)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("certs: key %s: %w (mode %04o; chmod 600 it)", keyFile, ErrKeyPermissions, perm)
	}
	data, err := readLimited(f)
	if err != nil {
		return nil, fmt.Errorf("certs: key %s: %w", keyFile, err)
	}
	key, err := parseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("certs: key %s: %w", keyFile, err)
	}
	return key, nil
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("file larger than %d bytes", maxPEMFile)
	}
	return data, nil
}

// parseKeyPEM finds the one private key in data. Its errors describe the
// key's kind, never its bytes: the parser's own error text is dropped.
func parseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	var key *ecdsa.PrivateKey
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "EC PARAMETERS":
			continue
		case "EC PRIVATE KEY", "PRIVATE KEY":
		case "ENCRYPTED PRIVATE KEY":
			return nil, ErrEncryptedKey
		case "RSA PRIVATE KEY":
			return nil, fmt.Errorf("%w: found an RSA key", ErrKeyType)
		default:
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("%w: found a %q block", ErrKeyType, b.Type)
			}
			return nil, fmt.Errorf("%w %q in a key file", ErrUnexpectedPEM, b.Type)
		}
		if key != nil {
			return nil, fmt.Errorf("more than one private key in the file")
		}
		if _, encrypted := b.Headers["DEK-Info"]; encrypted {
			return nil, ErrEncryptedKey
		}
		k, err := parsePrivateKeyDER(b.Type, b.Bytes)
		if err != nil {
			return nil, err
		}
		key = k
	}
	if key == nil {
		return nil, ErrNoPrivateKey
	}
	return key, nil
}

func parsePrivateKeyDER(typ string, der []byte) (*ecdsa.PrivateKey, error) {
	if typ == "EC PRIVATE KEY" {
		k, err := x509.ParseECPrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %q block is not a valid SEC1 EC private key", ErrKeyType, typ)
		}
		return checkP256(k)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		// A SEC1 key mislabelled "PRIVATE KEY" is common enough to accept.
		if ek, err2 := x509.ParseECPrivateKey(der); err2 == nil {
			return checkP256(ek)
		}
		return nil, fmt.Errorf("%w: %q block is not a valid PKCS#8 private key", ErrKeyType, typ)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return checkP256(k)
	case *rsa.PrivateKey:
		return nil, fmt.Errorf("%w: found an RSA key", ErrKeyType)
	case ed25519.PrivateKey:
		return nil, fmt.Errorf("%w: found an Ed25519 key", ErrKeyType)
	default:
		return nil, fmt.Errorf("%w: found a %T key", ErrKeyType, k)
	}
}

func checkP256(k *ecdsa.PrivateKey) (*ecdsa.PrivateKey, error) {
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: found an ECDSA %s key", ErrKeyType, k.Curve.Params().Name)
	}
	return k, nil
}

// LoadChainPEM reads a PEM file of certificates (leaf first). It refuses a
// file holding any PRIVATE KEY block (of any type, even malformed), a PEM
// block other than CERTIFICATE, or no certificate at all. pemBytes is the
// certificates re-encoded as PEM, without any text around them: what an x5u
// repository serves.
func LoadChainPEM(file string) (pemBytes []byte, chain []*x509.Certificate, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: certificate file: %w", err)
	}
	defer f.Close()
	data, err := readLimited(f)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: certificate file %s: %w", file, err)
	}
	pemBytes, chain, err = ParseChainPEM(data)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: certificate file %s: %w", file, err)
	}
	return pemBytes, chain, nil
}

// ParseChainPEM is LoadChainPEM on bytes.
func ParseChainPEM(data []byte) (pemBytes []byte, chain []*x509.Certificate, err error) {
	if bytes.Contains(data, []byte("PRIVATE KEY")) {
		return nil, nil, ErrPrivateKeyInChain
	}
	var out bytes.Buffer
	rest := data
	for i := 0; ; i++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("%w %q (block %d): want CERTIFICATE only", ErrUnexpectedPEM, b.Type, i)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		chain = append(chain, c)
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})
	}
	if len(chain) == 0 {
		return nil, nil, ErrNoCertificates
	}
	return out.Bytes(), chain, nil
}

// LoadTrustPool reads trust anchors (STI-CA roots) from PEM files into a
// pool, with the same refusals as LoadChainPEM.
func LoadTrustPool(files ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if len(files) == 0 {
		return nil, fmt.Errorf("certs: trust pool: %w (no files given)", ErrNoCertificates)
	}
	for _, f := range files {
		_, chain, err := LoadChainPEM(f)
		if err != nil {
			return nil, err
		}
		for _, c := range chain {
			pool.AddCert(c)
		}
	}
	return pool, nil
}
