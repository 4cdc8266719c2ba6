package integration

// Kamailio with its secsipid module (Debian packages kamailio and
// kamailio-secsipid-modules) as the SIP trunk behind stirgate: it verifies
// the Identity header of every INVITE and answers 200 or 438
// (interop/kamailio.cfg.tmpl, interop/README.md). A missing Kamailio or
// module skips these tests, or fails them when CI=true.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const kamailioDebs = "kamailio kamailio-secsipid-modules"

// requireKamailio returns the kamailio binary and the modules directory
// holding secsipid.so and secsipid_proc.so (KAMAILIO_MODULES overrides).
func requireKamailio(t testing.TB) (bin, modules string) {
	t.Helper()
	bin = requireTool(t, "kamailio", kamailioDebs, "/usr/sbin/kamailio", "/usr/local/sbin/kamailio")
	dirs := []string{os.Getenv("KAMAILIO_MODULES")}
	if m, _ := filepath.Glob("/usr/lib/*/kamailio/modules"); len(m) > 0 {
		dirs = append(dirs, m...)
	}
	dirs = append(dirs, "/usr/lib/kamailio/modules", "/usr/lib64/kamailio/modules", "/usr/local/lib64/kamailio/modules", "/usr/local/lib/kamailio/modules")
	for _, d := range dirs {
		if d == "" {
			continue
		}
		_, e1 := os.Stat(filepath.Join(d, "secsipid.so"))
		_, e2 := os.Stat(filepath.Join(d, "secsipid_proc.so"))
		_, e3 := os.Stat(filepath.Join(d, "sl.so"))
		if e1 == nil && e2 == nil && e3 == nil {
			return bin, d
		}
	}
	msg := fmt.Sprintf("kamailio modules secsipid.so, secsipid_proc.so and sl.so not found in %q", dirs)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true): install the Debian packages %s", msg, kamailioDebs)
	}
	t.Skipf("%s; install the Debian packages %s", msg, kamailioDebs)
	return "", ""
}

// kamailioConfig fills the placeholders of interop/kamailio.cfg.tmpl.
type kamailioConfig struct {
	Port    int      // UDP and TCP on 127.0.0.1
	Expire  int      // secsipid expire (s): iat freshness window
	Timeout int      // secsipid timeout (s): certificate download
	LibOpts []string // secsipid libopt values, "Name=value"
}

// render returns the configuration text.
func (c kamailioConfig) render(t testing.TB, modules string) string {
	t.Helper()
	tmpl := readFileBytes(t, filepath.Join("interop", "kamailio.cfg.tmpl"))
	var libopts []string
	for _, o := range c.LibOpts {
		if strings.ContainsAny(o, "\"\n\r") {
			t.Fatalf("kamailio libopt %q: no quotes or newlines", o)
		}
		libopts = append(libopts, fmt.Sprintf("modparam(\"secsipid\", \"libopt\", \"%s\")", o))
	}
	r := strings.NewReplacer(
		"__PORT__", strconv.Itoa(c.Port),
		"__MODULES_DIR__", modules,
		"__EXPIRE__", strconv.Itoa(c.Expire),
		"__TIMEOUT__", strconv.Itoa(c.Timeout),
		"__LIBOPTS__", strings.Join(libopts, "\n"),
	)
	out := r.Replace(string(tmpl))
	if strings.Contains(out, "__") {
		t.Fatalf("kamailio.cfg.tmpl: placeholder left after rendering:\n%s", out)
	}
	return out
}

// kamailio is a running Kamailio.
type kamailio struct {
	t        testing.TB
	cfg      kamailioConfig
	cmd      *exec.Cmd
	dir      string
	logPath  string
	done     chan struct{}
	exitCode int
	stopOnce sync.Once
}

// startKamailio runs Kamailio in the foreground (-DD: the creator stays,
// workers are its children) in its own process group, logging to stderr
// (-E) into a file, with its pid file and runtime dir in a temp dir, and
// waits (bounded) until it has bound its UDP and TCP port. Its stop is
// registered: SIGTERM to the pid, then SIGKILL to its process group.
func startKamailio(t testing.TB, cfg kamailioConfig) *kamailio {
	t.Helper()
	bin, modules := requireKamailio(t)
	if cfg.Port == 0 {
		cfg.Port = freePort(t)
	}
	if cfg.Expire == 0 {
		cfg.Expire = 60
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3
	}
	dir, err := os.MkdirTemp(t.TempDir(), "kamailio-")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg.render(t, modules)), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &kamailio{t: t, cfg: cfg, dir: dir, logPath: filepath.Join(dir, "kamailio.log"), done: make(chan struct{})}
	k.launch(t, bin, cfgPath, modules, "64", "8", "kamailio", 60)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, tr := range []string{"udp", "tcp"} {
		if err := waitBound(ctx, tr, cfg.Port, k.done); err != nil {
			t.Fatalf("kamailio: %v\n%s", err, tail(k.Log(), 40))
		}
	}
	return k
}

