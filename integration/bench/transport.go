package main

// The transport comparison: stirgate in sign mode with the PBX's calls
// over UDP and over one persistent mutual-TLS connection (and the trunk
// reached over UDP and over TLS), ramped side by side like the modes; then
// the rate of fresh mutual-TLS handshakes stirgate sustains. SIPp has no
// TLS in Debian, so both transports are driven by the Go caller and callee
// of goload.go. Kamailio with its tls module runs the TLS ramp too, on the
// one TCP worker its Debian version can run (kamailio.cfg): a reference,
// not a comparison at equal workers.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var allTransports = []string{"udp", "tls"}

// benchPBXName is the DNS name in the PBX's client certificate, which
// stirgate's customer names in tls_identities.
const benchPBXName = "pbx.bench.example"

// benchTLSPKI is a CA and the certificates of stirgate (both realms'
// listeners), the trunk (the Go callee) and the PBX (client).
type benchTLSPKI struct {
	caPath                    string
	pool                      *x509.CertPool
	stirgateCert, stirgateKey string
	trunk, pbx                tls.Certificate
}

func newBenchTLSPKI(dir string) (*benchTLSPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stirgate bench TLS CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &benchTLSPKI{caPath: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	if err := os.WriteFile(p.caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return nil, err
	}
	serial := int64(1)
	issue := func(name string, dns []string, usage x509.ExtKeyUsage) (tls.Certificate, string, string, error) {
		serial++
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, "", "", err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: dns[0]},
			DNSNames: dns, IPAddresses: []net.IP{net.ParseIP(loopback)},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return tls.Certificate{}, "", "", err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return tls.Certificate{}, "", "", err
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
			return tls.Certificate{}, "", "", err
		}
		if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
			return tls.Certificate{}, "", "", err
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		return c, certPath, keyPath, err
	}
	if _, p.stirgateCert, p.stirgateKey, err = issue("stirgate", []string{"localhost"}, x509.ExtKeyUsageAny); err != nil {
		return nil, err
	}
	if p.trunk, _, _, err = issue("trunk", []string{"localhost"}, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	if p.pbx, _, _, err = issue("pbx", []string{benchPBXName}, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	return p, nil
}

// pbxConfig is the PBX's side: its certificate, stirgate's checked.
func (p *benchTLSPKI) pbxConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.pbx}, RootCAs: p.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// trunkConfig is the Go callee's listener.
func (p *benchTLSPKI) trunkConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.trunk}, MinVersion: tls.VersionTLS12}
}

// realmYAML is stirgate's TLS listener of realm (mutual TLS on the
// inside), its next hop over TLS and the CA it trusts there.
func (t *proxyTLS) realmYAML(realm string, nextHop int) string {
	var b strings.Builder
	port, clientCA := t.outsidePort, ""
	if realm == "inside" {
		port, clientCA = t.insidePort, fmt.Sprintf(", client_ca: %q", t.pki.caPath)
	}
	fmt.Fprintf(&b, "        - {transport: tls, addr: %q, cert: %q, key: %q%s}\n", hostPort(port), t.pki.stirgateCert, t.pki.stirgateKey, clientCA)
	fmt.Fprintf(&b, "      next_hop: \"sip:%s;transport=tls\"\n", hostPort(nextHop))
	fmt.Fprintf(&b, "      tls: {ca: %q, server_name: localhost}\n", t.pki.caPath)
	return b.String()
}

// kamailioDomains is the tls module's domain file: stirgate's certificate
// (the same key and CA), mutual TLS for the PBX, and the callee's
// certificate verified against the bench CA.
func (t *proxyTLS) kamailioDomains() string {
	return fmt.Sprintf(`[server:default]
method = TLSv1.2+
certificate = %[1]s
private_key = %[2]s
ca_list = %[3]s
verify_certificate = yes
require_certificate = yes
verify_depth = 3

[client:default]
method = TLSv1.2+
ca_list = %[3]s
verify_certificate = yes
require_certificate = yes
verify_depth = 3
`, t.pki.stirgateCert, t.pki.stirgateKey, t.pki.caPath)
}

func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// handshakeRate is how many fresh mutual-TLS handshakes stirgate
// completed per second, from handshakeClients clients dialing in a loop for
// handshakeFor, and its CPU per handshake.
type handshakeRate struct {
	Clients    int     `json:"clients"`
	For        string  `json:"for"`
	Handshakes int     `json:"handshakes"`
	Failed     int     `json:"failed"`
	PerSecond  float64 `json:"per_second"`
	CPUus      float64 `json:"proxy_cpu_us_per_handshake"`
	Version    string  `json:"tls_version"`
}

const handshakeClients = 8

