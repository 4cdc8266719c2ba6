// Package integration runs the real stirgate binary against real SIP peers
// (SIPp) on loopback. See sipp/README.md for the scenarios.
//
//	go test ./integration/ -v
//
// The binary is built once per run (or taken from STIRGATE_BIN). A missing
// sipp skips the tests, or fails them when CI=true.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stirgate/stirgate/integration/internal/sippfiles"
)

// loopback is the only address the tests use.
const loopback = "127.0.0.1"

var (
	// buildDir holds the binary built for this run; TestMain owns it.
	buildDir string

	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "stirgate-integration-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	buildDir = dir
	return m.Run()
}

// stirgateBinary returns the path of the binary under test, building it on
// first use: once per test run, whatever the number of tests.
// STIRGATE_BIN names a prebuilt binary instead.
func stirgateBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("STIRGATE_BIN"); p != "" {
			binPath, buildErr = filepath.Abs(p)
			return
		}
		binPath, buildErr = buildBinary(buildDir)
	})
	if buildErr != nil {
		t.Fatalf("stirgate binary: %v", buildErr)
	}
	return binPath
}

func buildBinary(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build: find go: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(dir, "stirgate")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/stirgate")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build: go build ./cmd/stirgate: %w\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot is the directory above this package holding go.mod.
func moduleRoot() (string, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	return root, nil
}

// scenario returns the absolute path of a scenario file in sipp/.
func scenario(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("sipp", name))
	if err != nil {
		t.Fatalf("scenario %s: %v", name, err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("scenario %s: %v", name, err)
	}
	return p
}

// requireSipp skips the test when sipp is not installed, or fails it under
// CI=true, where a missing sipp is a broken setup, not an excuse.
func requireSipp(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("sipp"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sipp not found (CI=true): install the Debian package sip-tester: %v", err)
		}
		t.Skipf("sipp not found; install the Debian package sip-tester: %v", err)
	}
}

// ---------------------------------------------------------------------------
// Ports

var (
	portMu    sync.Mutex
	usedPorts = map[int]bool{}
)

// freePort returns a loopback port that was free for both UDP and TCP, and
// that no other caller in this process got.
func freePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 200 {
		p, err := tryPort()
		if err != nil {
			continue
		}
		if usedPorts[p] {
			continue
		}
		usedPorts[p] = true
		return p
	}
	t.Fatalf("no free loopback port for UDP+TCP after 200 tries")
	return 0
}

// Ports come from below the kernel's ephemeral range when it allows
// (ip_local_port_range, usually 32768-60999): every process's outgoing
// connections draw their local ports from that range, so a port picked
// there and bound a moment later can be taken in between (it happened in
// CI: "bind: address already in use"). 20000 up is left to stirgate's
// media ports.
const pickLow, pickHigh = 10000, 20000

var belowEphemeral = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	return err1 == nil && err2 == nil && (hi < pickLow || lo >= pickHigh)
})

func tryPort() (int, error) {
	addr := net.JoinHostPort(loopback, "0")
	if belowEphemeral() {
		addr = hostPort(pickLow + mrand.IntN(pickHigh-pickLow))
	}
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("listen tcp: %w", err)
	}
	defer tl.Close()
	port := tl.Addr().(*net.TCPAddr).Port
	ul, err := net.ListenPacket("udp", net.JoinHostPort(loopback, strconv.Itoa(port)))
	if err != nil {
		return 0, fmt.Errorf("listen udp %d: %w", port, err)
	}
	ul.Close()
	return port, nil
}

func hostPort(port int) string { return net.JoinHostPort(loopback, strconv.Itoa(port)) }

