package sip

import (
	"net"
	"strings"
	"syscall"
	"testing"
)

// sockBuf reads SO_RCVBUF and SO_SNDBUF of c (Linux reports twice what was set).
func sockBuf(t *testing.T, c *net.UDPConn) (rcv, snd int) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		rcv, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		if gerr == nil {
			snd, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return rcv, snd
}

// TestReloadAppliesSocketBuffer: a udp.socket_buffer changed on reload takes
// effect on the open sockets of that realm (it is not silently ignored, and
// needs no restart); the other realm keeps its own.
func TestReloadAppliesSocketBuffer(t *testing.T) {
	const small, large = 64 << 10, 256 << 10 // both under this host's rmem_max (4 MiB in CI)
	cfg := testConfig()
	cfg.Realms.Inside.UDP.SocketBuffer = small
	cfg.Realms.Outside.UDP.SocketBuffer = small
	e, _ := newTestEdge(t, cfg, Chains{})
	in, out := e.realms[inside].udpConn(), e.realms[outside].udpConn()
	if rcv, snd := sockBuf(t, in); rcv >= large || snd >= large {
		t.Skipf("kernel reports SO_RCVBUF %d, SO_SNDBUF %d for %d: cannot tell a change", rcv, snd, small)
	}

	next := testConfig()
	next.Realms.Inside.UDP.SocketBuffer = large
	next.Realms.Outside.UDP.SocketBuffer = small
	u, err := e.Prepare(next, Chains{})
	if err != nil {
		t.Fatal(err)
	}
	if rcv, _ := sockBuf(t, in); rcv >= large {
		t.Fatalf("Prepare changed the socket (SO_RCVBUF %d): a refused reload must change nothing", rcv)
	}
	for _, k := range u.NeedRestart {
		if strings.Contains(k, "socket_buffer") {
			t.Fatalf("NeedRestart = %v: socket_buffer is applied live", u.NeedRestart)
		}
	}
	u.Install()
	if rcv, snd := sockBuf(t, in); rcv < large || snd < large {
		t.Errorf("inside after reload: SO_RCVBUF %d, SO_SNDBUF %d, want at least %d", rcv, snd, large)
	}
	if rcv, _ := sockBuf(t, out); rcv >= large {
		t.Errorf("outside after reload: SO_RCVBUF %d, want it unchanged (below %d)", rcv, large)
	}
}