// transportRun ramps stirgate (sign mode) with the calls over each of
// -transport side by side, then measures the handshake rate over TLS.
func (b *bench) transportRun(ctx context.Context) error {
	pki, err := newBenchTLSPKI(filepath.Join(b.env.work, "tls"))
	if err != nil {
		return fmt.Errorf("bench TLS PKI: %w", err)
	}
	var systems []*proxy
	defer func() {
		for _, p := range systems {
			p.stop()
			p.uas.stop()
		}
	}()
	for _, transport := range b.o.transports {
		if b.o.only == "kamailio" {
			break
		}
		p, err := b.startTransportSystem(ctx, "stirgate", transport, pki)
		if err != nil {
			return err
		}
		systems = append(systems, p)
	}
	// Kamailio over TLS, on its one TCP worker (kamailio.cfg).
	if slices.Contains(b.o.transports, "tls") && b.o.only != "stirgate" {
		p, err := b.startTransportSystem(ctx, "kamailio", "tls", pki)
		if err != nil {
			return err
		}
		systems = append(systems, p)
	}
	log.Printf("transport: sign mode, the Go caller and callee over %s", strings.Join(b.o.transports, " and "))
	if err := b.ramp(ctx, systems, b.goStep); err != nil {
		return err
	}
	for _, p := range systems {
		if p.transport != "tls" || p.system != "stirgate" {
			continue
		}
		if err := b.restart(ctx, p); err != nil {
			return err
		}
		h, err := measureHandshakes(ctx, p, pki.pbxConfig(), b.o.step)
		if err != nil {
			return err
		}
		b.res.Handshakes = &h
		log.Printf("  TLS handshakes: %d clients, %s: %d ok (%.0f/s), %d failed, %.0f µs CPU each (%s)", h.Clients, h.For, h.Handshakes, h.PerSecond, h.Failed, h.CPUus, h.Version)
	}
	return nil
}

// startTransportSystem starts a Go callee over transport and system
// (stirgate, kamailio) in sign mode reaching it, its PBX side over the
// same transport.
func (b *bench) startTransportSystem(ctx context.Context, system, transport string, pki *benchTLSPKI) (*proxy, error) {
	uas, err := startGoUAS(transport, pki.trunkConfig(), true)
	if err != nil {
		return nil, fmt.Errorf("go callee over %s: %w", transport, err)
	}
	var t *proxyTLS
	nextHop := 0
	if transport == "tls" {
		t = &proxyTLS{pki: pki}
		if t.insidePort, err = freeTCPPort(); err == nil {
			t.outsidePort, err = freeTCPPort()
		}
		nextHop = uas.port()
	} else {
		nextHop = uas.udp.LocalAddr().(*net.UDPAddr).Port
	}
	if err != nil {
		uas.stop()
		return nil, err
	}
	var launch func(context.Context) (*proxy, error)
	launch = func(ctx context.Context) (*proxy, error) {
		var p *proxy
		var err error
		if system == "stirgate" {
			p, err = b.env.startStirgate(ctx, "sign", nextHop, b.o.workers, b.o.env, 0, t)
		} else {
			p, err = b.env.startKamailio(ctx, "sign", nextHop, b.o.workers, b.o.kamAlloc, b.o.kamArgs, t)
		}
		if err != nil {
			return nil, err
		}
		p.transport, p.uas, p.relaunch = transport, uas, launch
		if t != nil {
			p.tlsClient = pki.pbxConfig()
		}
		return p, nil
	}
	p, err := launch(ctx)
	if err != nil {
		uas.stop()
		return nil, err
	}
	return p, nil
}

