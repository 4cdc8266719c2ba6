package sip

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes name.pem and name.key (0600) into dir: a certificate for
// 127.0.0.1 and dns, valid until notAfter.
func (ca *testCA) issue(t testing.TB, dir, name, dns string, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: dns},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter, DNSNames: []string{dns},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// tlsEdge is an edge whose inside realm also listens on TLS with mutual
// TLS (client certificates of ca), serving; its INVITEs are rejected 603
// by a stage that keeps the call.
type tlsEdge struct {
	e      *Edge
	down   *downstream
	reg    *prometheus.Registry
	addr   string
	calls  chan *Call
	cfg    Config
	ca     *testCA
	dir    string
	caFile string
}

func startTLSEdge(t testing.TB) *tlsEdge {
	t.Helper()
	return startTLSEdgeWith(t, nil, nil)
}

// startTLSEdgeWith is startTLSEdge with the configuration changed by
// mutate, and chain (nil: the rejecting stage) as the inside chain.
func startTLSEdgeWith(t testing.TB, mutate func(*tlsEdge), chain Chain) *tlsEdge {
	t.Helper()
	te := &tlsEdge{dir: t.TempDir(), ca: newTestCA(t, "pbx ca"), calls: make(chan *Call, 10), reg: prometheus.NewRegistry()}
	te.caFile = filepath.Join(te.dir, "ca.pem")
	if err := os.WriteFile(te.caFile, te.ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	cert, key := te.ca.issue(t, te.dir, "server", "stirgate.example.net", time.Now().Add(time.Hour))
	te.cfg = testConfig()
	te.cfg.Realms.Inside.Listen = append(te.cfg.Realms.Inside.Listen,
		ListenConfig{Transport: "tls", Addr: "127.0.0.1:0", Cert: cert, Key: key, ClientCA: te.caFile})
	if chain == nil {
		chain = Chain{HandlerFunc{StageName: "keep", Fn: func(_ context.Context, c *Call) error {
			te.calls <- c
			return Reject(603, "Decline", nil)
		}}}
	}
	if mutate != nil {
		mutate(te)
	}
	te.e, te.down = newTestEdgeWith(t, te.cfg, Chains{Inside: chain}, Options{Registry: te.reg})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = te.e.Serve(ctx) }()
	te.addr = te.e.ListenAddrs("inside")["TLS"]
	return te
}

// invite sends an INVITE over conn and returns the first final response's
// status line.
func tlsInvite(t *testing.T, conn *tls.Conn, n int) string {
	t.Helper()
	return tlsInviteTo(t, conn, n, "sip:+12025550100@127.0.0.1")
}

