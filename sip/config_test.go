package sip

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"defaults valid", func(*Config) {}, ""},
		{"bad transport", func(c *Config) { c.Realms.Inside.Listen[0].Transport = "sctp" }, "realms.inside.listen[0].transport:"},
		{"bad addr", func(c *Config) { c.Realms.Outside.Listen[1].Addr = "localhost" }, "realms.outside.listen[1].addr:"},
		{"wildcard needs advertise", func(c *Config) { c.Realms.Inside.Listen[0].Addr = "0.0.0.0:5060" }, "realms.inside.listen[0].advertise:"},
		{"no next hop", func(c *Config) { c.Realms.Inside.NextHop = "" }, "realms.inside.next_hop:"},
		{"next hop with user", func(c *Config) { c.Realms.Inside.NextHop = "sip:bob@127.0.0.1" }, "realms.inside.next_hop:"},
		{"next hop tls without a tls listener", func(c *Config) { c.Realms.Inside.NextHop = "sip:127.0.0.1;transport=tls" }, "realms.inside.next_hop: transport=tls needs a tls listener"},
		{"next hop tls", func(c *Config) {
			c.Realms.Inside.NextHop = "sip:127.0.0.1;transport=tls"
			c.Realms.Inside.Listen = append(c.Realms.Inside.Listen, ListenConfig{Transport: "tls", Addr: "127.0.0.1:0", IdleTimeout: time.Minute, Cert: "s.pem", Key: "s.key"})
		}, ""},
		{"next hop sctp", func(c *Config) { c.Realms.Inside.NextHop = "sip:127.0.0.1;transport=sctp" }, "realms.inside.next_hop:"},
		{"tls listener without key", func(c *Config) {
			c.Realms.Inside.Listen = append(c.Realms.Inside.Listen, ListenConfig{Transport: "tls", Addr: "127.0.0.1:0", IdleTimeout: time.Minute, Cert: "server.pem"})
		}, "realms.inside.listen[2].cert: a tls listener needs cert and key"},
		{"tls listener", func(c *Config) {
			c.Realms.Inside.Listen = append(c.Realms.Inside.Listen, ListenConfig{Transport: "tls", Addr: "127.0.0.1:0", IdleTimeout: time.Minute, Cert: "s.pem", Key: "s.key", ClientCA: "ca.pem", MinVersion: "1.3"})
		}, ""},
		{"tls 1.1", func(c *Config) {
			c.Realms.Inside.Listen = append(c.Realms.Inside.Listen, ListenConfig{Transport: "tls", Addr: "127.0.0.1:0", IdleTimeout: time.Minute, Cert: "s.pem", Key: "s.key", MinVersion: "1.1"})
		}, `realms.inside.listen[2].min_version: "1.1" is not one of 1.2, 1.3`},
		{"idle_timeout on udp", func(c *Config) { c.Realms.Outside.Listen[0].IdleTimeout = time.Minute }, "realms.outside.listen[0].idle_timeout: udp has no connections: only tcp and tls listeners have one"},
		{"idle_timeout on tcp out of range", func(c *Config) { c.Realms.Outside.Listen[1].IdleTimeout = time.Millisecond }, "realms.outside.listen[1].idle_timeout: 1ms out of range 1s..24h"},
		{"idle_timeout 0 is the default", func(c *Config) {
			c.Realms.Inside.Listen = append(c.Realms.Inside.Listen, ListenConfig{Transport: "tls", Addr: "127.0.0.1:0", Cert: "s.pem", Key: "s.key"})
		}, ""},
		{"client_ca on udp", func(c *Config) { c.Realms.Outside.Listen[0].ClientCA = "ca.pem" }, "realms.outside.listen[0].client_ca: only a tls listener has one"},
		{"client cert without key", func(c *Config) { c.Realms.Outside.TLS.Cert = "c.pem" }, "realms.outside.tls.cert: a client certificate needs both cert and key"},
		{"bad cidr", func(c *Config) { c.Realms.Outside.Trusted = []string{"10.0.0.0/33"} }, "realms.outside.trusted[0]:"},
		{"empty acl", func(c *Config) { c.Realms.Outside.Trusted = nil }, "realms.outside.trusted:"},
		{"udp too small", func(c *Config) { c.Realms.Inside.UDP.MaxSize = 500 }, "realms.inside.udp.max_size:"},
		{"oversize tcp needs tcp", func(c *Config) { c.Realms.Inside.Listen = c.Realms.Inside.Listen[:1] }, "realms.inside.udp.oversize:"},
		{"oversize value", func(c *Config) { c.Realms.Inside.UDP.Oversize = "drop" }, "realms.inside.udp.oversize:"},
		{"user agent CRLF", func(c *Config) { c.UserAgent = "x\r\ny" }, "user_agent:"},
		{"user agent NUL", func(c *Config) { c.UserAgent = "x\x00y" }, "user_agent:"},
		{"user agent with version", func(c *Config) { c.UserAgent = "stirgate/1.2 (lab)" }, ""},
		{"linger below 1s", func(c *Config) { c.TransactionLinger = 500 * time.Millisecond }, "transaction_linger:"},
		{"linger above 32s", func(c *Config) { c.TransactionLinger = time.Minute }, "transaction_linger:"},
		{"linger 32s", func(c *Config) { c.TransactionLinger = 32 * time.Second }, ""},
		{"socket buffer too small", func(c *Config) { c.Realms.Outside.UDP.SocketBuffer = 1024 }, "realms.outside.udp.socket_buffer:"},
		{"socket buffer 16 MiB", func(c *Config) { c.Realms.Outside.UDP.SocketBuffer = 16 << 20 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			c.ApplyDefaults()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one starting with %q", err, tt.want)
			}
		})
	}
}