// waitBound waits (bounded) until another process has bound the port for
// the transport ("u1"/"udp" or "t1"/"tcp"): our own bind then fails.
func waitBound(ctx context.Context, transport string, port int, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 500 && time.Now().Before(deadline); i++ {
		if portBusy(transport, port) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for port %d: %w", port, ctx.Err())
		case <-exited:
			return fmt.Errorf("wait for port %d: process exited before binding it", port)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("wait for port %d/%s: not bound after 10s", port, transport)
}

func portBusy(transport string, port int) bool {
	if strings.HasPrefix(transport, "t") {
		l, err := net.Listen("tcp", hostPort(port))
		if err != nil {
			return true
		}
		l.Close()
		return false
	}
	c, err := net.ListenPacket("udp", hostPort(port))
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// ---------------------------------------------------------------------------
// Configuration

// proxyConfig is what a test varies in the generated stirgate YAML, the
// same schema as configs/stirgate.yaml.
type proxyConfig struct {
	InsidePort  int // inside (PBX side) listeners, UDP and TCP
	OutsidePort int // outside (trunk side) listeners, UDP and TCP
	AdminPort   int

	PBXPort        int    // sip.realms.inside.next_hop: where inbound calls go
	PBXTransport   string // udp | tcp
	TrunkPort      int    // sip.realms.outside.next_hop: where outbound calls go
	TrunkTransport string // udp | tcp

	InsideTrusted  []string
	OutsideTrusted []string

	// TokenFile is admin.token_file (the admin API's token); "" for none.
	TokenFile string

	DrainTimeout  time.Duration
	InviteTimeout time.Duration
	LogLevel      string

	// Extra is YAML appended to the file: further top-level sections
	// (e.g. attest:) that a test needs.
	Extra string
	// SIPExtra is YAML added to the sip: section (indented two spaces).
	SIPExtra string
	// InsideExtra is YAML added to sip.realms.inside (indented six spaces).
	InsideExtra string
	// InsideListen and OutsideListen are further listeners of each realm,
	// YAML flow mappings (e.g. a tls listener).
	InsideListen, OutsideListen []string
	// OutsideExtra is YAML added to sip.realms.outside (indented six spaces).
	OutsideExtra string
	// Env is added to stirgate's environment (e.g. GOMAXPROCS=1).
	Env []string
	// Raw, when set, is the whole file instead (the ports above must be
	// the ones it uses).
	Raw string
}

// newProxyConfig returns a config on fresh free ports, trusting loopback.
func newProxyConfig(t testing.TB) proxyConfig {
	t.Helper()
	return proxyConfig{
		InsidePort:     freePort(t),
		OutsidePort:    freePort(t),
		AdminPort:      freePort(t),
		PBXPort:        freePort(t),
		PBXTransport:   "udp",
		TrunkPort:      freePort(t),
		TrunkTransport: "udp",
		InsideTrusted:  []string{"127.0.0.0/8"},
		OutsideTrusted: []string{"127.0.0.0/8"},
		DrainTimeout:   20 * time.Second,
		InviteTimeout:  30 * time.Second,
		LogLevel:       "info",
	}
}

func (c proxyConfig) InsideAddr() string  { return hostPort(c.InsidePort) }
func (c proxyConfig) OutsideAddr() string { return hostPort(c.OutsidePort) }
func (c proxyConfig) AdminURL() string    { return "http://" + hostPort(c.AdminPort) }

// YAML renders the configuration file.
func (c proxyConfig) YAML() string {
	if c.Raw != "" {
		return c.Raw
	}
	quote := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# generated by stirgate integration tests\n")
	fmt.Fprintf(&b, "log:\n  level: %s\n  format: text\n", c.LogLevel)
	fmt.Fprintf(&b, "admin:\n  listen: %q\n", hostPort(c.AdminPort))
	if c.TokenFile != "" {
		fmt.Fprintf(&b, "  token_file: %q\n", c.TokenFile)
	}
	fmt.Fprintf(&b, "shutdown:\n  drain_timeout: %s\n", c.DrainTimeout)
	fmt.Fprintf(&b, "sip:\n  user_agent: stirgate-it\n  max_message_size: 16384\n  invite_timeout: %s\n", c.InviteTimeout)
	b.WriteString(c.SIPExtra)
	fmt.Fprintf(&b, "  realms:\n")
	realm := func(name string, port int, hopPort int, hopTransport string, trusted []string, listen []string, extra string) {
		fmt.Fprintf(&b, "    %s:\n", name)
		fmt.Fprintf(&b, "      listen:\n")
		fmt.Fprintf(&b, "        - {transport: udp, addr: %q}\n", hostPort(port))
		fmt.Fprintf(&b, "        - {transport: tcp, addr: %q}\n", hostPort(port))
		for _, l := range listen {
			fmt.Fprintf(&b, "        - %s\n", l)
		}
		fmt.Fprintf(&b, "      next_hop: %q\n", fmt.Sprintf("sip:%s;transport=%s", hostPort(hopPort), hopTransport))
		fmt.Fprintf(&b, "      trusted: %s\n", quote(trusted))
		fmt.Fprintf(&b, "      udp:\n        max_size: 4096\n        oversize: tcp\n")
		b.WriteString(extra)
	}
	realm("inside", c.InsidePort, c.PBXPort, c.PBXTransport, c.InsideTrusted, c.InsideListen, c.InsideExtra)
	realm("outside", c.OutsidePort, c.TrunkPort, c.TrunkTransport, c.OutsideTrusted, c.OutsideListen, c.OutsideExtra)
	b.WriteString(c.Extra)
	return b.String()
}

// adminToken writes a fresh admin token into a 0600 file of the test's
// and returns the token and the file.
func adminToken(t testing.TB) (token, file string) {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	token = hex.EncodeToString(b)
	file = filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return token, file
}

// writeConfig writes the YAML into the test's temp dir and returns its path.
func writeConfig(t testing.TB, c proxyConfig) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stirgate.yaml")
	if err := os.WriteFile(p, []byte(c.YAML()), 0o644); err != nil {
		t.Fatalf("write config: %v", err)
	}
	return p
}

// ---------------------------------------------------------------------------
// The proxy process

// proxy is a running stirgate.
type proxy struct {
	t       testing.TB
	cfg     proxyConfig
	cmd     *exec.Cmd
	logPath string
	logFile *os.File

	done     chan struct{} // closed when the process has exited
	exitCode int           // valid after done
	waitErr  error
	stopOnce sync.Once
}

// startProxy starts stirgate with cfg, waits (bounded) for /readyz, and
// registers its stop; on test failure its stderr is shown.
func startProxy(t testing.TB, cfg proxyConfig) *proxy {
	t.Helper()
	bin := stirgateBinary(t)
	cfgPath := writeConfig(t, cfg)
	dir := filepath.Dir(cfgPath)
	logPath := filepath.Join(dir, "stirgate.stderr")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("stirgate log: %v", err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	if len(cfg.Env) > 0 {
		cmd.Env = append(os.Environ(), cfg.Env...)
	}
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start stirgate: %v", err)
	}
	p := &proxy{t: t, cfg: cfg, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.waitErr = err
		p.exitCode = cmd.ProcessState.ExitCode()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if _, err := p.Stop(); err != nil {
			t.Errorf("stop stirgate: %v", err)
		}
		if t.Failed() {
			t.Logf("stirgate stderr (%s), last lines:\n%s", logPath, tail(p.Log(), 150))
			t.Logf("stirgate config:\n%s", cfg.YAML())
		}
	})
	if err := p.waitReady(15 * time.Second); err != nil {
		t.Fatalf("stirgate not ready: %v", err)
	}
	return p
}