// tlsInviteTo is tlsInvite with the Request-URI ruri.
func tlsInviteTo(t *testing.T, conn *tls.Conn, n int, ruri string) string {
	t.Helper()
	local := conn.LocalAddr().String()
	msg := "INVITE " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS " + local + ";branch=z9hG4bK-tls-" + itoa(n) + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:+12025550199@pbx.example>;tag=t" + itoa(n) + "\r\nTo: <sip:+12025550100@example.net>\r\n" +
		"Call-ID: tls-" + itoa(n) + "@test\r\nCSeq: 1 INVITE\r\nContact: <sip:pbx@" + local + ";transport=tls>\r\nContent-Length: 0\r\n\r\n"
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	rd := bufio.NewReader(conn)
	for range 20 {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if strings.HasPrefix(line, "SIP/2.0 ") && !strings.HasPrefix(line, "SIP/2.0 100 ") {
			return strings.TrimSpace(line)
		}
	}
	t.Fatal("no final response")
	return ""
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// dial opens a TLS connection to the edge with the client certificate
// certFile/keyFile ("" for none), trusting the test CA.
func (te *tlsEdge) dial(certFile, keyFile string) (*tls.Conn, error) {
	pool := x509.NewCertPool()
	pool.AddCert(te.ca.cert)
	cfg := &tls.Config{RootCAs: pool, ServerName: "stirgate.example.net"}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		// Sent whatever CAs the server names, as OpenSSL clients do (Go's
		// own choice would withhold one of another CA).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	conn, err := tls.Dial("tcp", te.addr, cfg)
	if err != nil {
		return nil, err
	}
	// TLS 1.3: the server's verdict on our certificate comes with the
	// first read.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := conn.Handshake(); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// TestTLSMutualAuthentication: a PBX with a certificate of the client CA
// gets its INVITE processed, and the call carries the certificate's
// identity; without a certificate, with an expired one or one of another
// CA, the handshake fails, nothing is processed, and the failure is
// counted by reason.
func TestTLSMutualAuthentication(t *testing.T) {
	te := startTLSEdge(t)
	good, goodKey := te.ca.issue(t, te.dir, "pbx1", "pbx1.example.net", time.Now().Add(time.Hour))
	conn, err := te.dial(good, goodKey)
	if err != nil {
		t.Fatalf("valid client certificate: %v", err)
	}
	defer conn.Close()
	if got := tlsInvite(t, conn, 1); !strings.HasPrefix(got, "SIP/2.0 603") {
		t.Fatalf("INVITE over mutual TLS: %q, want the stage's 603", got)
	}
	c := <-te.calls
	if c.Transport != "TLS" || c.TLS == nil || c.TLS.Subject != "CN=pbx1.example.net" || len(c.TLS.DNSNames) != 1 || c.TLS.DNSNames[0] != "pbx1.example.net" || len(c.TLS.SPKI) != 64 {
		t.Fatalf("call transport %q identity %+v, want TLS and pbx1.example.net's certificate", c.Transport, c.TLS)
	}

	other := newTestCA(t, "other ca")
	otherCert, otherKey := other.issue(t, te.dir, "intruder", "pbx1.example.net", time.Now().Add(time.Hour))
	expired, expiredKey := te.ca.issue(t, te.dir, "old", "pbx1.example.net", time.Now().Add(-time.Hour))
	for _, tc := range []struct {
		name, cert, key, reason string
	}{
		{"no certificate", "", "", "no_client_cert"},
		{"another CA", otherCert, otherKey, "unknown_ca"},
		{"expired", expired, expiredKey, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := te.dial(tc.cert, tc.key)
			if err == nil {
				// TLS 1.3 clients learn of the refusal on their first read.
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, werr := conn.Write([]byte("OPTIONS sip:127.0.0.1 SIP/2.0\r\n\r\n"))
				_, rerr := conn.Read(make([]byte, 100))
				conn.Close()
				if werr == nil && rerr == nil {
					t.Fatal("handshake and request accepted")
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for testutil.ToFloat64(te.e.m.tlsHandshakes.WithLabelValues("inside", tc.reason)) < 1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := testutil.ToFloat64(te.e.m.tlsHandshakes.WithLabelValues("inside", tc.reason)); got != 1 {
				t.Errorf("handshakes{result=%q} = %v, want 1", tc.reason, got)
			}
		})
	}
	select {
	case c := <-te.calls:
		t.Fatalf("a call from a refused connection was processed: %+v", c)
	default:
	}
	if got := testutil.ToFloat64(te.e.m.tlsHandshakes.WithLabelValues("inside", "ok")); got != 1 {
		t.Errorf("handshakes{result=ok} = %v, want 1", got)
	}
}

// TestTLSReloadKeepsConnections: a reload with a new server certificate is
// shown to new connections; a connection made before it goes on working.
func TestTLSReloadKeepsConnections(t *testing.T) {
	te := startTLSEdge(t)
	client, clientKey := te.ca.issue(t, te.dir, "pbx1", "pbx1.example.net", time.Now().Add(time.Hour))
	before, err := te.dial(client, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	oldSerial := before.ConnectionState().PeerCertificates[0].SerialNumber

	cert, key := te.ca.issue(t, te.dir, "server2", "stirgate.example.net", time.Now().Add(2*time.Hour))
	cfg := te.cfg
	cfg.Realms.Inside.Listen = append([]ListenConfig(nil), cfg.Realms.Inside.Listen...)
	cfg.Realms.Inside.Listen[2].Cert, cfg.Realms.Inside.Listen[2].Key = cert, key
	upd, err := te.e.Prepare(cfg, Chains{Inside: te.e.gen.Load().chains[inside]})
	if err != nil {
		t.Fatal(err)
	}
	upd.Install()

	after, err := te.dial(client, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if newSerial := after.ConnectionState().PeerCertificates[0].SerialNumber; newSerial.Cmp(oldSerial) == 0 {
		t.Error("a connection after the reload got the old certificate")
	}
	for i, conn := range []*tls.Conn{before, after} {
		if got := tlsInvite(t, conn, 10+i); !strings.HasPrefix(got, "SIP/2.0 603") {
			t.Errorf("connection %d after the reload: %q", i, got)
		}
	}

	// A key readable by others is refused, and the certificate in force stays.
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := te.e.Prepare(cfg, Chains{}); err == nil || !strings.Contains(err.Error(), "realms.inside.listen[2]: key "+key+": readable by group or others (mode 0644; chmod 600 it)") {
		t.Errorf("reload with a 0644 key: %v", err)
	}
}

// TestTLSForward: a sips: INVITE that arrived over TLS leaves for a TLS
// next hop over TLS, with a TLS Via and both Record-Routes sips: with
// transport=tls, so the dialog's requests stay on TLS.
func TestTLSForward(t *testing.T) {
	te := startTLSEdgeWith(t, func(te *tlsEdge) {
		cert, key := te.ca.issue(t, te.dir, "outside", "stirgate.example.net", time.Now().Add(time.Hour))
		te.cfg.Realms.Outside.Listen = append(te.cfg.Realms.Outside.Listen, ListenConfig{Transport: "tls", Addr: "127.0.0.1:0", Cert: cert, Key: key})
		te.cfg.Realms.Outside.NextHop = "sip:trunk.example.net;transport=tls"
	}, Chain{})
	client, clientKey := te.ca.issue(t, te.dir, "pbx1", "pbx1.example.net", time.Now().Add(time.Hour))
	conn, err := te.dial(client, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := tlsInviteTo(t, conn, 1, "sips:+12025550100@127.0.0.1"); !strings.HasPrefix(got, "SIP/2.0 200") {
		t.Fatalf("INVITE: %q, want the callee's 200", got)
	}
	te.down.mu.Lock()
	fwd := te.down.requests[0]
	te.down.mu.Unlock()
	if fwd.Transport() != "TLS" || fwd.Destination() != "trunk.example.net:5061" {
		t.Errorf("forwarded over %s to %s, want TLS to trunk.example.net:5061", fwd.Transport(), fwd.Destination())
	}
	if via := fwd.Via(); via.Transport != "TLS" || via.Port != te.e.realms[outside].ep["TLS"].port {
		t.Errorf("top Via %s, want ours over TLS on the outside tls listener", via.Value())
	}
	if n := len(fwd.GetHeaders("Record-Route")); n != 2 {
		t.Fatalf("%d Record-Route headers, want 2", n)
	}
	for i, h := range fwd.GetHeaders("Record-Route") {
		rr := h.(*sip.RecordRouteHeader)
		if tr, _ := rr.Address.UriParams.Get("transport"); rr.Address.Scheme != "sips" || tr != "tls" {
			t.Errorf("Record-Route %d %s, want sips: with transport=tls", i, rr.Value())
		}
	}
}

// TestTLSKeepAliveAndIdleTimeout: a CRLF keep-alive ping (RFC 5626 4.4.1)
// over TLS gets its pong, and keeps the connection; a connection silent
// for the listener's idle_timeout is closed, and no longer counted open.
func TestTLSKeepAliveAndIdleTimeout(t *testing.T) {
	te := startTLSEdgeWith(t, func(te *tlsEdge) { te.cfg.Realms.Inside.Listen[2].IdleTimeout = time.Second }, nil)
	client, clientKey := te.ca.issue(t, te.dir, "pbx1", "pbx1.example.net", time.Now().Add(time.Hour))
	conn, err := te.dial(client, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keepAliveThenIdle(t, conn, func() float64 { return testutil.ToFloat64(te.e.m.tlsConns.WithLabelValues("inside")) })
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(te.e.m.tlsConns.WithLabelValues("inside")) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(te.e.m.tlsConns.WithLabelValues("inside")); got != 0 {
		t.Errorf("connections open after the idle close = %v, want 0", got)
	}
}

// TestTCPKeepAliveAndIdleTimeout: the same over a plain TCP listener.
func TestTCPKeepAliveAndIdleTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.Realms.Inside.Listen[1].IdleTimeout = time.Second
	var logs syncBuffer
	e, _ := newTestEdgeWith(t, cfg, Chains{}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = e.Serve(ctx) }()
	conn, err := net.DialTimeout("tcp", e.ListenAddrs("inside")["TCP"], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keepAliveThenIdle(t, conn, nil)
	// The idle close is logged as what it is, not as a read error.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "connection idle: closed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if out := logs.String(); !strings.Contains(out, `level=INFO msg="connection idle: closed"`) || strings.Contains(out, "Read error") {
		t.Errorf("log after the idle close, want one INFO line and no read error:\n%s", out)
	}
}

// keepAliveThenIdle sends CRLF keep-alive pings (RFC 5626 4.4.1) 600 ms
// apart, three times, each answered with a pong although the listener's
// idle timeout is 1 s; then it leaves the connection silent, and the edge
// must close it. open, when set, counts the connections open, which must
// be 1 while the pings flow.
func keepAliveThenIdle(t *testing.T, conn net.Conn, open func() float64) {
	t.Helper()
	buf := make([]byte, 16)
	for i := range 3 {
		if _, err := conn.Write([]byte("\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != "\r\n" {
			t.Fatalf("ping %d: pong %q, %v; want CRLF", i, buf[:n], err)
		}
		time.Sleep(600 * time.Millisecond)
	}
	if open != nil {
		if got := open(); got != 1 {
			t.Errorf("connections open = %v, want 1", got)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("read %q from a connection left idle: want it closed", buf[:n])
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the idle connection was still open after 5 s")
	}
}

// BenchmarkTLSHandshake is the rate of mutual-TLS handshakes the edge's
// tls listener completes (ECDSA P-256 certificates, TLS 1.3, loopback):
// the client dials, both sides handshake, the client sends one CRLF ping
// and reads its pong, then closes.
//
//	go test ./sip -run '^$' -bench TLSHandshake -benchtime 2000x
func BenchmarkTLSHandshake(b *testing.B) {
	te := startTLSEdge(b)
	client, clientKey := te.ca.issue(b, te.dir, "pbx1", "pbx1.example.net", time.Now().Add(time.Hour))
	start := time.Now()
	for b.Loop() {
		conn, err := te.dial(client, clientKey)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Write([]byte("\r\n\r\n")); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Read(make([]byte, 4)); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
}
