package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIP over TLS end to end (issue 16): a PBX with a client certificate
// (mutual TLS) calls through stirgate's inside TLS listener; stirgate signs
// and forwards over TLS to Kamailio's tls module as the trunk, which
// verifies the Identity with secsipid and answers.

// tlsProxy starts Kamailio as the TLS trunk (unless noTrunk) and stirgate
// with a mutual-TLS inside listener (client_ca: the PKI's CA), a TLS next
// hop on the outside trusting trustCA, and customer it-pbx identified by
// pbx1.example.net's certificate. It returns stirgate's inside TLS
// address.
func tlsProxy(t *testing.T, p *tlsPKI, trustCA string, noTrunk bool) (proxyConfig, *proxy, *kamailioTLS, string) {
	t.Helper()
	cfg := newProxyConfig(t)
	base := fmt.Sprintf("http://%s/certs/", hostPort(cfg.AdminPort))
	sti := testPKI(t, base)
	var k *kamailioTLS
	if noTrunk {
		cfg.TrunkTransport = "tls"
	} else {
		k = startKamailioTLS(t, kamailioTLSConfig{PKI: p, Verify: true,
			LibOpts: []string{"CertVerify=5", "CertCAFile=" + filepath.Join(sti, "root.pem")}})
		cfg.TrunkPort, cfg.TrunkTransport = k.TLS.TLSPort, "tls"
	}
	insideTLS := freePort(t)
	cfg.InsideListen = []string{fmt.Sprintf("{transport: tls, addr: %q, cert: %q, key: %q, client_ca: %q}",
		hostPort(insideTLS), p.Server.CertPath, p.Server.KeyPath, p.CA.CertPath)}
	cfg.OutsideListen = []string{fmt.Sprintf("{transport: tls, addr: %q, cert: %q, key: %q}",
		hostPort(freePort(t)), p.Server.CertPath, p.Server.KeyPath)}
	cfg.OutsideExtra = fmt.Sprintf("      tls: {ca: %q, server_name: localhost}\n", trustCA)
	cfg.Extra = attestYAML(sti, base+"sp.pem") + "      tls_identities: [\"dns:pbx1.example.net\"]\n"
	return cfg, startProxy(t, cfg), k, hostPort(insideTLS)
}

