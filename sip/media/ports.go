package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// ErrNoPort: every port of the range is in use (or taken by another
// program).
var ErrNoPort = errors.New("media: no free port in the range")

// Ports hands out the UDP sockets of announcement streams from a
// configured range (media: {addr, ports: 20000-20999}), round robin, so a
// port is reused as late as possible and never while its stream runs: a
// late packet from the caller for an ended stream then lands on a closed
// port, not in a new caller's stream.
type Ports struct {
	addr   netip.Addr
	lo, hi uint16
	mu     sync.Mutex
	next   uint16
	inUse  map[uint16]bool
}

// NewPorts returns the range lo..hi (inclusive) on addr.
func NewPorts(addr netip.Addr, lo, hi uint16) (*Ports, error) {
	if lo == 0 || hi < lo {
		return nil, fmt.Errorf("media: port range %d-%d: want 1 <= low <= high", lo, hi)
	}
	return &Ports{addr: addr, lo: lo, hi: hi, next: lo, inUse: map[uint16]bool{}}, nil
}

// Open binds the next free port of the range. A port another program holds
// is skipped.
func (p *Ports) Open() (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	size := int(p.hi-p.lo) + 1
	for range size {
		port := p.next
		if p.next == p.hi {
			p.next = p.lo
		} else {
			p.next++
		}
		if p.inUse[port] {
			continue
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.addr, port)))
		if err != nil {
			continue
		}
		p.inUse[port] = true
		return c, nil
	}
	return nil, ErrNoPort
}

// Release closes c and gives its port back to the range.
func (p *Ports) Release(c *net.UDPConn) {
	port := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	_ = c.Close()
	p.mu.Lock()
	delete(p.inUse, port)
	p.mu.Unlock()
}

// InUse is how many ports are handed out.
func (p *Ports) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inUse)
}
