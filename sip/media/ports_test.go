package media

import (
	"net"
	"net/netip"
	"testing"
)

// freeRange finds n consecutive free UDP ports on loopback (bounded tries).
func freeRange(t *testing.T, n int) uint16 {
	t.Helper()
	for try := 0; try < 50; try++ {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		lo := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		c.Close()
		ok := lo+uint16(n) > lo
		for i := 0; ok && i < n; i++ {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), lo+uint16(i))))
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return lo
		}
	}
	t.Fatal("no free port range")
	return 0
}

// TestPorts: ports come from the range round robin, never twice while in
// use, a port another program holds is skipped, a full range says so, and
// a released port comes back only after the others.
func TestPorts(t *testing.T) {
	lo := freeRange(t, 4)
	addr := netip.MustParseAddr("127.0.0.1")
	p, err := NewPorts(addr, lo, lo+3)
	if err != nil {
		t.Fatal(err)
	}
	// Another program holds the third port.
	other, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, lo+2)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	port := func(c *net.UDPConn) uint16 { return c.LocalAddr().(*net.UDPAddr).AddrPort().Port() }
	a, err := p.Open()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.Open()
	c, err := p.Open()
	if err != nil || port(a) != lo || port(b) != lo+1 || port(c) != lo+3 {
		t.Fatalf("ports %d %d %d (%v), want %d %d %d", port(a), port(b), port(c), err, lo, lo+1, lo+3)
	}
	if _, err := p.Open(); err != ErrNoPort {
		t.Fatalf("a full range: %v, want ErrNoPort", err)
	}
	p.Release(a)
	if p.InUse() != 2 {
		t.Errorf("%d in use after a release, want 2", p.InUse())
	}
	d, err := p.Open()
	if err != nil || port(d) != lo {
		t.Fatalf("after the release: %v %v", d, err)
	}
	for _, c := range []*net.UDPConn{b, c, d} {
		p.Release(c)
	}
	if _, err := NewPorts(addr, 10, 9); err == nil {
		t.Error("a reversed range was accepted")
	}
}