// launch starts Kamailio on cfgPath in k.dir in the foreground (-DD: the
// creator stays, workers are its children) in its own process group,
// logging to stderr (-E) into k.logPath, with shmMB/pkgMB of memory, and
// registers its stop; a failed test logs the last logLines lines, labelled.
func (k *kamailio) launch(t testing.TB, bin, cfgPath, modules, shmMB, pkgMB, label string, logLines int) {
	t.Helper()
	f, err := os.Create(k.logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-f", cfgPath, "-DD", "-E", "-m", shmMB, "-M", pkgMB, "-L", modules,
		"-Y", k.dir, "-P", filepath.Join(k.dir, "kamailio.pid"), "-w", k.dir}
	k.cmd = exec.Command(bin, args...)
	k.cmd.Dir = k.dir
	k.cmd.Stdout, k.cmd.Stderr = f, f
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := os.WriteFile(filepath.Join(k.dir, "command.txt"), []byte(bin+" "+strings.Join(args, " ")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := k.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start kamailio: %v", err)
	}
	go func() {
		k.cmd.Wait()
		k.exitCode = k.cmd.ProcessState.ExitCode()
		f.Close()
		close(k.done)
	}()
	t.Cleanup(func() {
		if err := k.Stop(); err != nil {
			t.Errorf("stop kamailio: %v", err)
		}
		if t.Failed() {
			t.Logf("%s (%s) log, last lines:\n%s", label, strings.Join(args, " "), tail(k.Log(), logLines))
		}
	})
}

func (k *kamailio) Addr() string { return hostPort(k.cfg.Port) }

// Stop sends SIGTERM to Kamailio's main process and waits (bounded); then
// kills the process group it leads. Safe to call more than once.
func (k *kamailio) Stop() error {
	var err error
	k.stopOnce.Do(func() {
		pid := k.cmd.Process.Pid
		select {
		case <-k.done:
			return
		default:
		}
		k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.done:
			return
		case <-time.After(15 * time.Second):
		}
		syscall.Kill(-pid, syscall.SIGKILL)
		select {
		case <-k.done:
			err = fmt.Errorf("pid %d did not exit within 15s of SIGTERM; process group killed", pid)
		case <-time.After(10 * time.Second):
			err = fmt.Errorf("pid %d still running after SIGKILL", pid)
		}
	})
	return err
}

// Log returns Kamailio's stderr so far.
func (k *kamailio) Log() string { return readFile(k.logPath) }

// kamailioVerdict is one STIRGATE-IT line of the config's xlog.
type kamailioVerdict struct {
	Result string // ok | fail | missing
	RC     int    // 1 for ok, else the libsecsipid code (0 for missing)
	CallID string
	Line   string
}

var verdictRE = regexp.MustCompile(`STIRGATE-IT verify=(\w+) rc=(-?\d+) ci=(\S+)`)

// Verdicts parses the verification lines logged so far.
func (k *kamailio) Verdicts() []kamailioVerdict {
	var out []kamailioVerdict
	sc := bufio.NewScanner(strings.NewReader(k.Log()))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		m := verdictRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		rc, _ := strconv.Atoi(m[2])
		out = append(out, kamailioVerdict{Result: m[1], RC: rc, CallID: m[3], Line: sc.Text()})
	}
	return out
}

// Count tallies verdicts by result and returns the failing lines.
func (k *kamailio) Count() (ok, fail, missing int, bad []string) {
	for _, v := range k.Verdicts() {
		switch v.Result {
		case "ok":
			ok++
		case "fail":
			fail++
			bad = append(bad, fmt.Sprintf("rc=%d (%s) ci=%s", v.RC, secsipidCode[v.RC], v.CallID))
		default:
			missing++
			bad = append(bad, "missing Identity ci="+v.CallID)
		}
	}
	return ok, fail, missing, bad
}