func (p *proxy) PID() int { return p.cmd.Process.Pid }

// waitReady polls /readyz until it answers 200, the process exits, or the
// bound passes.
func (p *proxy) waitReady(bound time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(bound)
	var last error
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		select {
		case <-p.done:
			return fmt.Errorf("exited with code %d before ready: %v", p.exitCode, p.waitErr)
		default:
		}
		resp, err := client.Get(p.cfg.AdminURL() + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %s", resp.Status)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no 200 from /readyz within %s: %w", bound, last)
}

// Signal sends sig to the process.
func (p *proxy) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.PID(), err)
	}
	return nil
}

// Wait waits at most bound for the process to exit and returns its exit
// code; ok is false if it is still running.
func (p *proxy) Wait(bound time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
		return p.exitCode, true
	case <-time.After(bound):
		return 0, false
	}
}

// Stop sends SIGTERM, waits for the drain bound plus a margin, then kills
// the process. It returns the exit code; an error if it had to be killed.
// Safe to call more than once.
func (p *proxy) Stop() (int, error) {
	var err error
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		if serr := p.Signal(syscall.SIGTERM); serr != nil {
			if _, ok := p.Wait(time.Second); ok {
				return
			}
		}
		if _, ok := p.Wait(p.cfg.DrainTimeout + 10*time.Second); ok {
			return
		}
		p.cmd.Process.Kill()
		if _, ok := p.Wait(10 * time.Second); !ok {
			err = fmt.Errorf("pid %d still running after SIGKILL", p.PID())
			return
		}
		err = fmt.Errorf("pid %d did not exit within %s of SIGTERM; killed", p.PID(), p.cfg.DrainTimeout+10*time.Second)
	})
	if err != nil {
		return -1, err
	}
	<-p.done
	return p.exitCode, nil
}

