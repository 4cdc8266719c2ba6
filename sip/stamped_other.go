//go:build !linux

package sip

import (
	"net"
	"time"
)

// stampedConn elsewhere than Linux: no kernel receive time, so the queue
// wait starts when the reader reads the datagram.
type stampedConn struct {
	*net.UDPConn
	arrived time.Time
}

func newStampedConn(c *net.UDPConn) *stampedConn { return &stampedConn{UDPConn: c} }
