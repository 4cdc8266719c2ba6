package sip

import (
	"net"
	"testing"
	"time"
)

// TestStampedConnKernelTime: a datagram read through stampedConn carries
// the kernel's receive time, which is before the read and recent; a
// datagram that waited in the socket shows its wait.
func TestStampedConnKernelTime(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := newStampedConn(c)
	out, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	sent := time.Now()
	if _, err := out.Write([]byte("INVITE x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond) // it waits in the socket
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, from, err := s.ReadFrom(buf)
	read := time.Now()
	if err != nil || string(buf[:n]) != "INVITE x" || from.String() != out.LocalAddr().String() {
		t.Fatalf("ReadFrom: %q from %v, %v", buf[:n], from, err)
	}
	if s.arrived.IsZero() {
		t.Fatal("no kernel receive time (SO_TIMESTAMPNS)")
	}
	if s.arrived.Before(sent.Add(-time.Second)) || s.arrived.After(read) {
		t.Fatalf("kernel time %v not between send %v and read %v", s.arrived, sent, read)
	}
	if wait := read.Sub(s.arrived); wait < 25*time.Millisecond {
		t.Errorf("wait in the socket measured %v, want about 30ms", wait)
	}
}

func TestKernelTimeGarbage(t *testing.T) {
	for _, oob := range [][]byte{nil, {1, 2, 3}, make([]byte, 16), {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 35, 0, 0, 0}} {
		if got := kernelTime(oob); !got.IsZero() {
			t.Errorf("kernelTime(%v) = %v, want zero", oob, got)
		}
	}
}