// goStep is one step of the transport ramp: the Go caller places rate
// calls/s for -step over p's transport, on one connection (TLS: one
// handshake).
func (b *bench) goStep(ctx context.Context, p *proxy, rate, try int) (step, error) {
	if !p.alive() {
		return step{}, fmt.Errorf("%s (%s) died:\n%s", p.system, p.transport, p.logTail())
	}
	b.seq++
	calls := rate * int(b.o.step/time.Second)
	s := step{System: p.system, Mode: p.mode + "/" + p.transport, Target: rate, Try: try, Calls: calls}
	dir := filepath.Join(b.env.work, "steps", fmt.Sprintf("%03d-%s-%d", b.seq, strings.ReplaceAll(s.Mode, "/", "-"), rate))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return s, err
	}
	p.uas.take()
	w, err := dialWire(ctx, p)
	if err != nil {
		return s, err
	}
	pids, self := p.pids(), []int{os.Getpid()}
	cpu0, err := cpuTime(pids)
	if err != nil {
		w.close()
		return s, err
	}
	gen0, err := cpuTime(self)
	if err != nil {
		w.close()
		return s, err
	}
	var m0 map[string]float64
	if p.system == "stirgate" {
		if m0, err = scrapeMetrics(p); err != nil {
			w.close()
			return s, err
		}
	}
	drops := udpRcvbufErrors()
	started := time.Now()
	bound := b.o.step + b.o.hold + 30*time.Second
	uac, err := newGoUAC(w, p.transport, p.addr, b.o.hold, fmt.Sprintf("s%d", b.seq))
	if err != nil {
		w.close()
		return s, err
	}
	res := uac.run(ctx, calls, rate, bound)
	cpu1, err := cpuTime(pids)
	if err != nil {
		return s, err
	}
	gen1, err := cpuTime(self)
	if err != nil {
		return s, err
	}
	s.CPUus = float64((cpu1-cpu0)/time.Microsecond) / float64(calls)
	s.GenCPUus = float64((gen1-gen0)/time.Microsecond) / float64(calls)
	s.Mem = readMemory(pids)
	s.UDPDrops = udpRcvbufErrors() - drops
	if p.system == "stirgate" {
		time.Sleep(200 * time.Millisecond) // the record writer flushes every 100 ms
		m1, err := scrapeMetrics(p)
		if err != nil {
			return s, err
		}
		s.RecordsWritten = m1["stirgate_records_written_total"] - m0["stirgate_records_written_total"]
		s.RecordsDropped = m1["stirgate_records_dropped_total"] - m0["stirgate_records_dropped_total"]
	}
	s.Successful, s.Retrans = res.ok, res.retrans
	s.P50ms = float64(res.lat.P50) / float64(time.Millisecond)
	s.P99ms = float64(res.lat.P99) / float64(time.Millisecond)
	if res.lat.Span > 0 && s.Successful > 1 {
		s.Achieved = float64(s.Successful-1) / res.lat.Span.Seconds()
	}
	var why []string
	ids, uasErrs := p.uas.take()
	if len(res.errs) > 0 && (calls-s.Successful)*1000 >= calls { // judge's threshold
		why = append(why, "caller: "+strings.Join(res.errs[:min(3, len(res.errs))], " | "))
	}
	if len(uasErrs) > 0 {
		why = append(why, "callee: "+strings.Join(uasErrs[:min(3, len(uasErrs))], " | "))
	}
	idPath := filepath.Join(dir, identityLog)
	if err := os.WriteFile(idPath, []byte(strings.Join(ids, "\n")+"\n"), 0o644); err != nil {
		return s, err
	}
	why = append(why, b.checkSample(ctx, &s, idPath, started, bound)...)
	s.judge(why, b.o.p99Bound)
	if !b.o.keep {
		os.RemoveAll(dir)
	}
	return s, nil
}

// dialWire opens the PBX's side of a step: a UDP socket, or one
// mutual-TLS connection to stirgate's inside listener.
func dialWire(ctx context.Context, p *proxy) (sipWire, error) {
	if p.transport == "udp" {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(loopback)})
		if err != nil {
			return nil, err
		}
		return newUDPWire(c), nil
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: p.tlsClient}).DialContext(dctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("TLS to stirgate %s: %w", p.addr, err)
	}
	return newTLSWire(c.(*tls.Conn)), nil
}

// measureHandshakes dials p's inside TLS listener from handshakeClients
// clients in a loop for d, closing each connection after its handshake.
func measureHandshakes(ctx context.Context, p *proxy, cfg *tls.Config, d time.Duration) (handshakeRate, error) {
	h := handshakeRate{Clients: handshakeClients, For: d.String()}
	pids := p.pids()
	cpu0, err := cpuTime(pids)
	if err != nil {
		return h, err
	}
	var ok, failed atomic.Int64
	var version atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for range handshakeClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Bounded: d at most, and at most 1e6 dials per client.
			for i := 0; i < 1_000_000 && time.Now().Before(end) && ctx.Err() == nil; i++ {
				dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				c, err := (&tls.Dialer{Config: cfg}).DialContext(dctx, "tcp", p.addr)
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				version.Store(tls.VersionName(c.(*tls.Conn).ConnectionState().Version))
				c.Close()
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := cpuTime(pids)
	if err != nil {
		return h, err
	}
	h.Handshakes, h.Failed = int(ok.Load()), int(failed.Load())
	h.PerSecond = float64(h.Handshakes) / elapsed.Seconds()
	if h.Handshakes > 0 {
		h.CPUus = float64((cpu1-cpu0)/time.Microsecond) / float64(h.Handshakes)
	}
	if v, _ := version.Load().(string); v != "" {
		h.Version = v
	}
	return h, nil
}
