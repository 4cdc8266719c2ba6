// Package redistest starts real redis-server processes on loopback for
// tests: a standalone server or a Redis Cluster. It needs the Debian
// packages redis-server and redis-tools (scripts/test installs them). A
// missing binary skips the test, except under CI=true, where it fails it.
// Every process is stopped by its PID when the test ends.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is one running redis-server.
type Server struct {
	Addr string // 127.0.0.1:port
	t    testing.TB
	args []string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs a standalone redis-server on a free loopback port and waits
// (bounded) until it answers PING.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	requireBinaries(t)
	port := freePort(t)
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), t: t, dir: t.TempDir()}
	s.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "no"}, extraArgs...)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", s.args...)
	log, err := os.Create(fmt.Sprintf("%s/redis-%d.log", s.dir, time.Now().UnixNano()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		log.Close()
		s.t.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); log.Close(); close(done) }()
	s.done = done
	if err := waitPing(s.Addr, 10*time.Second, done); err != nil {
		s.Stop()
		s.t.Fatalf("redis-server %s: %v", s.Addr, err)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s), by its PID.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Restart starts the server again on the same port (after Stop), empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Do runs one command with redis-cli against the server and returns its
// output (trimmed).
func (s *Server) Do(args ...string) string {
	s.t.Helper()
	return cli(s.t, s.Addr, args...)
}

// StartCluster runs n (at least 3) masters with cluster mode on, joins them
// with redis-cli --cluster create and waits (bounded) until every node says
// cluster_state:ok. It returns the nodes; any address is a seed.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	if n < 3 {
		t.Fatalf("redistest: a Redis Cluster needs 3 masters, not %d", n)
	}
	nodes := make([]*Server, n)
	addrs := make([]string, n)
	for i := range nodes {
		nodes[i] = Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		addrs[i] = nodes[i].Addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range nodes {
		for !strings.Contains(cli(t, s.Addr, "cluster", "info"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("redis cluster: %s not ok within 20s", s.Addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

func cli(t testing.TB, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitPing polls addr with PING until +PONG, the process exits or bound.
func waitPing(addr string, bound time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(bound)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("exited before answering PING")
		default:
		}
		if last = ping(addr); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no PONG within %s: %v", bound, last)
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func requireBinaries(t testing.TB) {
	t.Helper()
	for _, b := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found: CI needs it (Debian packages redis-server, redis-tools)", b)
			}
			t.Skipf("%s not found (Debian packages redis-server, redis-tools)", b)
		}
	}
}

// freePort finds a free loopback TCP port; a cluster node also needs port
// +10000 (its bus), checked too.
func freePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("redistest: no free port pair")
	return 0
}
