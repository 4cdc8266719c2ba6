package integration

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stirgate/stirgate/certs"
)

// writeCRL writes a PEM CRL of the test PKI's intermediate CA listing
// serials. number orders the CRLs (a later CRL has a higher number).
func writeCRL(t *testing.T, pki, path string, number int64, serials ...*big.Int) {
	t.Helper()
	_, chain, err := certs.LoadChainPEM(filepath.Join(pki, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := certs.LoadKey(filepath.Join(pki, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour)}
	for _, s := range serials {
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, chain[0], key)
	if err != nil {
		t.Fatal(err)
	}
	// Write then rename: stirgate never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestCRLReplacedWhileRunning: verify.crls are watched like the
// configuration. Replacing the CRL file with one that lists the SP
// certificate revokes it within the watch interval (437 for the next call);
// a broken CRL is refused and the last good one stays in force.
func TestCRLReplacedWhileRunning(t *testing.T) {
	cfg := newProxyConfig(t)
	pki := testPKI(t, "http://127.0.0.1/")
	chainPEM, err := os.ReadFile(filepath.Join(pki, "sp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	_, chain, err := certs.LoadChainPEM(filepath.Join(pki, "sp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startX5UServers(t, chainPEM)
	crl := filepath.Join(t.TempDir(), "ca.crl")
	writeCRL(t, pki, crl, 1) // lists nothing
	cfg.Extra = verifyYAML(filepath.Join(pki, "root.pem"), srv.ports) + fmt.Sprintf("  crls: [%q]\n", crl)
	// The PBX (a sink) never answers: a forwarded call ends with stirgate's
	// own 408 when timer C (invite_timeout) fires.
	cfg.InviteTimeout = 2 * time.Second
	cfg.DrainTimeout = 2 * time.Second
	sink := startSink(t, cfg.PBXPort)
	p := startProxy(t, cfg)

	x5u := srv.good.URL + "/sp.pem"
	call := func(n int) ([]byte, string) {
		t.Helper()
		id, err := signerFor(t, pki, x5u).Sign(passport("15551230001", time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		inv := signedInvite(cfg.OutsideAddr(), n, id)
		return inv, sendUDP(t, cfg.OutsideAddr(), inv, cfg.InviteTimeout+answerWait)
	}
	// reloaded waits for the count-th occurrence of a log line (the watcher
	// checks every 2 s; waitLog polls for 5 s).
	reloaded := func(line string, count int) {
		t.Helper()
		for range 100 {
			if strings.Count(p.Log(), line) >= count {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no %q (#%d) in stirgate's log after the CRL file changed:\n%s", line, count, tail(p.Log(), 20))
	}

	inv, got := call(1)
	if got != "SIP/2.0 408 Request Timeout" {
		t.Fatalf("call before revocation: %q, want stirgate's 408 after forwarding it to the silent PBX", got)
	}
	if m := sink.waitCallID(callIDOf(t, inv)); !strings.Contains(m, ") INVITE ") {
		t.Fatal("the call before revocation never reached the PBX")
	}

	writeCRL(t, pki, crl, 2, chain[0].SerialNumber)
	reloaded("config reloaded", 1)
	inv, got = call(2)
	if !strings.HasPrefix(got, "SIP/2.0 437 ") {
		t.Fatalf("call after the CRL revoked the SP certificate: %q, want 437", got)
	}
	if m := sink.waitCallID(callIDOf(t, inv)); m != "" {
		t.Fatal("a call signed with a revoked certificate reached the PBX")
	}

	// A broken CRL: the reload is refused, the revocation stays.
	if err := os.WriteFile(crl, []byte("not a CRL"), 0o644); err != nil {
		t.Fatal(err)
	}
	reloaded("config reload failed", 1)
	if _, got = call(3); !strings.HasPrefix(got, "SIP/2.0 437 ") {
		t.Fatalf("after a broken CRL file: %q, want 437 from the last good CRL", got)
	}
	if v := reloadGauge(t, p); v != 0 {
		t.Fatalf("stirgate_config_last_reload_successful = %v after a broken CRL", v)
	}
}
