package store

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Real redis-server processes for the tests: loopback only, a temp dir
// each, no persistence, every one stopped by PID in t.Cleanup.

// redisBinaries returns the paths of redis-server and redis-cli, skipping
// the test when they are missing (failing it with CI=true).
func redisBinaries(t testing.TB) (server, cli string) {
	t.Helper()
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found: CI needs it (Debian packages redis-server, redis-tools)")
		}
		t.Skip("redis-server or redis-cli not found (Debian packages redis-server, redis-tools)")
	}
	return server, cli
}

// redisProc is one running redis-server.
type redisProc struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string
	cmd  *exec.Cmd
}

func (p *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// freePort returns a loopback port that is free, and with bus set whose
// port+10000 (the Cluster bus) is free as well.
func freePort(t testing.TB, bus bool) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return port
		}
		if port+10000 <= 65535 {
			if l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000)); err == nil {
				l2.Close()
				l.Close()
				return port
			}
		}
		l.Close()
	}
	t.Fatal("no free loopback port")
	return 0
}

// startRedis starts a redis-server on a free loopback port and waits for
// PING. extra are more config arguments.
func startRedis(t testing.TB, extra ...string) *redisProc {
	t.Helper()
	bin, _ := redisBinaries(t)
	cluster := false
	for _, a := range extra {
		cluster = cluster || a == "--cluster-enabled"
	}
	p := &redisProc{t: t, bin: bin, dir: t.TempDir(), port: freePort(t, cluster)}
	p.args = append([]string{"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", p.dir, "--enable-debug-command", "local"}, extra...)
	p.start()
	t.Cleanup(p.stop)
	return p
}

// start runs the server (again, on the same port) and waits for PING.
func (p *redisProc) start() {
	p.t.Helper()
	log, err := os.OpenFile(filepath.Join(p.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	defer log.Close()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Dir = p.dir
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("starting redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if reply, err := p.command("PING"); err == nil && reply == "+PONG" {
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(p.dir, "redis.log"))
			p.stop()
			p.t.Fatalf("redis-server on %s did not answer PING within 10s; log:\n%s", p.addr(), out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop kills the server by PID and waits for it to exit.
func (p *redisProc) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// command sends one inline command on a new connection and returns the
// first reply line (a short deadline: for PING and small admin commands).
func (p *redisProc) command(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", p.addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// startCluster starts 3 masters and joins them into a Redis Cluster with
// redis-cli --cluster create, then waits until every node says
// cluster_state:ok.
func startCluster(t testing.TB) []*redisProc {
	t.Helper()
	_, cli := redisBinaries(t)
	var nodes []*redisProc
	var addrs []string
	for range 3 {
		p := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		nodes = append(nodes, p)
		addrs = append(addrs, p.addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range nodes {
		for {
			c, err := net.DialTimeout("tcp", p.addr(), time.Second)
			ok := false
			if err == nil {
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = c.Write([]byte("*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n"))
				buf := make([]byte, 4096)
				n, _ := c.Read(buf)
				ok = strings.Contains(string(buf[:n]), "cluster_state:ok")
				c.Close()
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not cluster_state:ok within 20s", p.addr())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}
