package main

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// TestGoCallerAndCallee: the transport comparison's caller places calls
// straight to its callee over UDP and over TLS; every call is answered,
// ACKed and hung up, and a callee that wants Identity fails calls without
// one.
func TestGoCallerAndCallee(t *testing.T) {
	pki, err := newBenchTLSPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		transport    string
		wantIdentity bool
		ok           int
	}{
		{"udp", false, 200},
		{"tls", false, 200},
		{"udp", true, 0},
		{"tls", true, 0},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			uas, err := startGoUAS(tc.transport, pki.trunkConfig(), tc.wantIdentity)
			if err != nil {
				t.Fatal(err)
			}
			defer uas.stop()
			var w sipWire
			if tc.transport == "udp" {
				c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(loopback)})
				if err != nil {
					t.Fatal(err)
				}
				w = newUDPWire(c)
			} else {
				c, err := tls.Dial("tcp", uas.addr, pki.pbxConfig())
				if err != nil {
					t.Fatal(err)
				}
				w = newTLSWire(c)
			}
			uac, err := newGoUAC(w, tc.transport, uas.addr, 10*time.Millisecond, "t")
			if err != nil {
				t.Fatal(err)
			}
			res := uac.run(context.Background(), 200, 1000, 10*time.Second)
			if res.ok != tc.ok || res.fail != 200-tc.ok || res.lat.N != 200 {
				t.Errorf("ok %d, failed %d, %d INVITEs with a final response; want %d, %d, 200 (%v)", res.ok, res.fail, res.lat.N, tc.ok, 200-tc.ok, res.errs)
			}
			if tc.wantIdentity && (len(res.errs) == 0 || !strings.Contains(res.errs[0], "answered 428")) {
				t.Errorf("caller errors %v, want INVITE answered 428", res.errs)
			}
			if _, errs := uas.take(); len(errs) > 0 {
				t.Errorf("callee errors: %v", errs)
			}
		})
	}
}
