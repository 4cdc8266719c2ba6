package sip

import (
	"strings"
	"testing"
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
		{"next hop tls", func(c *Config) { c.Realms.Inside.NextHop = "sip:127.0.0.1;transport=tls" }, "realms.inside.next_hop:"},
		{"bad cidr", func(c *Config) { c.Realms.Outside.Trusted = []string{"10.0.0.0/33"} }, "realms.outside.trusted[0]:"},
		{"empty acl", func(c *Config) { c.Realms.Outside.Trusted = nil }, "realms.outside.trusted:"},
		{"udp too small", func(c *Config) { c.Realms.Inside.UDP.MaxSize = 500 }, "realms.inside.udp.max_size:"},
		{"oversize tcp needs tcp", func(c *Config) { c.Realms.Inside.Listen = c.Realms.Inside.Listen[:1] }, "realms.inside.udp.oversize:"},
		{"oversize value", func(c *Config) { c.Realms.Inside.UDP.Oversize = "drop" }, "realms.inside.udp.oversize:"},
		{"user agent CRLF", func(c *Config) { c.UserAgent = "x\r\ny" }, "user_agent:"},
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

func TestParseNextHop(t *testing.T) {
	n, err := ParseNextHop("sip:192.0.2.1;transport=TCP")
	if err != nil || n.Addr() != "192.0.2.1:5060" || n.Transport != "TCP" {
		t.Fatalf("got %+v, %v", n, err)
	}
}
