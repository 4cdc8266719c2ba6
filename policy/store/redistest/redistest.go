// Package redistest starts real redis-server processes on loopback for
// tests: a standalone server (optionally with an ACL and/or TLS), a Redis
// Sentinel, or a Redis Cluster. It needs the Debian
// packages redis-server and redis-tools (scripts/test installs them). A
// missing binary skips the test, except under CI=true, where it fails it.
// Every process is stopped by its PID when the test ends.
package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	// admin is the ACL user Do and the readiness PING authenticate as
	// (Options.ACL only); tls the client side of Options.TLS.
	admin *admin
	tls   *TLSFiles
}

type admin struct{ user, password string }

// Admin user of a server started with Options.ACL: Do and the readiness
// check log in as it, since the default user is disabled there.
const (
	AdminUser     = "redistest-admin"
	AdminPassword = "redistest-admin-pw"
)

// Options are the extras of StartOptions.
type Options struct {
	// ACL lines of the server's aclfile, e.g.
	// "user app on >pw ~app:* +@all". With ACL set the default user is
	// off (every client must AUTH) and AdminUser is added for Do.
	ACL []string
	// TLS, when set, makes the server speak TLS only (port 0, tls-port
	// on Addr); Do and the readiness check use its client certificate.
	TLS *TLSFiles
	// AuthClients is tls-auth-clients: yes (default), no or optional.
	AuthClients string
	// Args are further redis-server arguments.
	Args []string
}

// Start runs a standalone redis-server on a free loopback port and waits
// (bounded) until it answers PING.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	return StartOptions(t, Options{Args: extraArgs})
}

// StartOptions is Start with an ACL and/or TLS.
func StartOptions(t testing.TB, o Options) *Server {
	t.Helper()
	requireBinaries(t)
	port := freePort(t)
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), t: t, dir: t.TempDir(), tls: o.TLS}
	ports := []string{"--port", strconv.Itoa(port)}
	if o.TLS != nil {
		auth := o.AuthClients
		if auth == "" {
			auth = "yes"
		}
		ports = []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", o.TLS.ServerCert,
			"--tls-key-file", o.TLS.ServerKey, "--tls-ca-cert-file", o.TLS.CA, "--tls-auth-clients", auth}
	}
	s.args = append(ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "no")
	if o.ACL != nil {
		s.admin = &admin{AdminUser, AdminPassword}
		lines := append([]string{"user default off", "user " + AdminUser + " on >" + AdminPassword + " ~* &* +@all"}, o.ACL...)
		acl := filepath.Join(s.dir, "users.acl")
		if err := os.WriteFile(acl, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.args = append(s.args, "--aclfile", acl)
	}
	s.args = append(s.args, o.Args...)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// StartSentinel runs one Redis Sentinel (redis-server --sentinel, no
// separate package needed) on a free loopback port that monitors master
// under name with quorum 1, and waits (bounded) until it names the master.
// A master started with Options.ACL is watched as AdminUser.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	if master.tls != nil {
		t.Fatal("redistest: StartSentinel of a TLS master is not supported")
	}
	requireBinaries(t)
	port := freePort(t)
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), t: t, dir: t.TempDir()}
	host, mport, _ := net.SplitHostPort(master.Addr)
	conf := []string{
		"port " + strconv.Itoa(port), "bind 127.0.0.1", "protected-mode no", "dir " + s.dir,
		fmt.Sprintf("sentinel monitor %s %s %s 1", name, host, mport),
		fmt.Sprintf("sentinel down-after-milliseconds %s 1000", name),
	}
	if a := master.admin; a != nil {
		conf = append(conf, fmt.Sprintf("sentinel auth-user %s %s", name, a.user), fmt.Sprintf("sentinel auth-pass %s %s", name, a.password))
	}
	// Sentinel rewrites its config file, so it lives in the temp dir.
	path := filepath.Join(s.dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{path, "--sentinel"}
	s.start()
	t.Cleanup(s.Stop)
	want := host + "\n" + mport
	deadline := time.Now().Add(10 * time.Second)
	for got := s.Do("sentinel", "get-master-addr-by-name", name); got != want; got = s.Do("sentinel", "get-master-addr-by-name", name) {
		if time.Now().After(deadline) {
			t.Fatalf("sentinel %s: master %s is %q, want %s within 10s", s.Addr, name, got, master.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	if err := waitPing(s.dialer(), 10*time.Second, done); err != nil {
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
	return cli(s.t, s.Addr, append(s.cliFlags(), args...)...)
}

// cliFlags are redis-cli's login and TLS flags for this server.
func (s *Server) cliFlags() []string {
	var f []string
	if s.tls != nil {
		f = append(f, "--tls", "--cacert", s.tls.CA, "--cert", s.tls.ClientCert, "--key", s.tls.ClientKey)
	}
	if s.admin != nil {
		f = append(f, "--user", s.admin.user, "--pass", s.admin.password, "--no-auth-warning")
	}
	return f
}

// dialer says how the readiness check reaches the server.
func (s *Server) dialer() pinger {
	p := pinger{addr: s.Addr, admin: s.admin}
	if s.tls != nil {
		p.tls = s.tls.ClientConfig(s.t)
	}
	return p
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

// pinger is where and how to PING: plain or TLS, with or without AUTH.
type pinger struct {
	addr  string
	tls   *tls.Config
	admin *admin
}

// waitPing polls with PING until +PONG, the process exits or bound.
func waitPing(p pinger, bound time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(bound)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("exited before answering PING")
		default:
		}
		if last = ping(p); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no PONG within %s: %v", bound, last)
}

func ping(p pinger) error {
	d := &net.Dialer{Timeout: time.Second}
	var c net.Conn
	var err error
	if p.tls != nil {
		c, err = tls.DialWithDialer(d, "tcp", p.addr, p.tls)
	} else {
		c, err = d.Dial("tcp", p.addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(c)
	if a := p.admin; a != nil {
		if _, err := fmt.Fprintf(c, "AUTH %s %s\r\n", a.user, a.password); err != nil {
			return err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("AUTH answered %q", strings.TrimSpace(line))
		}
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
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
