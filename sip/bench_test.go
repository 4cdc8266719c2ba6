package sip

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// benchInvite is what SIPp's uac.xml sends (integration/sipp), with a PAI:
// the per-call pieces of the edge are measured on it.
const benchInvite = "INVITE sip:+15559870002@127.0.0.1:5070 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-5729-1-0;rport\r\n" +
	"From: \"Alice\" <sip:+15551230001@127.0.0.1:5061>;tag=5729SIPpTag001\r\n" +
	"To: <sip:+15559870002@127.0.0.1:5070>\r\n" +
	"Call-ID: 1-5729@127.0.0.1\r\n" +
	"CSeq: 1 INVITE\r\n" +
	"Contact: <sip:+15551230001@127.0.0.1:5061;transport=UDP>\r\n" +
	"P-Asserted-Identity: <sip:+15551230001@pbx.example.com>\r\n" +
	"Max-Forwards: 70\r\n" +
	"User-Agent: sipp-stirgate-uac\r\n" +
	"Subject: stirgate integration\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 209\r\n" +
	"\r\n" +
	"v=0\r\no=alice 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"

var benchSource = netip.MustParseAddrPort("127.0.0.1:5061")

// BenchmarkParseClassify is what every initial INVITE costs before the
// first stage: sipgo's parse, then the stages' view of it (numbers
// canonicalised, source, Identity headers).
//
//	go test ./sip -run '^$' -bench 'ParseClassify|ForwardInvite|DryRun' -benchmem
func BenchmarkParseClassify(b *testing.B) {
	p := sip.NewParser()
	raw := []byte(benchInvite)
	b.ReportAllocs()
	for b.Loop() {
		msg, err := p.ParseSIP(raw)
		if err != nil {
			b.Fatal(err)
		}
		req := msg.(*sip.Request)
		req.SetSource(benchSource.String())
		if c := newCall("inside", Outbound, req); c.Orig != "15551230001" || c.Dest != "15559870002" {
			b.Fatalf("call %+v", c)
		}
	}
}

// BenchmarkForwardInvite is building the INVITE that leaves: the copy, our
// Via and Record-Routes, Max-Forwards, an Identity header, the size check
// and its bytes.
func BenchmarkForwardInvite(b *testing.B) {
	req := parseBench(b)
	call := newCall("inside", Outbound, req)
	call.AddIdentity = strings.Repeat("x", 600) + ";info=<https://cert.example.com/sp.pem>;alg=ES256;ppt=shaken"
	in, out, err := dryRealms("inside")
	if err != nil {
		b.Fatal(err)
	}
	var wire bytes.Buffer // sipgo writes into a pooled buffer like this one
	b.ReportAllocs()
	for b.Loop() {
		fwd, err := dryForward(in, out, req, call)
		if err != nil {
			b.Fatal(err)
		}
		if wireSize(fwd) > 4096 {
			b.Fatal("too large")
		}
		wire.Reset()
		fwd.StringWrite(&wire)
		if wire.Len() < len(benchInvite) {
			b.Fatal("short")
		}
	}
}

// BenchmarkDryRunPlain is the whole per-INVITE path without sockets and
// without stages: parse, classify, forward build. The pipeline with real
// stages is BenchmarkPipeline in cmd/stirgate.
func BenchmarkDryRunPlain(b *testing.B) {
	raw := []byte(benchInvite)
	p := sip.NewParser()
	b.ReportAllocs()
	for b.Loop() {
		if _, fwd, err := DryRun(context.Background(), nil, "inside", benchSource, raw, p); err != nil || fwd == nil {
			b.Fatal(err)
		}
	}
}

func parseBench(tb testing.TB) *sip.Request {
	msg, err := sip.NewParser().ParseSIP([]byte(benchInvite))
	if err != nil {
		tb.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetSource(benchSource.String())
	req.SetTransport("UDP")
	return req
}

func TestDryRun(t *testing.T) {
	tag := HandlerFunc{StageName: "tag", Fn: func(_ context.Context, c *Call) error {
		c.Tag("X-Checked", c.Orig+">"+c.Dest)
		return nil
	}}
	reject := HandlerFunc{StageName: "dnc", Fn: func(_ context.Context, c *Call) error {
		return Reject(603, "Decline", errors.New("callee on the do-not-call list"))
	}}
	tests := []struct {
		name     string
		chain    Chain
		realm    string
		raw      string
		wantErr  string
		wantCode int
		wantHdrs []string
	}{
		{name: "forwarded with tag, Via and Record-Routes", chain: Chain{tag}, realm: "inside", raw: benchInvite,
			wantHdrs: []string{"X-Checked: 15551230001>15559870002", "Via: SIP/2.0/UDP 192.0.2.2:5060;branch=", "Record-Route: <sip:192.0.2.2:5060;transport=udp;lr>", "Record-Route: <sip:192.0.2.1:5060;transport=udp;lr>", "Max-Forwards: 69", "received=127.0.0.1"}},
		{name: "rejected by a stage", chain: Chain{tag, reject}, realm: "outside", raw: benchInvite, wantCode: 603},
		{name: "not an INVITE", realm: "inside", raw: strings.Replace(strings.Replace(benchInvite, "INVITE sip", "OPTIONS sip", 1), "1 INVITE", "1 OPTIONS", 1), wantErr: ErrNotInitialInvite.Error()},
		{name: "in-dialog INVITE", realm: "inside", raw: strings.Replace(benchInvite, "5070>\r\n", "5070>;tag=x\r\n", 1), wantErr: ErrNotInitialInvite.Error()},
		{name: "garbage", realm: "inside", raw: "hello", wantErr: "dry run"},
		{name: "bad realm", realm: "middle", raw: benchInvite, wantErr: "realm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call, fwd, err := DryRun(context.Background(), tt.chain, tt.realm, benchSource, []byte(tt.raw), nil)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			case tt.wantCode != 0:
				var rej *Rejection
				if !errors.As(err, &rej) || rej.Code != tt.wantCode || fwd != nil || call.DecidedBy != "dnc" {
					t.Fatalf("err = %v, fwd %q, decided by %q: want a %d from dnc", err, fwd, call.DecidedBy, tt.wantCode)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			for _, h := range tt.wantHdrs {
				if !strings.Contains(string(fwd), h) {
					t.Errorf("forwarded INVITE lacks %q:\n%s", h, fwd)
				}
			}
			if call.Source != benchSource || call.Realm != tt.realm {
				t.Errorf("call source %v realm %q", call.Source, call.Realm)
			}
		})
	}
}