// TestDialogsAnswered: a late retransmission of an INVITE answered 2xx is
// recognised by Call-ID, From tag, CSeq and top Via branch; its ACK by
// Call-ID, From tag and CSeq; a new INVITE reusing the Call-ID with another
// From tag or CSeq is neither.
func TestDialogsAnswered(t *testing.T) {
	d := newDialogs(prometheusGauge())
	d.add("1-5729@127.0.0.1", inviteIDOf(parseBench(t)), nil)
	variant := func(old, new string) *sip.Request {
		msg, err := sip.NewParser().ParseSIP([]byte(strings.Replace(benchInvite, old, new, 1)))
		if err != nil {
			t.Fatal(err)
		}
		return msg.(*sip.Request)
	}
	for _, tt := range []struct {
		name           string
		req            *sip.Request
		acked, retrans bool
	}{
		{"same INVITE", parseBench(t), true, true},
		{"other branch (the ACK, or a new INVITE)", variant("z9hG4bK-5729-1-0", "z9hG4bK-other"), true, false},
		{"other CSeq", variant("CSeq: 1 INVITE", "CSeq: 2 INVITE"), false, false},
		{"other From tag", variant("tag=5729SIPpTag001", "tag=B"), false, false},
		{"other Call-ID", variant("Call-ID: 1-5729@127.0.0.1", "Call-ID: 2-5729@127.0.0.1"), false, false},
	} {
		id, ok := d.answered(tt.req.CallID().Value())
		if got := ok && id.acknowledgedBy(tt.req); got != tt.acked {
			t.Errorf("%s: acknowledged = %v, want %v", tt.name, got, tt.acked)
		}
		if got := ok && id.retransmits(tt.req); got != tt.retrans {
			t.Errorf("%s: retransmission = %v, want %v", tt.name, got, tt.retrans)
		}
	}
	d.remove("1-5729@127.0.0.1")
	if _, ok := d.answered("1-5729@127.0.0.1"); ok {
		t.Error("answered after the dialog ended")
	}
}

