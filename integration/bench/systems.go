package main

import (
	"cmp"
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stirgate/stirgate/integration/internal/sippfiles"
)

//go:embed kamailio.cfg
var kamailioCfg string

// proxy is one system under test, started for one mode.
type proxy struct {
	system  string // "stirgate" | "kamailio"
	mode    string
	addr    string       // host:port the caller sends to
	nextHop int          // the callee port it forwards to
	admin   string       // stirgate admin base URL
	token   string       // stirgate admin token
	redis   *redisServer // policy-redis: the Redis its state is in
	// relaunch starts a fresh process like this one (nil: startSystem
	// with system, mode and nextHop).
	relaunch func(context.Context) (*proxy, error)
	// The transport comparison: the PBX's transport (udp, tls), the
	// callee, and the PBX's TLS client configuration.
	transport string
	uas       *goUAS
	tlsClient *tls.Config
	cmd       *exec.Cmd
	done      chan struct{}
	log       string
}

const callee = "+15559870002" // SIPp -s, the number every call goes to

// proxyTLS makes a proxy's PBX side and next hop TLS: a mutual-TLS
// listener for the PBX (stirgate: the customer is named by the PBX's
// certificate) and the trunk (nextHop) reached over TLS.
type proxyTLS struct {
	pki                     *benchTLSPKI
	insidePort, outsidePort int // the realms' TLS listeners
}