// TestTLSCallsMutualTLSPBXToTLSTrunk: 1,000 calls from a PBX authenticated by
// its certificate, over one TLS connection, leave over TLS to Kamailio
// signed with attestation A (the certificate names the customer), are
// verified there and answered; ACK, re-INVITE and BYE travel the same
// connections. The same calling number from the customer's source address
// over UDP, without the certificate, is signed C (attest.unauthenticated).
func TestTLSCallsMutualTLSPBXToTLSTrunk(t *testing.T) {
	p := newTLSPKI(t, "")
	cfg, px, k, insideTLS := tlsProxy(t, p, p.CA.CertPath, false)
	conn, err := dialSIPTLS(insideTLS, p.ClientConfig(p.Client(t, "pbx1", "pbx1.example.net")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	u := &tlsUAC{c: conn, target: insideTLS}
	const calls = 1000
	for i := range calls {
		callID := fmt.Sprintf("tls-call-%d@pbx1", i)
		res, d, err := u.invite(callID, "")
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 200 {
			t.Fatalf("call %d: %d %s, want 200 from the trunk", i, res.StatusCode, res.Reason)
		}
		if _, err := u.inDialog(&d, "ACK"); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if res, err := u.inDialog(&d, "INVITE"); err != nil || res.StatusCode != 200 {
				t.Fatalf("re-INVITE: %v %v", res, err)
			}
			if _, err := u.inDialog(&d, "ACK"); err != nil {
				t.Fatal(err)
			}
		}
		if res, err := u.inDialog(&d, "BYE"); err != nil || res.StatusCode != 200 {
			t.Fatalf("call %d BYE: %v %v", i, res, err)
		}
	}
	k.waitVerdicts(calls, 10*time.Second)
	if ok, fail, missing, bad := k.Count(); ok != calls || fail != 0 || missing != 0 {
		t.Errorf("kamailio verified %d, failed %d, %d without Identity; want %d, 0, 0: %v", ok, fail, missing, calls, bad)
	}
	var invites, overTLS int
	sources := map[string]bool{} // stirgate's connections to the trunk
	for _, r := range k.Requests() {
		if r.Proto == "tls" {
			overTLS++
			sources[r.Src] = true
		}
		if r.Method == "INVITE" && r.Act == "answer" {
			invites++
		}
	}
	// The re-INVITE is answered like an INVITE: calls+1.
	if want := 3*calls + 2; overTLS != want || invites != calls+1 {
		t.Errorf("kamailio saw %d requests over TLS (want %d: INVITE, ACK, BYE per call and one re-INVITE with its ACK) and %d INVITEs answered (want %d)", overTLS, want, invites, calls+1)
	}
	if len(sources) != 1 {
		t.Errorf("stirgate reached the trunk from %d TLS connections %v, want 1 reused", len(sources), sources)
	}
	lines := px.callLogLines()
	byTLS := 0
	for _, l := range lines {
		if strings.Contains(l, " attest=A ") && strings.Contains(l, "customer=it-pbx") && strings.Contains(l, "customer_by=tls subject=CN=pbx1.example.net") {
			byTLS++
		}
	}
	if byTLS != calls {
		t.Errorf("%d call lines with attest=A customer=it-pbx customer_by=tls, want %d:\n%s", byTLS, calls, tail(px.Log(), 3))
	}

	// The customer's number from its source address over UDP, no certificate.
	res := runSipp(t, sippRun{Name: "uac-udp", Scenario: "uac.xml", Remote: cfg.InsideAddr(), Calls: 1, Timeout: 30 * time.Second})
	res.require(t, 1)
	udpC := false
	for _, l := range px.callLogLines() {
		udpC = udpC || strings.Contains(l, " attest=C ") && strings.Contains(l, "customer_by=source")
	}
	if !udpC {
		t.Errorf("the UDP call from the customer's source is not attested C by source:\n%s", tail(px.Log(), 2))
	}
	m := px.Metrics(t)
	if got, _ := m.Sum("stirgate_tls_handshakes_total", map[string]string{"realm": "inside", "result": "ok"}); got != 1 {
		t.Errorf("inside TLS handshakes ok = %v, want 1 (one persistent connection)", got)
	}
}

// TestTLSRefusesPBXWithoutValidCertificate: without a client certificate,
// with an expired one or one of another CA, the handshake fails: no
// request is processed, and each failure is counted by its reason.
func TestTLSRefusesPBXWithoutValidCertificate(t *testing.T) {
	p := newTLSPKI(t, "")
	_, px, _, insideTLS := tlsProxy(t, p, p.CA.CertPath, true)
	for _, tc := range []struct {
		name   string
		cert   *tlsCert
		reason string
	}{
		{"no certificate", nil, "no_client_cert"},
		{"expired", p.ExpiredClient(t, "old", "pbx1.example.net"), "expired"},
		{"another CA", p.ForeignClient(t, "intruder", "pbx1.example.net"), "unknown_ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := dialSIPTLS(insideTLS, p.ClientConfig(tc.cert))
			if err == nil {
				u := &tlsUAC{c: conn, target: insideTLS}
				res, _, err := u.invite("refused-"+tc.reason+"@pbx", "")
				conn.Close()
				if err == nil {
					t.Fatalf("INVITE answered %d over a connection without a valid certificate", res.StatusCode)
				}
			}
			var got float64
			for range 50 {
				if got, _ = px.Metrics(t).Sum("stirgate_tls_handshakes_total", map[string]string{"result": tc.reason}); got >= 1 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got != 1 {
				t.Errorf("stirgate_tls_handshakes_total{result=%q} = %v, want 1", tc.reason, got)
			}
		})
	}
	if lines := px.callLogLines(); len(lines) != 0 {
		t.Errorf("calls processed from refused connections:\n%s", strings.Join(lines, "\n"))
	}
}

// TestTLSUntrustedTrunk: a trunk whose certificate stirgate's tls.ca does
// not trust gets nothing, the call fails 503 and the log says why.
func TestTLSUntrustedTrunk(t *testing.T) {
	p := newTLSPKI(t, "")
	_, px, k, insideTLS := tlsProxy(t, p, p.OtherCA.CertPath, false)
	conn, err := dialSIPTLS(insideTLS, p.ClientConfig(p.Client(t, "pbx1", "pbx1.example.net")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	u := &tlsUAC{c: conn, target: insideTLS}
	res, _, err := u.invite("untrusted-trunk@pbx", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 503 {
		t.Errorf("call to an untrusted trunk: %d %s, want 503", res.StatusCode, res.Reason)
	}
	if reqs := k.Requests(); len(reqs) != 0 {
		t.Errorf("the untrusted trunk received %d requests", len(reqs))
	}
	if !strings.Contains(px.Log(), "certificate signed by unknown authority") {
		t.Errorf("no log line names the trunk's certificate:\n%s", tail(px.Log(), 5))
	}
}

// TestTLSRotationOnSIGHUP: during a 300-call run on one TLS connection the
// server certificate file is replaced and stirgate gets SIGHUP: no call
// fails, the open connection goes on, and a new connection is shown the
// new certificate.
func TestTLSRotationOnSIGHUP(t *testing.T) {
	p := newTLSPKI(t, "")
	_, px, _, insideTLS := tlsProxy(t, p, p.CA.CertPath, false)
	conn, err := dialSIPTLS(insideTLS, p.ClientConfig(p.Client(t, "pbx1", "pbx1.example.net")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	oldSerial := conn.conn.ConnectionState().PeerCertificates[0].SerialNumber
	u := &tlsUAC{c: conn, target: insideTLS}
	const calls = 300
	var renewed *tlsCert
	for i := range calls {
		if i == calls/2 {
			renewed = p.Issue(t, tlsCertSpec{Name: "server-renewed", CN: "localhost", DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
			copyFile(t, renewed.CertPath, p.Server.CertPath, 0o644)
			copyFile(t, renewed.KeyPath, p.Server.KeyPath, 0o600)
			if err := px.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			if !waitLogCount(t, px, "msg=\"config reloaded\"", 1) {
				t.Fatalf("no reload after SIGHUP:\n%s", tail(px.Log(), 5))
			}
		}
		res, d, err := u.invite(fmt.Sprintf("rotation-%d@pbx1", i), "")
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if res.StatusCode != 200 {
			t.Fatalf("call %d: %d %s, want 200", i, res.StatusCode, res.Reason)
		}
		if _, err := u.inDialog(&d, "ACK"); err != nil {
			t.Fatal(err)
		}
		if res, err := u.inDialog(&d, "BYE"); err != nil || res.StatusCode != 200 {
			t.Fatalf("call %d BYE: %v %v", i, res, err)
		}
	}
	fresh, err := dialSIPTLS(insideTLS, p.ClientConfig(p.Client(t, "pbx1b", "pbx1.example.net")))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	got := fresh.conn.ConnectionState().PeerCertificates[0].SerialNumber
	if got.Cmp(renewed.Cert.SerialNumber) != 0 || got.Cmp(oldSerial) == 0 {
		t.Errorf("a connection after the reload got serial %v, want the renewed %v (old %v)", got, renewed.Cert.SerialNumber, oldSerial)
	}
}

// copyFile replaces dst's content with src's, with mode perm.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, perm); err != nil {
		t.Fatal(err)
	}
}

// TestTLSInboundFromKamailio: the inbound direction. 1,000 calls, each
// with its own PASSporT, from SIPp over UDP to Kamailio, which relays them
// over (mutual) TLS to stirgate's outside tls listener: stirgate verifies
// each and the PBX (SIPp) gets every call with verstat
// TN-Validation-Passed; ACK and BYE follow the route set back over TLS.
func TestTLSInboundFromKamailio(t *testing.T) {
	requireSipp(t)
	p := newTLSPKI(t, "")
	cfg := newProxyConfig(t)
	base := fmt.Sprintf("http://%s/certs/", hostPort(cfg.AdminPort))
	sti := testPKI(t, base)
	outsideTLS := hostPort(freePort(t))
	cfg.OutsideListen = []string{fmt.Sprintf("{transport: tls, addr: %q, cert: %q, key: %q, client_ca: %q}",
		outsideTLS, p.Server.CertPath, p.Server.KeyPath, p.CA.CertPath)}
	cfg.Extra = attestYAML(sti, base+"sp.pem") + verifyYAML(filepath.Join(sti, "root.pem"), []int{cfg.AdminPort})
	px := startProxy(t, cfg)
	k := startKamailioTLS(t, kamailioTLSConfig{PKI: p, RelayTo: outsideTLS})

	const calls = 1000
	signer := signerFor(t, sti, base+"sp.pem")
	inf := []string{"SEQUENTIAL"}
	for range calls {
		id, err := signer.Sign(passport("15551230001", time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		inf = append(inf, strings.SplitN(id, ";", 2)[0])
	}
	infFile := filepath.Join(t.TempDir(), "identities.csv")
	if err := os.WriteFile(infFile, []byte(strings.Join(inf, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	uas := startSipp(t, sippRun{Name: "pbx", Scenario: "uas.xml", Port: cfg.PBXPort, Calls: calls, Timeout: 120 * time.Second, NoTrace: true})
	res := runSipp(t, sippRun{Name: "trunk", Scenario: "uac_signed.xml", Remote: k.RelayAddr(), Calls: calls, Rate: 200, Limit: 100,
		Timeout: 120 * time.Second, NoTrace: true, Extra: []string{"-inf", infFile, "-key", "x5u", base + "sp.pem"}})
	res.require(t, calls)
	uas.Wait(t).require(t, calls)

	passed := 0
	for _, l := range px.callLogLines() {
		if strings.Contains(l, "realm=outside") && strings.Contains(l, "status=200") && strings.Contains(l, "verstat=TN-Validation-Passed") {
			passed++
		}
	}
	if passed != calls {
		t.Errorf("%d inbound calls verified and answered, want %d:\n%s", passed, calls, tail(px.Log(), 3))
	}
	if got, _ := px.Metrics(t).Sum("stirgate_tls_handshakes_total", map[string]string{"realm": "outside", "result": "ok"}); got < 1 || got > 2 {
		t.Errorf("outside TLS handshakes = %v, want Kamailio's connection reused (1, or 2)", got)
	}
	relayed := 0
	for _, r := range k.Requests() {
		if r.Act == "relay" {
			relayed++
		}
	}
	if relayed != calls {
		t.Errorf("Kamailio relayed %d INVITEs over TLS, want %d", relayed, calls)
	}
}
