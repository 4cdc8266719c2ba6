package sip

import (
	"encoding/binary"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// stampedConn is a UDP socket whose reads note when the kernel received
// the datagram (SO_TIMESTAMPNS), for the queue wait. Only the socket's
// reader goroutine reads it, and filterUDP runs in that goroutine
// right after the read, so arrived needs no lock.
type stampedConn struct {
	*net.UDPConn
	oob     []byte
	arrived time.Time // kernel receive time of the last datagram read (zero: unknown)
}

func newStampedConn(c *net.UDPConn) *stampedConn {
	s := &stampedConn{UDPConn: c, oob: make([]byte, 64)}
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
		})
	}
	return s
}

// ReadFrom implements net.PacketConn for the socket's reader.
func (s *stampedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, oobn, _, addr, err := s.ReadMsgUDP(b, s.oob)
	s.arrived = kernelTime(s.oob[:oobn])
	if addr == nil {
		return n, nil, err
	}
	return n, addr, err
}

// kernelTime reads an SCM_TIMESTAMPNS control message (zero time if there
// is none). Parsed in place: no allocation per datagram.
func kernelTime(oob []byte) time.Time {
	const hdr = int(unsafe.Sizeof(syscall.Cmsghdr{}))
	if unsafe.Sizeof(syscall.Cmsghdr{}.Len) != 8 {
		return kernelTimeParsed(oob)
	}
	for len(oob) >= hdr {
		var h syscall.Cmsghdr
		h.Len = uint64(binary.NativeEndian.Uint64(oob[0:8]))
		h.Level = int32(binary.NativeEndian.Uint32(oob[8:12]))
		h.Type = int32(binary.NativeEndian.Uint32(oob[12:16]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return time.Time{}
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr : hdr+8]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8 : hdr+16]))
			return time.Unix(sec, nsec)
		}
		oob = oob[(l+7)&^7:]
	}
	return time.Time{}
}

// kernelTimeParsed is kernelTime through the syscall package's parser (32-bit
// platforms, where the header layout differs).
func kernelTimeParsed(oob []byte) time.Time {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(int64(ts.Sec), int64(ts.Nsec)) //nolint:unconvert // int32 on 32-bit platforms
		}
	}
	return time.Time{}
}