// waitVerdicts waits (bounded) until at least n verdicts are logged:
// Kamailio writes its log asynchronously to the SIP exchange.
func (k *kamailio) waitVerdicts(n int, bound time.Duration) {
	deadline := time.Now().Add(bound)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		if len(k.Verdicts()) >= n {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// interopScenario is a scenario in interop/ run through runSipp, whose
// scenario() looks in sipp/: the relative path gets there.
func interopScenario(name string) string { return filepath.Join("..", "interop", name) }

// ---------------------------------------------------------------------------
// Tests

// TestKamailioVerifiesSecsipidxHeader proves the Kamailio trunk without
// stirgate: SIPp sends INVITEs carrying a secsipidx-signed Identity straight
// to Kamailio, which fetches the certificate from info, checks the chain to
// our root, and answers 200; a tampered header gets 438; one signed by a
// certificate of another root gets 438 too.
func TestKamailioVerifiesSecsipidxHeader(t *testing.T) {
	requireSipp(t)
	requireKamailio(t)
	requireSecsipidx(t)
	pki := newInteropPKI(t, pkiVariant{File: "stranger.pem", IssuerIsStranger: true})
	cs := startCertServer(t, pki.Dir)
	k := startKamailio(t, kamailioConfig{LibOpts: []string{"CertVerify=5", "CertCAFile=" + pki.Path("root.pem")}})

	id := secsipidxSign(t, pki.Path("sp.key"), cs.URL("sp.pem"), "A", "15551230001", "15559870002")
	const good, bad = 5, 2
	res := runSipp(t, sippRun{Name: "uac-identity", Scenario: interopScenario("uac_identity.xml"), Remote: k.Addr(),
		Calls: good, Rate: 20, PauseMS: 50, Timeout: 30 * time.Second, Extra: []string{"-key", "identity", id}})
	res.require(t, good)
	res = runSipp(t, sippRun{Name: "uac-identity-tampered", Scenario: interopScenario("uac_identity_438.xml"), Remote: k.Addr(),
		Calls: bad, Rate: 20, Timeout: 30 * time.Second, Extra: []string{"-key", "identity", tamper(id)}})
	res.require(t, bad)
	stranger := secsipidxSign(t, pki.Path("sp.key"), cs.URL("stranger.pem"), "A", "15551230001", "15559870002")
	res = runSipp(t, sippRun{Name: "uac-identity-stranger", Scenario: interopScenario("uac_identity_438.xml"), Remote: k.Addr(),
		Calls: 1, Rate: 20, Timeout: 30 * time.Second, Extra: []string{"-key", "identity", stranger}})
	res.require(t, 1)

	k.waitVerdicts(good+bad+1, 5*time.Second)
	vs := k.Verdicts()
	var ok, sig, chain int
	for _, v := range vs {
		switch {
		case v.Result == "ok":
			ok++
		case v.RC == -251:
			sig++
		case v.RC == -101:
			chain++
		default:
			t.Errorf("unexpected verdict: %s", v.Line)
		}
	}
	if ok != good || sig != bad || chain != 1 {
		t.Errorf("kamailio verdicts: %d ok, %d bad signature (-251), %d bad chain (-101); want %d, %d, 1", ok, sig, chain, good, bad)
	}
	if cs.Hits("sp.pem") == 0 {
		t.Error("kamailio never fetched sp.pem from the info URL")
	}
}

// TestKamailioVerifiesSignedCalls: SIPp (PBX) -> stirgate inside realm,
// signing -> Kamailio as the trunk, verifying every INVITE with the chain
// fetched from stirgate's x5u repository and checked against the root of
// `stirgate certs init`. Every call succeeds and Kamailio logged one
// successful verification per call and no failure.
func TestKamailioVerifiesSignedCalls(t *testing.T) {
	requireSipp(t)
	requireKamailio(t)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			const calls = 20
			cfg := newProxyConfig(t)
			cfg.TrunkTransport = transport
			base := fmt.Sprintf("http://%s/certs/", hostPort(cfg.AdminPort))
			x5u := base + "sp.pem"
			pki := testPKI(t, base)
			cfg.Extra = attestYAML(pki, x5u)
			k := startKamailio(t, kamailioConfig{Port: cfg.TrunkPort, LibOpts: []string{
				"CertVerify=5", "CertCAFile=" + filepath.Join(pki, "root.pem"),
			}})
			p := startProxy(t, cfg)

			res := runSipp(t, sippRun{Name: "uac", Scenario: "uac.xml", Remote: cfg.InsideAddr(),
				Calls: calls, Rate: 20, PauseMS: 50, Timeout: 60 * time.Second})
			res.require(t, calls)
			res.requireNoStray(t)

			k.waitVerdicts(calls, 5*time.Second)
			ok, fail, missing, bad := k.Count()
			if ok != calls || fail != 0 || missing != 0 {
				if len(bad) > 5 {
					bad = append(bad[:5], fmt.Sprintf("... %d more", len(bad)-5))
				}
				t.Errorf("kamailio: %d verified, %d failed, %d without Identity; want %d, 0, 0: %s", ok, fail, missing, calls, strings.Join(bad, "; "))
			}
			// Each verified call is one stirgate signed and forwarded.
			seen := map[string]bool{}
			for _, v := range k.Verdicts() {
				if seen[v.CallID] {
					t.Errorf("kamailio verified Call-ID %s twice", v.CallID)
				}
				seen[v.CallID] = true
				if !strings.Contains(v.Line, "proto="+transport) {
					t.Errorf("verdict not over %s: %s", transport, v.Line)
				}
			}
			if n := len(p.callLogLines()); n != calls {
				t.Errorf("stirgate logged %d call records, want %d", n, calls)
			}
		})
	}
}