func TestInviteID(t *testing.T) {
	if got, want := inviteIDOf(parseBench(t)), (inviteID{fromTag: "5729SIPpTag001", seq: 1, branch: "z9hG4bK-5729-1-0"}); got != want {
		t.Fatalf("inviteIDOf = %+v, want %+v", got, want)
	}
}

func TestForwardCopySharesNothingItChanges(t *testing.T) {
	req := parseBench(t)
	before := req.String()
	fwd := forwardCopy(req)
	markReceived(fwd.Via(), req)
	mf := sip.MaxForwardsHeader(69)
	fwd.ReplaceHeader(&mf)
	fwd.PrependHeader(recordRouteHeader(dryOutside, "UDP"))
	ours := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "192.0.2.2", Port: 5060, Params: sip.NewParams()}
	fwd.PrependHeader(ours)
	removeHeaders(fwd, "P-Asserted-Identity")
	if err := setVerstat(fwd, VerstatPassed); err != nil {
		t.Fatal(err)
	}
	if req.String() != before {
		t.Fatalf("the original changed:\n%s\nwas:\n%s", req.String(), before)
	}
	if !strings.Contains(fwd.String(), "received=127.0.0.1") || !strings.Contains(fwd.String(), "verstat=TN-Validation-Passed") {
		t.Fatalf("forwarded copy lacks its changes:\n%s", fwd.String())
	}
	if wireSize(fwd) != len(fwd.String()) {
		t.Fatalf("wireSize %d, String %d", wireSize(fwd), len(fwd.String()))
	}
	res := sip.NewResponseFromRequest(fwd, 180, "Ringing", nil)
	up := upstreamCopy(res)
	if up.Via() == nil || up.Via().Host != "127.0.0.1" || len(up.GetHeaders("Via")) != len(res.GetHeaders("Via"))-1 {
		t.Fatalf("upstream copy Vias: %v", up.GetHeaders("Via"))
	}
	if len(res.GetHeaders("Via")) != 2 {
		t.Fatalf("response changed: %v", res.GetHeaders("Via"))
	}
}

func TestParseNextHop(t *testing.T) {
	n, err := ParseNextHop("sip:192.0.2.1;transport=TCP")
	if err != nil || n.Addr() != "192.0.2.1:5060" || n.Transport != "TCP" {
		t.Fatalf("got %+v, %v", n, err)
	}
}

func prometheusGauge() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_dialogs"})
}

// TestWithFilesResolved: every TLS file name goes through resolve, empty
// ones stay empty, the original listeners are untouched, and TLSFiles
// lists what is set.
func TestWithFilesResolved(t *testing.T) {
	c := testConfig()
	c.Realms.Inside.Listen = append(c.Realms.Inside.Listen, ListenConfig{Transport: "tls", Addr: "127.0.0.1:0", Cert: "s.pem", Key: "s.key", ClientCA: "ca.pem"})
	c.Realms.Outside.TLS = TLSClientConfig{CA: "trunk-ca.pem", Cert: "c.pem", Key: "c.key"}
	got := c.WithFilesResolved(func(p string) string {
		if p == "" {
			return ""
		}
		return "/etc/stirgate/" + p
	})
	want := []string{"/etc/stirgate/s.pem", "/etc/stirgate/s.key", "/etc/stirgate/ca.pem", "/etc/stirgate/trunk-ca.pem", "/etc/stirgate/c.pem", "/etc/stirgate/c.key"}
	if files := got.TLSFiles(); !slices.Equal(files, want) {
		t.Errorf("TLSFiles = %q, want %q", files, want)
	}
	if l := c.Realms.Inside.Listen[2]; l.Cert != "s.pem" || c.Realms.Outside.TLS.CA != "trunk-ca.pem" {
		t.Errorf("the original changed: listener cert %q, outside tls.ca %q", l.Cert, c.Realms.Outside.TLS.CA)
	}
}