// Log returns stirgate's stderr so far.
func (p *proxy) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", p.logPath, err)
	}
	return string(b)
}

// callLogLines returns the msg=call log lines (one per finished INVITE).
func (p *proxy) callLogLines() []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.Log()))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if strings.Contains(sc.Text(), " msg=call ") {
			out = append(out, sc.Text())
		}
	}
	return out
}

// Metrics scrapes /metrics and returns the samples.
func (p *proxy) Metrics(t testing.TB) metrics {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(p.cfg.AdminURL() + "/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape /metrics: read: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape /metrics: %s\n%s", resp.Status, body)
	}
	m, err := parseMetrics(body)
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	return m
}

// metrics is a Prometheus text exposition, sample by sample.
type metrics []sample

type sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// parseMetrics reads the Prometheus text format (no exemplars or
// timestamps needed here).
func parseMetrics(b []byte) (metrics, error) {
	var out metrics
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", n, line, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}

func parseSample(line string) (sample, error) {
	s := sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, errors.New("no value")
	}
	s.Name, line = line[:i], line[i:]
	if strings.HasPrefix(line, "{") {
		rest, err := parseLabels(line[1:], s.Labels)
		if err != nil {
			return s, err
		}
		line = rest
	}
	fs := strings.Fields(line)
	if len(fs) == 0 {
		return s, errors.New("no value")
	}
	v, err := strconv.ParseFloat(fs[0], 64)
	if err != nil {
		return s, fmt.Errorf("value: %w", err)
	}
	s.Value = v
	return s, nil
}

// parseLabels reads `k="v",...}` into into and returns what follows '}'.
func parseLabels(in string, into map[string]string) (string, error) {
	for range 1000 {
		in = strings.TrimLeft(in, " ,")
		if strings.HasPrefix(in, "}") {
			return in[1:], nil
		}
		k, rest, ok := strings.Cut(in, "=")
		if !ok || !strings.HasPrefix(rest, `"`) {
			return "", fmt.Errorf("label near %q", in)
		}
		var v strings.Builder
		j := 1
		for ; j < len(rest) && rest[j] != '"'; j++ {
			if rest[j] == '\\' && j+1 < len(rest) {
				j++
				switch rest[j] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(rest[j])
				}
				continue
			}
			v.WriteByte(rest[j])
		}
		if j >= len(rest) {
			return "", fmt.Errorf("unterminated label value near %q", in)
		}
		into[strings.TrimSpace(k)] = v.String()
		in = rest[j+1:]
	}
	return "", errors.New("too many labels")
}

// Sum adds the samples of name whose labels include all of match.
func (m metrics) Sum(name string, match map[string]string) (float64, bool) {
	var sum float64
	found := false
sample:
	for _, s := range m {
		if s.Name != name {
			continue
		}
		for k, v := range match {
			if s.Labels[k] != v {
				continue sample
			}
		}
		sum += s.Value
		found = true
	}
	return sum, found
}

// Names lists the distinct stirgate_ metric names, for failure messages.
func (m metrics) Names() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range m {
		if strings.HasPrefix(s.Name, "stirgate_") && !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s.Name)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// SIPp

