package sip

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// SIP over TLS (RFC 3261 26.2, RFC 5630). stirgate creates its TLS
// listeners itself and hands them to sipgo's ServeTLS: sipgo v1.7.3's
// ListenAndServeTLS starts WSS for network "tcp6", and only our own
// listener can see each connection's handshake (for the client
// certificate of mutual TLS, and the metrics).

// tlsHandshakeTimeout bounds a peer's handshake: a connection that does not
// finish it is closed (a slow or silent client holds nothing for long).
const tlsHandshakeTimeout = 10 * time.Second

// TLSIdentity is the client certificate a TLS connection authenticated
// with (mutual TLS): what a customer's tls_identities are matched against.
type TLSIdentity struct {
	Subject  string   // the subject's distinguished name, RFC 2253
	DNSNames []string // subjectAltName dNSName
	URIs     []string // subjectAltName URI
	SPKI     string   // SHA-256 of the SubjectPublicKeyInfo, lowercase hex
}

// identityOf is the TLSIdentity of a verified certificate.
func identityOf(c *x509.Certificate) *TLSIdentity {
	id := &TLSIdentity{Subject: c.Subject.String(), DNSNames: c.DNSNames}
	for _, u := range c.URIs {
		id.URIs = append(id.URIs, u.String())
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	id.SPKI = hex.EncodeToString(sum[:])
	return id
}

// loadKeyPair reads a certificate chain and its key (PEM). A key file that
// group or others may read is refused, as the signing key is: a TLS key
// authenticates the node as much as the signing key does.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	st, err := os.Stat(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return tls.Certificate{}, fmt.Errorf("key %s: readable by group or others (mode %04o; chmod 600 it)", keyFile, perm)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cert %s, key %s: %w", certFile, keyFile, err)
	}
	return pair, nil
}

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}

// serverTLS is the tls.Config of a tls listener, from its files.
func serverTLS(l ListenConfig) (*tls.Config, error) {
	pair, err := loadKeyPair(l.Cert, l.Key)
	if err != nil {
		return nil, err
	}
	minVersion, err := tlsVersion(l.MinVersion)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: minVersion}
	if l.ClientCA != "" {
		if c.ClientCAs, err = loadCAs(l.ClientCA); err != nil {
			return nil, fmt.Errorf("client_ca: %w", err)
		}
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// clientTLS is the tls.Config a realm dials its TLS next hop with. The
// peer is always verified: against ca, or the system roots.
func clientTLS(c TLSClientConfig) (*tls.Config, error) {
	out := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CA != "" {
		pool, err := loadCAs(c.CA)
		if err != nil {
			return nil, fmt.Errorf("tls.ca: %w", err)
		}
		out.RootCAs = pool
	}
	if c.Cert != "" {
		pair, err := loadKeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("tls.cert: %w", err)
		}
		out.Certificates = []tls.Certificate{pair}
	}
	return out, nil
}

// tlsListener accepts TLS connections with the configuration in force
// (a reload changes it for new connections only), notes each peer's
// client certificate by remote address, and counts handshakes.
type tlsListener struct {
	net.Listener
	e      *Edge
	r      *realm
	config func() *tls.Config
	idle   time.Duration // a connection silent this long is closed
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	key := c.RemoteAddr().String()
	cfg := l.config().Clone()
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 {
			l.e.tlsPeers.Store(key, identityOf(cs.PeerCertificates[0]))
		}
		return nil
	}
	l.e.m.tlsConns.WithLabelValues(l.r.name).Inc()
	pc := &trackedConn{Conn: c, closed: func() {
		l.e.tlsPeers.Delete(key)
		l.e.m.tlsConns.WithLabelValues(l.r.name).Dec()
	}}
	return &handshakeConn{Conn: tls.Server(pc, cfg), l: l, idle: l.idle}, nil
}

// idleListener accepts TCP connections whose reads are each bounded by the
// idle timeout: sipgo reads a connection until a read fails, so one that
// stays silent (no message, no CRLF keep-alive) that long is closed.
type idleListener struct {
	net.Listener
	idle time.Duration
}

func (l *idleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &idleConn{Conn: c, idle: l.idle}, nil
}

type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(b []byte) (int, error) {
	if err := c.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// trackedConn runs closed once, when the connection is closed.
type trackedConn struct {
	net.Conn
	once   sync.Once
	closed func()
}

func (c *trackedConn) Close() error {
	c.once.Do(c.closed)
	return c.Conn.Close()
}

// handshakeConn completes the TLS handshake (bounded by
// tlsHandshakeTimeout) before its first read, so that its outcome is
// counted and a failed one is logged with its reason; sipgo then reads
// SIP from it as from any connection, each read bounded by the idle
// timeout.
type handshakeConn struct {
	*tls.Conn
	l    *tlsListener
	idle time.Duration
	once sync.Once
	err  error
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
		defer cancel()
		c.err = c.HandshakeContext(ctx)
		result := "ok"
		if c.err != nil {
			result = handshakeFailure(c.err)
			c.l.e.log.Warn("TLS handshake failed", "realm", c.l.r.name, "source", c.RemoteAddr().String(), "reason", result, "err", c.err)
		}
		c.l.e.m.tlsHandshakes.WithLabelValues(c.l.r.name, result).Inc()
	})
	if c.err != nil {
		return 0, c.err
	}
	// sipgo reads a connection until it fails: the deadline closes one
	// that stays silent (no message, no CRLF keep-alive) for idle.
	if err := c.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// handshakeFailure names why a handshake failed, for the metrics: the
// reasons an operator acts on (expired, unknown CA, no client
// certificate), else the kind of failure.
func handshakeFailure(err error) string {
	var inv x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	var rec tls.RecordHeaderError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return "expired"
	case errors.As(err, &unknown):
		return "unknown_ca"
	case errors.As(err, &inv):
		return "bad_certificate"
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return "no_client_cert"
	case errors.As(err, &rec):
		return "not_tls"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

// realmNames are the realms by index, for configuration key paths.
var realmNames = [2]string{"inside", "outside"}

// loadTLS reads the realm's TLS files for a generation: each tls
// listener's certificate, key and client CAs, and the client certificate
// for its TLS next hop. An error names the key of the file.
func (p *realmPolicy) loadTLS(rc RealmConfig, realm string) error {
	p.tlsServer = make([]*tls.Config, len(rc.Listen))
	for i, l := range rc.Listen {
		if l.Transport != "tls" {
			continue
		}
		c, err := serverTLS(l)
		if err != nil {
			return fmt.Errorf("sip: realms.%s.listen[%d]: %w", realm, i, err)
		}
		p.tlsServer[i] = c
	}
	if rc.TLS.Cert != "" {
		pair, err := loadKeyPair(rc.TLS.Cert, rc.TLS.Key)
		if err != nil {
			return fmt.Errorf("sip: realms.%s.tls: %w", realm, err)
		}
		p.clientCert = &pair
	}
	return nil
}
