package sip

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
)

// FuzzEdgeServe feeds arbitrary bytes through sipgo's parser and, when they
// parse as a request, through the edge (ACL, checks, pipeline, forwarding,
// in-dialog routing) with recorded transactions. Nothing may panic, and
// every request but ACK and INVITE retransmissions gets exactly one final
// response.
//
//	go test ./sip -run '^$' -fuzz FuzzEdgeServe -fuzztime 5m
func FuzzEdgeServe(f *testing.F) {
	f.Add([]byte(testInvite))
	f.Add([]byte("BYE sip:a@127.0.0.1:1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-1\r\nRoute: <sip:127.0.0.1;lr>\r\nFrom: <sip:1@x>;tag=1\r\nTo: <sip:2@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("ACK sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-2\r\nFrom: <sip:1@x>;tag=1\r\nTo: <sip:2@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"))
	// The RFC 4475 torture messages seed the corpus; a moved directory must
	// fail here instead of silently fuzzing from three seeds.
	torture, err := filepath.Glob("../integration/testdata/rfc4475/*.dat")
	if err != nil || len(torture) != 49 {
		f.Fatalf("seed corpus: %d RFC 4475 messages in ../integration/testdata/rfc4475 (err %v), want 49", len(torture), err)
	}
	for _, p := range torture {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatalf("seed corpus: %v", err)
		}
		f.Add(b)
	}
	e, _ := newTestEdge(f, testConfig(), Chains{})
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.NewParser().ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Via() == nil || req.CSeq() == nil {
			return // sipgo answers these 400 itself before any handler
		}
		if _, err := sip.ServerTxKeyMake(req); err != nil {
			return
		}
		req.SetSource("127.0.0.1:5090")
		req.SetTransport("UDP")
		tx := siptest.NewServerTxRecorder(req)
		// The same INVITE again after its 2xx (the fuzzer re-runs inputs)
		// is a retransmission: RFC 6026 absorbs it without an answer.
		retrans := req.IsInvite() && req.CallID() != nil && req.From() != nil && e.answeredBefore(req)
		e.serve(e.realms[inside], req, tx)
		if req.IsAck() || retrans {
			return
		}
		finals := 0
		for _, r := range tx.Result() {
			if r.StatusCode >= 200 {
				finals++
			}
		}
		if finals != 1 {
			t.Fatalf("%d final responses to %s", finals, req.StartLine())
		}
	})
}

// FuzzCallIDOf: the socket reader's Call-ID scan (overload bookkeeping)
// never panics, and whenever sipgo parses the same bytes into a request
// with a Call-ID, the scan found that same value: an INVITE's arrival and
// admission are keyed as its pipeline will look them up.
//
//	go test ./sip -run '^$' -fuzz FuzzCallIDOf -fuzztime 5m
func FuzzCallIDOf(f *testing.F) {
	f.Add([]byte(testInvite))
	f.Add([]byte("INVITE sip:a@b SIP/2.0\r\ni: x\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"))
	torture, _ := filepath.Glob("../integration/testdata/rfc4475/*.dat")
	for _, p := range torture {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := callIDOf(data)
		msg, err := sip.NewParser().ParseSIP(data)
		if err != nil || got == nil {
			return
		}
		if req, ok := msg.(*sip.Request); ok && req.CallID() != nil && req.CallID().Value() != string(got) {
			t.Fatalf("reader scan found Call-ID %q, sipgo parsed %q", got, req.CallID().Value())
		}
	})
}

// FuzzUDPDatagram feeds arbitrary datagrams, each twice (the second is a
// retransmission), to what the UDP reader does with one: parse, match a
// transaction (response, ACK, CANCEL, retransmission) or start one and
// run the proxy core. Nothing may panic.
//
//	go test ./sip -run '^$' -fuzz FuzzUDPDatagram -fuzztime 5m
func FuzzUDPDatagram(f *testing.F) {
	f.Add([]byte(testInvite))
	f.Add([]byte(strings.Replace(strings.Replace(testInvite, "INVITE sip", "CANCEL sip", 1), "1 INVITE", "1 CANCEL", 1)))
	f.Add([]byte(strings.Replace(strings.Replace(testInvite, "INVITE sip", "ACK sip", 1), "1 INVITE", "1 ACK", 1)))
	f.Add([]byte("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-1\r\nFrom: <sip:1@x>;tag=1\r\nTo: <sip:2@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=nocookie\r\nFrom: <sip:1@x>;tag=1\r\nTo: <sip:2@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"))
	e, _ := newTestEdge(f, testConfig(), Chains{})
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = sink.Close() })
	src := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	r := e.realms[outside]
	f.Fuzz(func(t *testing.T, data []byte) {
		e.handleDatagram(r, r.udpConn(), src, data)
		e.handleDatagram(r, r.udpConn(), src, data)
	})
}