// startStirgate starts stirgate for mode, forwarding to nextHop; with tls,
// over TLS (nextHop is then the trunk's TLS port).
func (e *env) startStirgate(ctx context.Context, mode string, nextHop, workers int, extraEnv []string, stateTimeout time.Duration, overTLS *proxyTLS) (*proxy, error) {
	ports, err := freeUDPPorts(3)
	if err != nil {
		return nil, err
	}
	inside, outside, admin := ports[0], ports[1], ports[2]
	name := "stirgate-" + mode
	if overTLS != nil {
		name += "-tls"
	}
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	token := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# stirgate for the bench, mode %s\n", mode)
	fmt.Fprintf(&b, "mode: production\n")
	// Call log lines are off, as Kamailio logs nothing per call
	// (debug=-1); call records are written (-records sqlite, as shipped)
	// unless -records none.
	fmt.Fprintf(&b, "log: {level: warn, format: text}\n")
	fmt.Fprintf(&b, "records: {backend: %s, path: %q}\n", cmp.Or(e.records, "sqlite"), filepath.Join(dir, "records.db"))
	fmt.Fprintf(&b, "admin: {listen: %q, pprof: true, token_file: %q}\n", hostPort(admin), tokenFile)
	fmt.Fprintf(&b, "shutdown: {drain_timeout: 2s}\n")
	fmt.Fprintf(&b, "sip:\n  user_agent: stirgate-bench\n  max_message_size: 16384\n  invite_timeout: 30s\n  realms:\n")
	for _, r := range []struct {
		name string
		port int
	}{{"inside", inside}, {"outside", outside}} {
		fmt.Fprintf(&b, "    %s:\n", r.name)
		fmt.Fprintf(&b, "      listen:\n        - {transport: udp, addr: %q}\n", hostPort(r.port))
		if overTLS == nil {
			fmt.Fprintf(&b, "      next_hop: \"sip:%s;transport=udp\"\n", hostPort(nextHop))
		} else {
			b.WriteString(overTLS.realmYAML(r.name, nextHop))
		}
		fmt.Fprintf(&b, "      trusted: [\"127.0.0.0/8\"]\n")
		fmt.Fprintf(&b, "      udp: {max_size: 4096, oversize: reject}\n")
	}
	target := inside
	switch mode {
	case "sign":
		fmt.Fprintf(&b, `attest:
  enabled: true
  key: %q
  cert: %q
  x5u: %q
  customers:
    - name: bench-pbx
      sources: ["127.0.0.0/8"]
      numbers: ["+15551230001"]
`, filepath.Join(e.pki, "sp.key"), filepath.Join(e.pki, "sp.pem"), e.x5u)
		if overTLS != nil {
			fmt.Fprintf(&b, "      tls_identities: [%q]\n", "dns:"+benchPBXName)
		}
	case "policy-memory", "policy-redis":
		target = outside
		polFile := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(polFile, []byte(e.policy), 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "policy:\n  files: [%q]\n", polFile)
		if mode == "policy-redis" {
			if e.redis == nil {
				return nil, fmt.Errorf("mode %s: no redis-server started", mode)
			}
			fmt.Fprintf(&b, "state:\n  backend: redis\n  redis:\n    addrs: [%q]\n", e.redis.addr)
			if stateTimeout > 0 {
				fmt.Fprintf(&b, "    timeout: %s\n", stateTimeout)
			}
		}
	case "verify":
		target = outside
		fmt.Fprintf(&b, `verify:
  enabled: true
  trust_roots: [%q]
  x5u:
    allow_http: true
    ports: [%d]
    allow_addresses: ["127.0.0.0/8"]
`, filepath.Join(e.pki, "root.pem"), e.certPort)
	}
	cfgPath := filepath.Join(dir, "stirgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	if overTLS != nil {
		if mode != "sign" {
			return nil, fmt.Errorf("stirgate over TLS: mode %s, want sign", mode)
		}
		target = overTLS.insidePort
	}
	p := &proxy{system: "stirgate", mode: mode, addr: hostPort(target), nextHop: nextHop, admin: "http://" + hostPort(admin), token: token, log: filepath.Join(dir, "stderr.log")}
	if mode == "policy-redis" {
		p.redis = e.redis
	}
	cmd := exec.Command(e.stirgate, "serve", "--config", cfgPath)
	cmd.Env = append(append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", workers)), extraEnv...)
	if err := p.start(cmd, dir); err != nil {
		return nil, err
	}
	if err := p.waitHTTP(ctx, p.admin+"/readyz", 15*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// startKamailio starts Kamailio for mode, forwarding to nextHop, with
// memory manager alloc and the extra command-line arguments.
func (e *env) startKamailio(ctx context.Context, mode string, nextHop, workers int, alloc string, extra []string, overTLS *proxyTLS) (*proxy, error) {
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	name := "kamailio-" + mode
	if overTLS != nil {
		name += "-tls"
	}
	dir := filepath.Join(e.work, name)
	cache := filepath.Join(dir, "cert-cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	tlsConfig, tlsPort := filepath.Join(dir, "tls.cfg"), 0
	if overTLS != nil {
		if mode != "sign" {
			return nil, fmt.Errorf("kamailio over TLS: mode %s, want sign", mode)
		}
		tlsPort = overTLS.insidePort
		if err := os.WriteFile(tlsConfig, []byte(overTLS.kamailioDomains()), 0o644); err != nil {
			return nil, err
		}
	}
	cfg := strings.NewReplacer(
		"__TLS_PORT__", itoa(tlsPort),
		"__TLS_CONFIG__", tlsConfig,
		"__PORT__", itoa(port),
		"__NEXT_HOP_PORT__", itoa(nextHop),
		"__CHILDREN__", itoa(workers),
		"__MODULES_DIR__", e.modulesDir,
		"__X5U__", e.x5u,
		"__KEY__", e.kamKey,
		"__CACHE_DIR__", cache,
		"__CA_FILE__", filepath.Join(e.pki, "root.pem"),
	).Replace(kamailioCfg)
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	// -DD: stay in the foreground (children still fork), -E: log to
	// stderr, -m/-M: shared and per-process memory in MB, -x/-X: the
	// memory manager of each (TLSF: O(1) malloc and free, what
	// performance-minded operators run; Kamailio's default is fm).
	args := []string{"-f", cfgPath, "-DD", "-E", "-m", "512", "-M", "32", "-x", alloc, "-X", alloc, "-P", filepath.Join(dir, "kamailio.pid"), "-Y", dir}
	args = append(args, extra...)
	switch mode {
	case "sign":
		args = append(args, "-A", "MODE_SIGN")
	case "verify":
		args = append(args, "-A", "MODE_VERIFY")
	}
	if overTLS != nil {
		args = append(args, "-A", "WITH_TLS")
	}
	check := exec.CommandContext(ctx, e.kamailio, append([]string{"-c"}, args...)...)
	if out, err := check.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kamailio -c %s: %w\n%s", cfgPath, err, sippfiles.Tail(string(out), 20))
	}
	p := &proxy{system: "kamailio", mode: mode, addr: hostPort(port), nextHop: nextHop, log: filepath.Join(dir, "stderr.log")}
	if err := p.start(exec.Command(e.kamailio, args...), dir); err != nil {
		return nil, err
	}
	// Ready when its workers exist and the port answers: send OPTIONS
	// until a response comes back.
	if err := p.waitSIP(ctx, 15*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	if overTLS != nil {
		p.addr = hostPort(tlsPort) // the PBX's calls: over TLS
	}
	return p, nil
}

func (p *proxy) start(cmd *exec.Cmd, dir string) error {
	f, err := os.Create(p.log)
	if err != nil {
		return err
	}
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.system, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return nil
}

// alive reports whether the process is still running.
func (p *proxy) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop ends the process by its PID: SIGTERM, then SIGKILL after 10 s.
// Kamailio's main process stops its children itself.
func (p *proxy) stop() {
	if p == nil || p.cmd == nil || !p.alive() {
		return
	}
	children := p.pids()[1:]
	terminate(p.cmd, p.done, 10*time.Second)
	for _, pid := range children {
		if processAlive(pid) {
			log.Printf("%s child %d outlived its parent: killing it", p.system, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// terminate stops cmd by its PID: SIGTERM, then SIGKILL after grace; done
// closes when it has exited.
func terminate(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// pids are the process and its direct children (Kamailio's workers).
func (p *proxy) pids() []int {
	pid := p.cmd.Process.Pid
	return append([]int{pid}, childrenOf(pid)...)
}

func (p *proxy) waitHTTP(ctx context.Context, url string, bound time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(bound)
	var last error
	for i := 0; i < 1000 && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		if !p.alive() {
			return fmt.Errorf("%s exited before ready:\n%s", p.system, p.logTail())
		}
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %v: %v\n%s", p.system, bound, last, p.logTail())
}

// waitSIP sends OPTIONS until the proxy answers anything.
func (p *proxy) waitSIP(ctx context.Context, bound time.Duration) error {
	c, err := net.ListenPacket("udp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return err
	}
	defer c.Close()
	dst, err := net.ResolveUDPAddr("udp", p.addr)
	if err != nil {
		return err
	}
	local := c.LocalAddr().String()
	deadline := time.Now().Add(bound)
	buf := make([]byte, 4096)
	for i := 0; i < 100 && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		if !p.alive() {
			return fmt.Errorf("%s exited before ready:\n%s", p.system, p.logTail())
		}
		msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-ready-%d\r\nMax-Forwards: 70\r\nFrom: <sip:bench@%s>;tag=ready\r\nTo: <sip:%s>\r\nCall-ID: ready-%d@bench\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			p.addr, local, i, local, p.addr, i)
		if _, err := c.WriteTo([]byte(msg), dst); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := c.ReadFrom(buf); err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
			return nil
		}
	}
	return fmt.Errorf("%s: no answer to OPTIONS on %s within %v\n%s", p.system, p.addr, bound, p.logTail())
}

// profile fetches a CPU profile of d, then a heap profile (in use at that
// moment, under load), from stirgate's admin port: path.cpu.pprof and
// path.heap.pprof.
func (p *proxy) profile(ctx context.Context, d time.Duration, path string) error {
	if err := p.fetchProfile(ctx, fmt.Sprintf("profile?seconds=%d", int(d.Seconds())), d, path+".cpu.pprof"); err != nil {
		return err
	}
	return p.fetchProfile(ctx, "heap?gc=1", 0, path+".heap.pprof")
}

func (p *proxy) fetchProfile(ctx context.Context, query string, d time.Duration, path string) error {
	if p.system != "stirgate" {
		return errors.New("profiles come from stirgate only")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.admin+"/debug/pprof/"+query, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := (&http.Client{Timeout: d + 30*time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func hostPort(port int) string { return net.JoinHostPort(loopback, itoa(port)) }

// logTail is the end of the proxy's stderr, for error messages.
func (p *proxy) logTail() string { return sippfiles.Tail(sippfiles.ReadFile(p.log), 20) }