// sippRun describes one sipp process. Remote empty means server (UAS) mode.
type sippRun struct {
	Name      string  // label, used for the trace directory
	Scenario  string  // file name in sipp/
	Remote    string  // host:port of stirgate (UAC); "" for a UAS
	Port      int     // local port (-p); UAS: the next hop port
	Transport string  // u1 (default) or t1
	Calls     int     // -m: stop after this many calls
	Rate      float64 // -r calls per second (UAC)
	Limit     int     // -l simultaneous calls (0: sipp default)
	PauseMS   int     // -d: length of <pause/>
	Service   string  // -s: Request-URI user (default +15559870002)
	LocalIP   string  // -i (default 127.0.0.1)
	Timeout   time.Duration
	NoTrace   bool // no -trace_msg (benchmarks)
	TraceRTT  bool // -trace_rtt: per-call response times (whole ms)
	ShortMsg  bool // -trace_shortmsg: one line per message, µs timestamps
	Extra     []string
}

// sippResult is what a finished sipp reported.
type sippResult struct {
	Name     string
	ExitCode int
	Err      error // start failure, context timeout
	Dir      string
	Stats    map[string]string // last line of -trace_stat, by column
	Stdout   string

	Successful, Failed, Created, Retransmissions int
	// Stray counts messages that matched no running call: out-of-call
	// messages plus messages for calls already ended (dead calls).
	Stray int
}

// sippProc is a started sipp.
type sippProc struct {
	run    sippRun
	cmd    *exec.Cmd
	cancel context.CancelFunc
	dir    string
	out    *os.File
	done   chan struct{}
	res    sippResult
}

const defaultService = "+15559870002"

func (r sippRun) args(t testing.TB) []string {
	transport := r.Transport
	if transport == "" {
		transport = "u1"
	}
	ip := r.LocalIP
	if ip == "" {
		ip = loopback
	}
	service := r.Service
	if service == "" {
		service = defaultService
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	a := []string{
		"-sf", scenario(t, r.Scenario),
		"-t", transport,
		"-i", ip,
		"-p", strconv.Itoa(r.Port),
		"-s", service,
		"-nostdin",
		"-timeout", fmt.Sprintf("%ds", int(timeout.Seconds())),
		"-timeout_error",
		"-trace_stat", "-stf", "stat.csv", "-fd", "1",
		"-trace_screen", "-screen_file", "screen.log",
		"-trace_err", "-error_file", "errors.log",
	}
	if !r.NoTrace {
		a = append(a, "-trace_msg", "-message_file", "messages.log")
	}
	if r.TraceRTT {
		a = append(a, "-trace_rtt", "-rtt_freq", "1")
	}
	if r.ShortMsg {
		a = append(a, "-trace_shortmsg", "-shortmessage_file", "shortmsg.csv")
	}
	if r.Calls > 0 {
		a = append(a, "-m", strconv.Itoa(r.Calls))
	}
	if r.Rate > 0 {
		a = append(a, "-r", strconv.FormatFloat(r.Rate, 'f', -1, 64))
	}
	if r.Limit > 0 {
		a = append(a, "-l", strconv.Itoa(r.Limit))
	}
	if r.PauseMS > 0 {
		a = append(a, "-d", strconv.Itoa(r.PauseMS))
	}
	a = append(a, r.Extra...)
	if r.Remote != "" {
		a = append(a, r.Remote)
	}
	return a
}

// startSipp starts sipp in its own trace directory. For a UAS it waits
// (bounded) until the local port is bound, so a UAC started next finds it.
func startSipp(t testing.TB, r sippRun) *sippProc {
	t.Helper()
	requireSipp(t)
	if r.Port == 0 {
		r.Port = freePort(t)
	}
	if r.Name == "" {
		r.Name = strings.TrimSuffix(r.Scenario, ".xml")
	}
	dir, err := os.MkdirTemp(t.TempDir(), "sipp-"+r.Name+"-")
	if err != nil {
		t.Fatalf("sipp %s: %v", r.Name, err)
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	// sipp's own -timeout ends it first; the context is the backstop.
	ctx, cancel := context.WithTimeout(context.Background(), timeout+20*time.Second)
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		cancel()
		t.Fatalf("sipp %s: %v", r.Name, err)
	}
	args := r.args(t)
	cmd := exec.CommandContext(ctx, "sipp", args...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = 5 * time.Second
	p := &sippProc{run: r, cmd: cmd, cancel: cancel, dir: dir, out: out, done: make(chan struct{})}
	p.res = sippResult{Name: r.Name, Dir: dir}
	if err := os.WriteFile(filepath.Join(dir, "command.txt"), []byte("sipp "+strings.Join(args, " ")+"\n"), 0o644); err != nil {
		t.Logf("sipp %s: %v", r.Name, err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		out.Close()
		t.Fatalf("sipp %s: start: %v", r.Name, err)
	}
	go func() {
		defer close(p.done)
		err := cmd.Wait()
		p.res.ExitCode = cmd.ProcessState.ExitCode()
		if ctx.Err() != nil {
			p.res.Err = fmt.Errorf("sipp %s: killed after %s: %w", r.Name, timeout+20*time.Second, ctx.Err())
		} else if err != nil && !errors.As(err, new(*exec.ExitError)) {
			p.res.Err = fmt.Errorf("sipp %s: %w", r.Name, err)
		}
		out.Close()
		cancel()
	}()
	t.Cleanup(func() {
		// A test that failed early must not leave sipp running.
		select {
		case <-p.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-p.done
			}
		}
	})
	if r.Remote == "" {
		if err := waitBound(ctx, r.Transport, r.Port, p.done); err != nil {
			t.Fatalf("sipp %s: %v\n%s", r.Name, err, tail(readFile(filepath.Join(dir, "stdout.log")), 30))
		}
	}
	return p
}

// Wait waits for sipp to exit (bounded by its context) and collects its
// results.
func (p *sippProc) Wait(t testing.TB) sippResult {
	t.Helper()
	<-p.done
	res := p.res
	res.Stdout = readFile(filepath.Join(p.dir, "stdout.log"))
	stats, err := sippfiles.ReadStats(filepath.Join(p.dir, "stat.csv"))
	if err != nil {
		if res.Err == nil {
			res.Err = err
		}
	} else {
		res.Stats = stats
		res.Successful = stats.Int("SuccessfulCall(C)")
		res.Failed = stats.Int("FailedCall(C)")
		res.Created = stats.Int("TotalCallCreated")
		res.Retransmissions = stats.Int("Retransmissions(C)")
		res.Stray = stats.Int("OutOfCallMsgs(C)") + stats.Int("DeadCallMsgs(C)")
	}
	return res
}

// runSipp runs sipp to completion.
func runSipp(t testing.TB, r sippRun) sippResult {
	t.Helper()
	return startSipp(t, r).Wait(t)
}

// require asserts that sipp exited 0 with exactly want successful calls and
// no failed one; on failure it shows sipp's screen, errors and trace tail.
func (res sippResult) require(t testing.TB, want int) {
	t.Helper()
	var problems []string
	if res.Err != nil {
		problems = append(problems, res.Err.Error())
	}
	if res.ExitCode != 0 {
		problems = append(problems, fmt.Sprintf("exit code %d (%s)", res.ExitCode, sippExitMeaning(res.ExitCode)))
	}
	if res.Successful != want {
		problems = append(problems, fmt.Sprintf("%d successful calls, want %d", res.Successful, want))
	}
	if res.Failed != 0 {
		problems = append(problems, fmt.Sprintf("%d failed calls (%s)", res.Failed, res.failureCauses()))
	}
	if len(problems) > 0 {
		t.Errorf("sipp %s: %s", res.Name, strings.Join(problems, "; "))
		res.dump(t)
	}
}

// requireNoStray asserts that no message reached sipp outside a call: a
// callee must not get a second ACK, a retransmission the proxy should have
// absorbed, or anything after the call ended.
func (res sippResult) requireNoStray(t testing.TB) {
	t.Helper()
	if res.Stray != 0 {
		t.Errorf("sipp %s: %d messages outside any call (OutOfCallMsgs + DeadCallMsgs), want 0", res.Name, res.Stray)
		res.dump(t)
	}
}

// failureCauses lists the non-zero FailedXxx(C) counters.
func (res sippResult) failureCauses() string {
	var out []string
	for k, v := range res.Stats {
		if strings.HasPrefix(k, "Failed") && strings.HasSuffix(k, "(C)") && k != "FailedCall(C)" {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
				out = append(out, fmt.Sprintf("%s=%d", strings.TrimSuffix(k, "(C)"), n))
			}
		}
	}
	if len(out) == 0 {
		return "no cause counted"
	}
	return strings.Join(out, ", ")
}

// dump logs sipp's final screen, unexpected messages and the tail of its
// message trace.
func (res sippResult) dump(t testing.TB) {
	t.Helper()
	t.Logf("sipp %s: traces in %s", res.Name, res.Dir)
	t.Logf("sipp %s: command: %s", res.Name, readFile(filepath.Join(res.Dir, "command.txt")))
	t.Logf("sipp %s: final screen:\n%s", res.Name, lastScreen(readFile(filepath.Join(res.Dir, "screen.log"))))
	if e := readFile(filepath.Join(res.Dir, "errors.log")); e != "" {
		t.Logf("sipp %s: errors.log:\n%s", res.Name, tail(e, 80))
	}
	if m := readFile(filepath.Join(res.Dir, "messages.log")); m != "" {
		t.Logf("sipp %s: messages.log (last lines):\n%s", res.Name, tail(m, 120))
	}
	if res.Stdout != "" {
		t.Logf("sipp %s: stdout (last lines):\n%s", res.Name, tail(res.Stdout, 20))
	}
}

// sippExitMeaning explains sipp's exit codes.
func sippExitMeaning(code int) string {
	switch code {
	case 0:
		return "all calls succeeded"
	case 1:
		return "at least one call failed"
	case 97:
		return "exit on internal command, or global timeout"
	case 99:
		return "normal exit without calls processed"
	case 253:
		return "RTP validation failure"
	case 254:
		return "connection refused / fatal socket error"
	case 255:
		return "fatal error (scenario, bind, option), or -timeout reached (-timeout_error)"
	case -1:
		return "killed"
	default:
		return "unknown"
	}
}

// lastScreen keeps the end of a -trace_screen file: it holds every screen
// sipp showed, the final ones last.
func lastScreen(s string) string { return tail(s, 90) }

func readFile(p string) string { return sippfiles.ReadFile(p) }

func tail(s string, n int) string { return sippfiles.Tail(s, n) }

// ---------------------------------------------------------------------------
// A sink standing in for a callee that must see nothing

// sink listens on UDP and TCP and records every message that arrives.
type sink struct {
	mu    sync.Mutex
	msgs  []string
	conns []net.Conn

	udp net.PacketConn
	tcp net.Listener
	wg  sync.WaitGroup
}

func startSink(t testing.TB, port int) *sink {
	t.Helper()
	u, err := net.ListenPacket("udp", hostPort(port))
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	l, err := net.Listen("tcp", hostPort(port))
	if err != nil {
		u.Close()
		t.Fatalf("sink: %v", err)
	}
	s := &sink{udp: u, tcp: l}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := u.ReadFrom(buf)
			if err != nil {
				return
			}
			s.add(fmt.Sprintf("(udp from %s) %s", from, buf[:n]))
		}
	}()
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.msgs = append(s.msgs, fmt.Sprintf("(tcp connection from %s)", c.RemoteAddr()))
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				buf := make([]byte, 65536)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						s.add(fmt.Sprintf("(tcp from %s) %s", c.RemoteAddr(), buf[:n]))
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *sink) add(m string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
}

// Messages returns what arrived so far.
func (s *sink) Messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

func (s *sink) close() {
	s.udp.Close()
	s.tcp.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// callIDOf returns the Call-ID of a raw SIP message.
func callIDOf(t testing.TB, msg []byte) string {
	t.Helper()
	for _, line := range strings.Split(string(msg), "\r\n") {
		if v, ok := strings.CutPrefix(line, "Call-ID: "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Call-ID in %q", msg)
	return ""
}

// waitCallID waits (bounded: 2 s of polling) until a message of the call
// callID has arrived and returns the first one ("" if none did).
func (s *sink) waitCallID(callID string) string {
	for range 40 {
		for _, m := range s.Messages() {
			if strings.Contains(m, "Call-ID: "+callID+"\r\n") {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ""
}
